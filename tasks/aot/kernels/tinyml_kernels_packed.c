/* tinyml_kernels_packed.c - int8 convolution, fully connected and depthwise kernels on weights the
 * generator re-laid out (tasks/aot/layout.py), bit-identical with TFLM's reference kernels.
 *
 * Two implementations of every inner loop, chosen at compile time by the core (tinyml_simd.h):
 *  - TML_DSP (Cortex-M4/M7/M33 with the DSP extension): int8 values widened to int16 pairs with
 *    SXTB16/SXTAB16 (input offset added on the way), two multiply-accumulates per SMLAD.
 *    Convolutions (1x1 and general) run as a blocked matrix product: 2 output pixels x 2 output
 *    channels per block, the two im2col columns widened once into scratch and reused by every
 *    channel pair; fully connected layers take 4 output channels per pass over the input;
 *    depthwise takes 4 channels per pass (SMLABB/SMLATT) from zero-point padded row buffers, so
 *    every pixel runs the same unrolled taps. Requantization: 4 instructions per output
 *    (ADD, ADD, SMMLAR, ASR) when the generator proved the shortcut exact (params `fast`).
 *  - portable C (every other core and the host): the same layouts, plain integer loops and TFLM's
 *    64-bit requantization.
 *
 * Data flow, which the offline memory plan relies on (tasks/aot/flow.py: an output may overwrite the
 * part of its input that is already consumed): the matrix product writes pixels in row-major order,
 * a block of 2 pixels after both columns were copied to scratch, a single pixel while its own
 * input run is still being read; depthwise writes output row oy after copying every input row it
 * needs into its row buffers.
 */
#include "tinyml_kernels.h"
#include "tinyml_simd.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__arm__)
/* the inner loops need -O2; the pre-register-allocation scheduler only adds spills on Cortex-M; short
 * fills stay loops (newlib-nano's memset is a byte loop) */
#pragma GCC optimize("O2", "no-schedule-insns", "no-tree-loop-distribute-patterns")
#endif

#if defined(__GNUC__)
#define TML_NOINLINE __attribute__((noinline))
#else
#define TML_NOINLINE
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__arm__)
#define TML_COLD __attribute__((noinline, optimize("Os"))) /* set-up code: small rather than fast */
#else
#define TML_COLD TML_NOINLINE
#endif

#define TML_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TML_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TML_CHUNK 64 /* output channels per accumulator chunk (on the stack: 2 x 64 int32) */
#define TML_FC_KC 256 /* input elements a single-pixel op widens at a time (2 * TML_FC_KC bytes of scratch) */

const char *tml_kernels_variant(void) {
#if TML_DSP_NATIVE
  return "dsp";
#elif TML_DSP
  return "dsp-emulated";
#else
  return "portable";
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* requantization                                                                             */
/* ------------------------------------------------------------------------------------------ */
/* Per output channel a record tml_rq {mult, k, rsh}:
 *  fast (the generator proved, for every channel: TFLM shift <= -1, multiplier > 2^30,
 *        2*|acc| < 2^31 and no overflow below): k = 2^(r-1) + zero_point * 2^r, rsh = r = -shift.
 *        TFLM's MultiplyByQuantizedMultiplier(acc) + zero_point is then exactly
 *        SMMLAR(2*acc, mult, k + (acc < 0 ? -1 : 0)) >> r: SaturatingRoundingDoublingHighMul is
 *        the rounded high word SMMULR(2*acc, mult); RoundingDivideByPOT(t, r) is
 *        (t + 2^(r-1) + (t < 0 ? -1 : 0)) >> r, and t < 0 exactly when acc < 0 (mult > 2^30).
 *        The bias array of a fast op holds 2 * bias.
 *  exact: k = TFLM shift, rsh = 0; the bias array holds the bias. */

TML_INLINE int32_t tml_rq_exact(int32_t acc, const tml_rq *r, int32_t zp) { return tml_mbqm(acc, r->mult, r->k) + zp; }

/* any core: acc is the true accumulator (bias included); a fast op's constant channel has the
 * record {0, 2 * y + 1, 1} (see layout.rq_records) */
TML_INLINE int32_t tml_rq_any(int32_t acc, const tml_rq *r, int32_t zp, int32_t fast) {
  if (fast) return r->mult == 0 ? r->k >> 1 : tml_mbqm(acc, r->mult, -r->rsh) + zp;
  return tml_rq_exact(acc, r, zp);
}

#if TML_DSP
/* t2 = 2 * accumulator */
TML_INLINE int32_t tml_rq_fast(int32_t t2, const tml_rq *r) { return tml_smmlar(t2, r->mult, r->k + (t2 >> 31)) >> r->rsh; }
#endif

TML_INLINE int8_t tml_out8(int32_t y, int32_t lo, int32_t hi) { return (int8_t)TML_MIN(TML_MAX(y, lo), hi); }

typedef struct {
  const int32_t *bias; /* fast: 2 * bias */
  const tml_rq *rq;
  int32_t rq_stride, zp, lo, hi, fast;
} tml_rqctx;

/* Requantize nc channels of np (1 or 2) pixels from acc[channel * np + pixel] (no bias in acc),
 * channel c0 onward; out[pixel * ostride + channel]. */
static TML_NOINLINE void tml_requant(const tml_rqctx *q, const int32_t *acc, int32_t c0, int32_t nc, int32_t np,
                                     int8_t *out, int32_t ostride) {
  const tml_rq *r = q->rq + c0 * q->rq_stride;
  const int32_t *bias = q->bias ? q->bias + c0 : 0;
  const int32_t lo = q->lo, hi = q->hi, zp = q->zp;
  int32_t c, j;
  for (c = 0; c < nc; ++c, r += q->rq_stride) {
    const int32_t b = bias ? (q->fast ? bias[c] >> 1 : bias[c]) : 0;
    for (j = 0; j < np; ++j) out[j * ostride + c] = tml_out8(tml_rq_any(acc[c * np + j] + b, r, zp, q->fast), lo, hi);
  }
}

static void tml_rqctx_init(tml_rqctx *q, const int32_t *bias, const tml_rq *rq, int32_t rq_stride, int32_t zp,
                           int32_t lo, int32_t hi, int32_t fast) {
  q->bias = bias;
  q->rq = rq;
  q->rq_stride = rq_stride;
  q->zp = zp;
  q->lo = lo;
  q->hi = hi;
  q->fast = fast;
}

/* ------------------------------------------------------------------------------------------ */
/* matrix-product convolution: FULLY_CONNECTED, 1x1 and general CONV_2D                        */
/* ------------------------------------------------------------------------------------------ */
/* Packed weights (layout.pack_gemm): output channels in groups of p->wl (4 for single-pixel ops,
 * 2 for convolutions), then a pair and/or a single channel; a group of g channels is k4/4 steps of
 * 4*g bytes (4 reduction indices of each of its channels in turn). Reduction index
 * k = (ky*k_w + kx)*in_c + ic, padded with zero weights to k4; channel c starts at byte c * k4. */

/* copy n bytes, a word at a time while possible (gathers copy short runs: a libc call costs more) */
TML_INLINE void tml_copy_small(int8_t *d, const int8_t *s, int32_t n) {
  for (; n >= 4; n -= 4, d += 4, s += 4) tml_wr32(d, tml_rd32(s));
  for (; n > 0; --n) *d++ = *s++;
}

TML_INLINE void tml_fill_small(int8_t *d, int32_t v4, int32_t n) {
  for (; n >= 4; n -= 4, d += 4) tml_wr32(d, v4);
  for (; n > 0; --n) *d++ = (int8_t)v4;
}

/* The receptive field of a window that crosses the input's border: zero point where padded. */
static TML_NOINLINE void tml_gather_edge(const tml_gemm_s8_params *p, const int8_t *in, int32_t iy0, int32_t ix0,
                                         int8_t *col) {
  const int32_t zp4 = tml_bytes_of(-p->input_offset);
  const int32_t row_bytes = p->k_w * p->in_c, row_in = p->in_w * p->in_c;
  const int32_t kx0 = TML_MAX(0, -ix0), kx1 = TML_MIN(p->k_w, p->in_w - ix0);
  const int32_t pre = kx0 * p->in_c, run = (kx1 - kx0) * p->in_c, post = row_bytes - pre - run;
  int32_t ky;
  for (ky = 0; ky < p->k_h; ++ky, col += row_bytes) {
    const int32_t iy = iy0 + ky;
    if (iy < 0 || iy >= p->in_h || run <= 0) {
      tml_fill_small(col, zp4, row_bytes);
      continue;
    }
    if (pre) tml_fill_small(col, zp4, pre);
    tml_copy_small(col + pre, in + iy * row_in + (ix0 + kx0) * p->in_c, run);
    if (post) tml_fill_small(col + pre + run, zp4, post);
  }
  tml_fill_small(col, zp4, p->k4 - p->k_h * row_bytes);
}

/* Gather the int8 receptive field of output pixel `pix` into col[0..k4) (zero point where
 * padded). A window inside the input is k_h runs of rb bytes, copied a word at a time (the last
 * word of a run overlapping the one before it, so no byte loop) */
static TML_NOINLINE void tml_gather(const tml_gemm_s8_params *p, const int8_t *in, int32_t pix, int8_t *col) {
  const int32_t oy = pix / p->out_w, ox = pix - oy * p->out_w;
  const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;
  if (iy0 >= 0 && ix0 >= 0 && iy0 + p->k_h <= p->in_h && ix0 + p->k_w <= p->in_w) {
    const int32_t rb = p->k_w * p->in_c, row_in = p->in_w * p->in_c;
    const int8_t *s = in + iy0 * row_in + ix0 * p->in_c;
    int32_t ky, i;
    for (ky = p->k_h; ky > 0; --ky, s += row_in, col += rb) {
      if (rb < 4) {
        for (i = 0; i < rb; ++i) col[i] = s[i];
        continue;
      }
      for (i = 0; i < rb - 4; i += 4) tml_wr32(col + i, tml_rd32(s + i));
      tml_wr32(col + rb - 4, tml_rd32(s + rb - 4));
    }
    tml_fill_small(col, tml_bytes_of(-p->input_offset), p->k4 - p->k_h * rb);
    return;
  }
  tml_gather_edge(p, in, iy0, ix0, col);
}

/* the input run of output pixel `pix` of a 1x1 unpadded convolution */
TML_INLINE const int8_t *tml_pixel_run(const tml_gemm_s8_params *p, const int8_t *in, int32_t pix) {
  int32_t oy, ox;
  if (p->stride_h == 1 && p->stride_w == 1) return in + pix * p->in_c; /* output pixels = input pixels */
  oy = pix / p->out_w;
  ox = pix - oy * p->out_w;
  return in + ((oy * p->stride_h) * p->in_w + ox * p->stride_w) * p->in_c;
}

#if TML_DSP

/* Widen k int8 values (x + input offset, doubled when `dbl`) into int16 pairs: per 4-k step the
 * words X02 = (x0, x2) and X13 = (x1, x3) (the order SXTB16 / SXTB16 ROR 8 give 4 weight bytes),
 * written every `dstep` words (4: one lane of the interleaved column pair [A02 A13 B02 B13]; 2:
 * compact). A last partial step is padded with the zero point (x + offset = 0). Doubled inputs
 * make the accumulator 2 * acc, what the fast requantization consumes (|2 (x + offset)| <= 510). */
static TML_NOINLINE void tml_widen(const int8_t *src, int32_t k, int32_t off, int32_t *dst, int32_t dbl, int32_t dstep) {
  const int32_t off2 = tml_lanes_of(off);
  int32_t n4 = k >> 2;
  if (k & 3) {
    int8_t v[4];
    int32_t j, x, lo, hi;
    for (j = 0; j < 4; ++j) v[j] = j < (k & 3) ? src[4 * n4 + j] : (int8_t)(-off);
    x = tml_rd32(v);
    lo = tml_sxtab16(off2, x);
    hi = tml_sxtab16_ror8(off2, x);
    dst[n4 * dstep] = dbl ? tml_sadd16(lo, lo) : lo;
    dst[n4 * dstep + 1] = dbl ? tml_sadd16(hi, hi) : hi;
  }
  if (dbl) {
    while (n4--) {
      const int32_t x = tml_rd32(src);
      const int32_t lo = tml_sxtab16(off2, x), hi = tml_sxtab16_ror8(off2, x);
      src += 4;
      dst[0] = tml_sadd16(lo, lo);
      dst[1] = tml_sadd16(hi, hi);
      dst += dstep;
    }
    return;
  }
  while (n4--) {
    const int32_t x = tml_rd32(src);
    src += 4;
    dst[0] = tml_sxtab16(off2, x);
    dst[1] = tml_sxtab16_ror8(off2, x);
    dst += dstep;
  }
}

/* A lane of the column pair (doubled, every 4th word pair): on a DSP core two steps per
 * iteration, 7 instructions each (STRD), the last 0-7 inputs by tml_widen */
static TML_NOINLINE void tml_widen_lane(const int8_t *src, int32_t k, int32_t off, int32_t *dst) {
#if TML_DSP_NATIVE
  int32_t cnt = k >> 3;
  if (cnt) {
    const int32_t off2 = tml_lanes_of(off);
    int32_t x0, x1, a, b;
    __asm__ volatile("1:\n\t"
                     "ldr %[x0], [%[s]], #4\n\t"
                     "ldr %[x1], [%[s]], #4\n\t"
                     "sxtab16 %[a], %[o], %[x0]\n\t"
                     "sxtab16 %[b], %[o], %[x0], ror #8\n\t"
                     "sadd16 %[a], %[a], %[a]\n\t"
                     "sadd16 %[b], %[b], %[b]\n\t"
                     "strd %[a], %[b], [%[d]], #32\n\t"
                     "sxtab16 %[a], %[o], %[x1]\n\t"
                     "sxtab16 %[b], %[o], %[x1], ror #8\n\t"
                     "sadd16 %[a], %[a], %[a]\n\t"
                     "sadd16 %[b], %[b], %[b]\n\t"
                     "strd %[a], %[b], [%[d], #-16]\n\t"
                     "subs %[n], %[n], #1\n\t"
                     "bne 1b\n\t"
                     : [s] "+r"(src), [d] "+r"(dst), [n] "+r"(cnt), [x0] "=&r"(x0), [x1] "=&r"(x1), [a] "=&r"(a),
                       [b] "=&r"(b)
                     : [o] "r"(off2)
                     : "cc", "memory");
    k &= 7;
  }
  if (k) tml_widen(src, k, off, dst, 1, 4);
#else
  tml_widen(src, k, off, dst, 1, 4);
#endif
}

/* 2 pixels x 2 channels, the 4-k step at offset O (in steps) from cols / w:
 * cols = [A02 A13 B02 B13] per step, w = [c0 4 bytes, c1 4 bytes] per step */
#define TML_STEP2X2(O)                                                                  \
  do {                                                                                  \
    const int32_t w0 = w[2 * (O)], w1 = w[2 * (O) + 1];                                 \
    const int32_t ca = cols[4 * (O)], da = cols[4 * (O) + 1];                           \
    const int32_t cb = cols[4 * (O) + 2], db = cols[4 * (O) + 3];                       \
    int32_t u = tml_sxtb16(w0);                                                         \
    a00 = tml_smlad(ca, u, a00);                                                        \
    a01 = tml_smlad(cb, u, a01);                                                        \
    u = tml_sxtb16(w1);                                                                 \
    a10 = tml_smlad(ca, u, a10);                                                        \
    a11 = tml_smlad(cb, u, a11);                                                        \
    u = tml_sxtb16_ror8(w0);                                                            \
    a00 = tml_smlad(da, u, a00);                                                        \
    a01 = tml_smlad(db, u, a01);                                                        \
    u = tml_sxtb16_ror8(w1);                                                            \
    a10 = tml_smlad(da, u, a10);                                                        \
    a11 = tml_smlad(db, u, a11);                                                        \
  } while (0)

/* n4 steps of one channel pair, 4 per iteration; n4 % 4 leftover steps enter the unrolled body
 * in the middle (pointers moved back so the step offsets line up), Duff's-device style */
#define TML_PAIR_LOOP                                    \
  do {                                                   \
    const int32_t r_ = n4 & 3;                           \
    const int32_t *end_ = w + 2 * n4;                    \
    if (r_) {                                            \
      w -= 2 * (4 - r_);                                 \
      cols -= 4 * (4 - r_);                              \
      switch (r_) {                                      \
        case 3: TML_STEP2X2(1); /* fall through */       \
        case 2: TML_STEP2X2(2); /* fall through */       \
        default: TML_STEP2X2(3);                         \
      }                                                  \
      w += 8;                                            \
      cols += 16;                                        \
    }                                                    \
    while (w != end_) {                                  \
      TML_STEP2X2(0);                                    \
      TML_STEP2X2(1);                                    \
      TML_STEP2X2(2);                                    \
      TML_STEP2X2(3);                                    \
      w += 8;                                            \
      cols += 16;                                        \
    }                                                    \
  } while (0)

TML_INLINE int32_t tml_rq_y(int32_t a, int32_t m, int32_t k, int32_t sh) { return tml_smmlar(a, m, k + (a >> 31)) >> sh; }

/* clamp to [lo, hi] inside int8 (full: lo = -128, hi = 127, saturation alone) */
#define TML_CLAMP8(y) ((y) = full ? tml_ssat8(y) : TML_MIN(TML_MAX((y), lo), hi))

/* Channel pairs against the doubled column pair, accumulators starting at 2 * bias (fast path),
 * each channel pair requantized (per-channel fast records) as soon as its 4 accumulators are
 * done: (c, pixel j) -> o_j[c]; then an odd last channel. o0 == o1 is allowed (a lone pixel). */
#if TML_DSP_NATIVE
/* Registers (fixed, so LDM can fill them in order): r0 a00, r1 a01, r2 a10, r3 a11 (channel c,
 * pixel j: a_cj), r4-r7 the column pair's 4 words of a step [A02 A13 B02 B13], r8/r9 the two
 * channels' weight words, r10 the ctl pointer (a temporary inside the loops, reloaded from the
 * stack), r11 weights, r12 columns, lr loop end / temporary.
 * One 4-k step of the channel pair: 14 instructions for 16 MACs. */
#define TML_MM_STEP                \
  "ldmia r12!, {r4, r5, r6, r7}\n\t" \
  "ldrd r8, r9, [r11], #8\n\t"     \
  "sxtb16 r10, r8\n\t"             \
  "smlad r0, r4, r10, r0\n\t"      \
  "smlad r1, r6, r10, r1\n\t"      \
  "sxtb16 r8, r8, ror #8\n\t"      \
  "smlad r0, r5, r8, r0\n\t"       \
  "smlad r1, r7, r8, r1\n\t"       \
  "sxtb16 r10, r9\n\t"             \
  "smlad r2, r4, r10, r2\n\t"      \
  "smlad r3, r6, r10, r3\n\t"      \
  "sxtb16 r9, r9, ror #8\n\t"      \
  "smlad r2, r5, r9, r2\n\t"       \
  "smlad r3, r7, r9, r3\n\t"
/* ctl (words): 0 o0, 1 o1, 2 o0's end, 3 b2 (2 * bias, advanced per pair), 4 the columns, 5 rq
 * (per-channel records, advanced per pair), 6 clamp (1 when [lo, hi] is narrower than int8; it
 * travels in the carry flag from LSRS to BCC: no flag-setting instruction between them),
 * 7 the steps of the 4-step body skipped on entry ((4 - n4 % 4) % 4: the loop is entered in
 * its middle through TBB, every step post-increments its pointers), 8 bytes of weights per
 * channel pair (8 * n4), 9 lo, 10 hi, 11 the weights */
#define TML_MM_ASM                                          \
  "ldr r11, [r10, #44]\n\t"                                 \
  "push {r10}\n\t"                                          \
  "1:\n\t"                                                  \
  "ldrd r3, r12, [r10, #12]\n\t"                            \
  "ldrd r0, r2, [r3], #8\n\t"                               \
  "str r3, [r10, #12]\n\t"                                  \
  "mov r1, r0\n\t"                                          \
  "mov r3, r2\n\t"                                          \
  "ldrd r4, lr, [r10, #28]\n\t"                             \
  "add lr, lr, r11\n\t"                                     \
  "tbb [pc, r4]\n\t"                                        \
  "0:\n\t"                                                  \
  ".byte (40f - 0b) / 2, (41f - 0b) / 2, (42f - 0b) / 2, (43f - 0b) / 2\n\t" \
  "40:\n\t" TML_MM_STEP                                     \
  "41:\n\t" TML_MM_STEP                                     \
  "42:\n\t" TML_MM_STEP                                     \
  "43:\n\t" TML_MM_STEP                                     \
  "cmp lr, r11\n\t"                                         \
  "bne 40b\n\t"                                             \
  "ldr r10, [sp]\n\t"                                       \
  "ldrd r12, lr, [r10, #20]\n\t"                            \
  "ldmia r12!, {r4, r5, r6, r7, r8, r9}\n\t"                \
  "str r12, [r10, #20]\n\t"                                 \
  "lsrs lr, lr, #1\n\t"                                     \
  "add r12, r5, r0, asr #31\n\t"                            \
  "smmlar r0, r0, r4, r12\n\t"                              \
  "add r12, r5, r1, asr #31\n\t"                            \
  "smmlar r1, r1, r4, r12\n\t"                              \
  "asr r0, r0, r6\n\t"                                      \
  "asr r1, r1, r6\n\t"                                      \
  "add r12, r8, r2, asr #31\n\t"                            \
  "smmlar r2, r2, r7, r12\n\t"                              \
  "add r12, r8, r3, asr #31\n\t"                            \
  "smmlar r3, r3, r7, r12\n\t"                              \
  "asr r2, r2, r9\n\t"                                      \
  "asr r3, r3, r9\n\t"                                      \
  "ssat r0, #8, r0\n\t"                                     \
  "ssat r1, #8, r1\n\t"                                     \
  "ssat r2, #8, r2\n\t"                                     \
  "ssat r3, #8, r3\n\t"                                     \
  "bcc 6f\n\t"                                              \
  "ldrd r4, r5, [r10, #36]\n\t"                             \
  "cmp r0, r4\n\t" "it lt\n\t" "movlt r0, r4\n\t"           \
  "cmp r0, r5\n\t" "it gt\n\t" "movgt r0, r5\n\t"           \
  "cmp r1, r4\n\t" "it lt\n\t" "movlt r1, r4\n\t"           \
  "cmp r1, r5\n\t" "it gt\n\t" "movgt r1, r5\n\t"           \
  "cmp r2, r4\n\t" "it lt\n\t" "movlt r2, r4\n\t"           \
  "cmp r2, r5\n\t" "it gt\n\t" "movgt r2, r5\n\t"           \
  "cmp r3, r4\n\t" "it lt\n\t" "movlt r3, r4\n\t"           \
  "cmp r3, r5\n\t" "it gt\n\t" "movgt r3, r5\n\t"           \
  "6:\n\t"                                                  \
  "ldm r10, {r4, r5, r6}\n\t"                               \
  "strb r2, [r4, #1]\n\t"                                   \
  "strb r0, [r4], #2\n\t"                                   \
  "strb r3, [r5, #1]\n\t"                                   \
  "strb r1, [r5], #2\n\t"                                   \
  "stm r10, {r4, r5}\n\t"                                   \
  "cmp r6, r4\n\t"                                          \
  "bne 1b\n\t"                                              \
  "add sp, sp, #4\n\t"
#endif

#if TML_DSP_NATIVE
static TML_NOINLINE void tml_mm2x2_asm(int32_t *ctl) {
  register int32_t *u __asm__("r10") = ctl;
  __asm__ volatile(TML_MM_ASM
                   : "+r"(u)
                   :
                   : "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r11", "r12", "lr", "cc", "memory");
}
#endif

static TML_NOINLINE void tml_mm2x2_rq(const int32_t *cols0, int32_t n4, const int32_t *w, int32_t n,
                                      const int32_t *b2, const tml_rq *r, int8_t *o0, int8_t *o1,
                                      int32_t lo, int32_t hi) {
  const int32_t full = lo == -128 && hi == 127;
  int32_t c = 0;
#if !TML_DSP_NATIVE /* (a DSP core runs the pairs in tml_mm2x2_asm) */
  for (; c + 2 <= n; c += 2, b2 += 2) {
    const int32_t *cols = cols0;
    int32_t a00 = b2[0], a10 = b2[1], a01, a11;
    a01 = a00;
    a11 = a10;
    TML_PAIR_LOOP;
    {
      const int32_t m = r->mult, k = r->k, sh = r->rsh;
      a00 = tml_rq_y(a00, m, k, sh);
      a01 = tml_rq_y(a01, m, k, sh);
    }
    ++r;
    {
      const int32_t m = r->mult, k = r->k, sh = r->rsh;
      a10 = tml_rq_y(a10, m, k, sh);
      a11 = tml_rq_y(a11, m, k, sh);
    }
    ++r;
    TML_CLAMP8(a00);
    TML_CLAMP8(a01);
    TML_CLAMP8(a10);
    TML_CLAMP8(a11);
    o0[c] = (int8_t)a00;
    o0[c + 1] = (int8_t)a10;
    o1[c] = (int8_t)a01;
    o1[c + 1] = (int8_t)a11;
  }
#endif
  if (c < n) {
    const int32_t *cols = cols0;
    int32_t a00 = b2[0], a01 = a00, k;
    for (k = 0; k < n4; ++k) {
      const int32_t w0 = *w++;
      const int32_t u = tml_sxtb16(w0), v = tml_sxtb16_ror8(w0);
      a00 = tml_smlad(cols[0], u, a00);
      a01 = tml_smlad(cols[2], u, a01);
      a00 = tml_smlad(cols[1], v, a00);
      a01 = tml_smlad(cols[3], v, a01);
      cols += 4;
    }
    a00 = tml_rq_y(a00, r->mult, r->k, r->rsh);
    a01 = tml_rq_y(a01, r->mult, r->k, r->rsh);
    TML_CLAMP8(a00);
    TML_CLAMP8(a01);
    o0[c] = (int8_t)a00;
    o1[c] = (int8_t)a01;
  }
}

/* 1 pixel (widened, doubled x: 2 words per step) x g = 4, 2 or 1 channels (4*g bytes per step);
 * acc[0..g) in and out */
/* one 4-k step of 4 channels at offset O (in steps) from x / w */
#define TML_FCSTEP4(O)                                                           \
  do {                                                                           \
    const int32_t x02 = x[2 * (O)], x13 = x[2 * (O) + 1];                        \
    const int32_t w0 = w[4 * (O)], w1 = w[4 * (O) + 1], w2 = w[4 * (O) + 2], w3 = w[4 * (O) + 3]; \
    a0 = tml_smlad(x02, tml_sxtb16(w0), a0);                                     \
    a0 = tml_smlad(x13, tml_sxtb16_ror8(w0), a0);                                \
    a1 = tml_smlad(x02, tml_sxtb16(w1), a1);                                     \
    a1 = tml_smlad(x13, tml_sxtb16_ror8(w1), a1);                                \
    a2 = tml_smlad(x02, tml_sxtb16(w2), a2);                                     \
    a2 = tml_smlad(x13, tml_sxtb16_ror8(w2), a2);                                \
    a3 = tml_smlad(x02, tml_sxtb16(w3), a3);                                     \
    a3 = tml_smlad(x13, tml_sxtb16_ror8(w3), a3);                                \
  } while (0)

/* ngroups quad groups (the first at w0, the next gstride bytes further) over n4 steps of x */
static TML_NOINLINE void tml_fc4(const int32_t *x0, int32_t n4, const int8_t *w0, int32_t gstride, int32_t ngroups,
                                 const int32_t *init, int32_t *acc) {
  for (; ngroups--; w0 += gstride, acc += 4, init += 4) {
    const int32_t *x = x0, *w = (const int32_t *)(const void *)w0;
    const int32_t *end = w + 4 * (n4 & ~3);
    int32_t a0 = init[0], a1 = init[1], a2 = init[2], a3 = init[3], r = n4 & 3;
    while (w != end) {
      TML_FCSTEP4(0);
      TML_FCSTEP4(1);
      TML_FCSTEP4(2);
      TML_FCSTEP4(3);
      x += 8;
      w += 16;
    }
    while (r--) {
      TML_FCSTEP4(0);
      x += 2;
      w += 4;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
  }
}

static TML_NOINLINE void tml_fc2(const int32_t *x, int32_t n4, const int32_t *w, int32_t g, const int32_t *init,
                                 int32_t *acc) {
  int32_t a0 = init[0], a1 = g == 2 ? init[1] : 0;
  while (n4--) {
    const int32_t x02 = x[0], x13 = x[1], w0 = w[0];
    a0 = tml_smlad(x02, tml_sxtb16(w0), a0);
    a0 = tml_smlad(x13, tml_sxtb16_ror8(w0), a0);
    if (g == 2) {
      const int32_t w1 = w[1];
      a1 = tml_smlad(x02, tml_sxtb16(w1), a1);
      a1 = tml_smlad(x13, tml_sxtb16_ror8(w1), a1);
    }
    x += 2;
    w += g;
  }
  acc[0] = a0;
  if (g == 2) acc[1] = a1;
}


/* The fast path of a single-pixel op (fully connected): output channels in chunks of TML_CHUNK,
 * accumulators from 2 * bias; the input widened (doubled) TML_FC_KC elements at a time into
 * `xw`; weights in the quad layout (group of g channels: k4/4 steps of 4*g bytes). */
/* Requantize (fast records, doubled accumulators) n channels of one pixel: acc[c] -> o[c] */
static TML_NOINLINE void tml_rq1_fast(const int32_t *acc, int32_t n, const tml_rq *r, int32_t rs, int8_t *o,
                                      int32_t lo, int32_t hi) {
  const int32_t *end = acc + n;
  if (rs == 0 && hi == 127) { /* per-tensor record */
    const int32_t m = r->mult, k = r->k, sh = r->rsh;
    for (; acc != end; ++acc, ++o) {
      const int32_t y = tml_ssat8(tml_smmlar(*acc, m, k + (*acc >> 31)) >> sh);
      *o = (int8_t)(y < lo ? lo : y);
    }
    return;
  }
  if (hi == 127 && lo == -128) { /* no clamp beyond int8 */
    for (; acc != end; ++acc, ++o, r += rs) *o = (int8_t)tml_ssat8(tml_smmlar(*acc, r->mult, r->k + (*acc >> 31)) >> r->rsh);
    return;
  }
  if (hi == 127) { /* no activation, or ReLU: saturate, then raise to lo */
    for (; acc != end; ++acc, ++o, r += rs) {
      const int32_t y = tml_ssat8(tml_smmlar(*acc, r->mult, r->k + (*acc >> 31)) >> r->rsh);
      *o = (int8_t)(y < lo ? lo : y);
    }
    return;
  }
  for (; acc != end; ++acc, ++o, r += rs) {
    const int32_t y = tml_smmlar(*acc, r->mult, r->k + (*acc >> 31)) >> r->rsh;
    *o = (int8_t)TML_MIN(TML_MAX(y, lo), hi);
  }
}

static TML_COLD void tml_fc_fast(const tml_gemm_s8_params *p, const tml_rqctx *q, const int8_t *x, int32_t k, const int8_t *w,
                        int32_t *xw, int8_t *out) {
  const int32_t n = p->out_c, k4 = p->k4, lo = q->lo, hi = q->hi;
  const int32_t quads = p->wl == 4 ? n >> 2 : 0;   /* channels in quad groups, then pairs/single */
  int32_t acc[TML_CHUNK];
  int32_t c0 = 0;
  if (k <= TML_FC_KC) tml_widen(x, k, p->input_offset, xw, 1, 2);
  while (c0 < n) {
    const int32_t nc = TML_MIN(TML_CHUNK, n - c0);
    int32_t c, kc;
    for (kc = 0; kc < k; kc += TML_FC_KC) {
      const int32_t kn = TML_MIN(TML_FC_KC, k - kc), s4 = (kn + 3) >> 2;
      const int8_t *wg = w + c0 * k4;
      if (k > TML_FC_KC) tml_widen(x + kc, kn, p->input_offset, xw, 1, 2);
      c = 0;
      {
        /* whole quad groups of this chunk in one call */
        const int32_t nq = TML_MAX(0, TML_MIN(4 * quads - c0, nc)) >> 2;
        if (nq) {
          tml_fc4(xw, s4, wg + kc * 4, 4 * k4, nq, kc ? acc : q->bias + c0, acc);
          wg += 4 * k4 * nq;
          c = 4 * nq;
        }
      }
      for (; c < nc;) {
        const int32_t g = nc - c >= 2 ? 2 : 1;
        tml_fc2(xw, s4, (const int32_t *)(const void *)(wg + kc * g), g, kc ? acc + c : q->bias + c0 + c, acc + c);
        wg += k4 * g;
        c += g;
      }
    }
    tml_rq1_fast(acc, nc, q->rq + c0 * q->rq_stride, q->rq_stride, out + c0, lo, hi);
    c0 += nc;
  }
}

/* A fully connected layer small enough for one pass (k <= TML_FC_KC, out_c <= TML_CHUNK, quad
 * layout): tml_fc_fast without its chunk loops (their set-up dominates tiny layers) */
static TML_NOINLINE void tml_fc_small(const tml_gemm_s8_params *p, const int8_t *x, int32_t k, const int8_t *w,
                                      int32_t *xw, int8_t *out) {
  const int32_t n = p->out_c, k4 = p->k4, nq = n >> 2, s4 = (k + 3) >> 2;
  int32_t acc[TML_CHUNK];
  int32_t c = 4 * nq;
  tml_widen(x, k, p->input_offset, xw, 1, 2);
  if (nq) tml_fc4(xw, s4, w, 4 * k4, nq, p->bias, acc);
  w += k4 * c;
  while (c < n) {
    const int32_t g = n - c >= 2 ? 2 : 1;
    tml_fc2(xw, s4, (const int32_t *)(const void *)w, g, p->bias + c, acc + c);
    w += k4 * g;
    c += g;
  }
  tml_rq1_fast(acc, n, p->rq, p->rq_stride, out, p->act_min, p->act_max);
}

#endif /* TML_DSP */

/* One pixel, all channels, from an int8 run x[0..k): the portable path, and on a DSP core the
 * single-pixel ops (fully connected) and a leftover pixel. Accumulators exclude the bias. */
static void tml_gemm_pixel(const tml_gemm_s8_params *p, const tml_rqctx *q, const int8_t *x, int32_t k,
                           const int8_t *w, int8_t *out) {
  const int32_t n = p->out_c, k4 = p->k4, off = p->input_offset;
  int32_t acc[TML_CHUNK];
  int32_t c = 0, c0 = 0, na = 0;
  while (c < n) {
    const int32_t g = n - c >= p->wl ? p->wl : (n - c >= 2 ? 2 : 1); /* channels of this group */
    int32_t *a = acc + na;
    int32_t i, j;
    {
      /* per 4-k step, the 4 inputs once, then 4 products per channel of the group */
      const int8_t *ws = w, *xs = x;
      const int32_t steps = k >> 2;
      int32_t s;
      for (i = 0; i < g; ++i) a[i] = 0;
      for (s = 0; s < steps; ++s, xs += 4) {
        const int32_t x0 = xs[0] + off, x1 = xs[1] + off, x2 = xs[2] + off, x3 = xs[3] + off;
        for (i = 0; i < g; ++i, ws += 4) a[i] += ws[0] * x0 + ws[1] * x1 + ws[2] * x2 + ws[3] * x3;
      }
      j = 4 * steps;
    }
    for (; j < k; ++j) {
      const int32_t xv = (int32_t)x[j] + off;
      const int8_t *ws = w + (j >> 2) * 4 * g + (j & 3);
      for (i = 0; i < g; ++i) a[i] += (int32_t)ws[4 * i] * xv;
    }
    w += k4 * g;
    c += g;
    na += g;
    if (na > TML_CHUNK - 4 || c == n) {
      tml_requant(q, acc, c0, na, 1, out + c0, 0);
      c0 = c;
      na = 0;
    }
  }
}

/* Scratch (planned by the generator, tasks/aot/layout.py gemm_scratch_bytes): the widened columns
 * (4*k4 bytes for a pixel pair when there are at least 2 output pixels, else 2*min(k4, 256) bytes
 * for a chunk of the one pixel's input), then k4 bytes for one gathered int8 column unless the
 * convolution is 1x1 without padding (every column is a contiguous input run). */
TML_COLD void tml_gemm_s8(const tml_gemm_s8_params *p, const int8_t *in, const int8_t *w, int8_t *out, void *scratch) {
  const int32_t npix = p->out_h * p->out_w;
  const int32_t k = p->k_h * p->k_w * p->in_c;
  const int32_t unit = p->k_h == 1 && p->k_w == 1 && p->pad_h == 0 && p->pad_w == 0;
  const int32_t in_stride = p->in_h * p->in_w * p->in_c, out_stride = npix * p->out_c;
  int8_t *stage = (int8_t *)scratch + (npix >= 2 ? 4 * p->k4 : 2 * TML_MIN(p->k4, TML_FC_KC));
  tml_rqctx q;
  int32_t b;
  tml_rqctx_init(&q, p->bias, p->rq, p->rq_stride, p->output_offset, p->act_min, p->act_max, p->fast);
  for (b = 0; b < p->batches; ++b, in += in_stride, out += out_stride) {
    int32_t pix = 0;
#if TML_DSP
    if (npix >= 2 && p->fast && p->rq_stride == 1) {
      /* pixel pairs; an odd last pixel pairs with itself (its column twice, written twice); the
       * generator gives such convolutions per-channel records */
      const int32_t n = p->out_c, n4 = p->k4 >> 2;
      int32_t *cols = (int32_t *)scratch;
#if TML_DSP_NATIVE
      const int32_t ne = n & ~1;
      int32_t ctl[12];
      ctl[4] = (int32_t)(uintptr_t)cols;
      ctl[6] = !(p->act_min == -128 && p->act_max == 127);
      ctl[7] = (4 - (n4 & 3)) & 3;
      ctl[8] = 8 * n4;
      ctl[9] = p->act_min;
      ctl[10] = p->act_max;
#endif
      for (; pix < npix; pix += 2) {
        const int32_t pix1 = pix + 1 < npix ? pix + 1 : pix;
        int8_t *o0 = out + pix * n, *o1 = out + pix1 * n;
        if (unit) {
          tml_widen_lane(tml_pixel_run(p, in, pix), k, p->input_offset, cols);
          tml_widen_lane(tml_pixel_run(p, in, pix1), k, p->input_offset, cols + 2);
        } else {
          tml_gather(p, in, pix, stage);
          tml_widen_lane(stage, p->k4, p->input_offset, cols);
          tml_gather(p, in, pix1, stage);
          tml_widen_lane(stage, p->k4, p->input_offset, cols + 2);
        }
#if TML_DSP_NATIVE
        if (ne) { /* the channel pairs; ctl as TML_MM_ASM describes (the rest set once, above) */
          ctl[0] = (int32_t)(uintptr_t)o0;
          ctl[1] = (int32_t)(uintptr_t)o1;
          ctl[2] = (int32_t)(uintptr_t)(o0 + ne);
          ctl[3] = (int32_t)(uintptr_t)p->bias;
          ctl[5] = (int32_t)(uintptr_t)p->rq;
          ctl[11] = (int32_t)(uintptr_t)w;
          tml_mm2x2_asm(ctl);
        }
        if (n & 1) /* an odd last channel */
          tml_mm2x2_rq(cols, n4, (const int32_t *)(const void *)(w + ne * p->k4), 1, p->bias + ne, p->rq + ne,
                       o0 + ne, o1 + ne, p->act_min, p->act_max);
#else
        tml_mm2x2_rq(cols, n4, (const int32_t *)(const void *)w, n, p->bias, p->rq, o0, o1, p->act_min, p->act_max);
#endif
      }
      continue;
    }
#endif
    for (; pix < npix; ++pix) {
      if (unit) {
        tml_gemm_pixel(p, &q, tml_pixel_run(p, in, pix), k, w, out + pix * p->out_c);
      } else {
        tml_gather(p, in, pix, stage);
        tml_gemm_pixel(p, &q, stage, k, w, out + pix * p->out_c);
      }
    }
  }
}

/* ------------------------------------------------------------------------------------------ */
/* depthwise convolution, depth multiplier 1                                                  */
/* ------------------------------------------------------------------------------------------ */
/* Weights (layout.pack_dw): channels in groups of 4 (the last group padded with zero weights);
 * per group and tap two int16 pairs (w_c, w_c+2), (w_c+1, w_c+3), doubled when `fast`. The bias
 * array holds bias + input_offset * sum(w) (doubled when fast), so the taps multiply the raw int8
 * input: the row buffers are padded with the input zero point, whose products the folded bias
 * cancels exactly as TFLM's skipped taps.
 *
 * Scratch: k_h row buffers of G * PW * 4 bytes (G = ceil(C / 4) groups, PW = (out_w - 1) *
 * stride_w + k_w padded pixels), each holding one input row group-major: [group][pixel][4 bytes]. */

static void tml_dw_fill(const tml_dw_s8_params *p, const int8_t *src, int8_t *row, int32_t pw) {
  const int32_t C = p->channels, G = (C + 3) >> 2, zp = -p->input_offset;
  const int32_t zp4 = tml_bytes_of(zp);
  const int32_t x0 = src ? TML_MIN(p->pad_w, pw) : pw;               /* [x0, x1): inside the input row */
  const int32_t x1 = src ? TML_MAX(x0, TML_MIN(pw, p->pad_w + p->in_w)) : pw;
  int32_t g, x;
  for (g = 0; g < G; ++g) {
    int32_t *d = (int32_t *)(void *)(row + g * pw * 4);
    for (x = 0; x < x0; ++x) d[x] = zp4;
    if (C - 4 * g >= 4) {
      const int8_t *sp = src + (x0 - p->pad_w) * C + 4 * g;
      int32_t *dp = d + x0, *de = d + x1;
      for (; dp != de; ++dp, sp += C) *dp = tml_rd32(sp);
    } else {
      for (x = x0; x < x1; ++x) {
        int8_t v[4];
        int32_t j;
        for (j = 0; j < 4; ++j) v[j] = 4 * g + j < C ? src[(x - p->pad_w) * C + 4 * g + j] : (int8_t)zp;
        d[x] = tml_rd32(v);
      }
    }
    for (x = x1; x < pw; ++x) d[x] = zp4;
  }
}

#if TML_DSP
/* one tap of 4 channels: X = 4 input bytes, W = the tap's two int16 pairs */
#define TML_DW_TAP(XP, WP)                                                     \
  do {                                                                         \
    const int32_t xv = *(const int32_t *)(const void *)(XP);                   \
    const uint64_t wv = *(const uint64_t *)(const void *)(WP);                 \
    const int32_t x02 = tml_sxtb16(xv), x13 = tml_sxtb16_ror8(xv);             \
    const int32_t w02 = (int32_t)(uint32_t)wv, w13 = (int32_t)(uint32_t)(wv >> 32); \
    a0 = tml_smlabb(x02, w02, a0);                                             \
    a2 = tml_smlatt(x02, w02, a2);                                             \
    a1 = tml_smlabb(x13, w13, a1);                                             \
    a3 = tml_smlatt(x13, w13, a3);                                             \
  } while (0)

/* Requantize (fast records, doubled accumulators) n pixels x nch channels of one channel group:
 * acc[4j + c] -> o[j * ostep + c] */
static TML_NOINLINE void tml_rq_group_fast(const int32_t *acc0, int32_t n, int32_t nch, const tml_rq *r, int8_t *o0,
                                           int32_t ostep, int32_t lo, int32_t hi) {
  int32_t c;
  for (c = 0; c < nch; ++c, ++r) {
    const int32_t m = r->mult, k = r->k, sh = r->rsh;
    const int32_t *acc = acc0 + c, *end = acc + 4 * n;
    int8_t *o = o0 + c;
    if (lo == -128 && hi == 127) { /* saturation alone */
      for (; acc != end; acc += 4, o += ostep) *o = (int8_t)tml_ssat8(tml_smmlar(*acc, m, k + (*acc >> 31)) >> sh);
      continue;
    }
    for (; acc != end; acc += 4, o += ostep) {
      const int32_t y = tml_smmlar(*acc, m, k + (*acc >> 31)) >> sh;
      *o = (int8_t)TML_MIN(TML_MAX(y, lo), hi);
    }
  }
}

/* any kernel size: rows[ky] = the group's row buffer at the first window */
static TML_NOINLINE void tml_dw_row(const int8_t *const *rows, int32_t k_h, int32_t k_w, int32_t step, int32_t n,
                                    const int16_t *w, const int32_t *bias, int32_t *acc) {
  int32_t ox, ky, kx;
  if (k_w == 3) { /* the row's three taps unrolled */
    for (ox = 0; ox < n; ++ox, acc += 4) {
      int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
      const int16_t *wp = w;
      for (ky = 0; ky < k_h; ++ky, wp += 12) {
        const int8_t *r = rows[ky] + ox * step;
        TML_DW_TAP(r, wp);
        TML_DW_TAP(r + 4, wp + 4);
        TML_DW_TAP(r + 8, wp + 8);
      }
      acc[0] = a0;
      acc[1] = a1;
      acc[2] = a2;
      acc[3] = a3;
    }
    return;
  }
  for (ox = 0; ox < n; ++ox) {
    int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
    const int16_t *wp = w;
    for (ky = 0; ky < k_h; ++ky) {
      const int8_t *r = rows[ky] + ox * step;
      for (kx = 0; kx < k_w; ++kx, r += 4, wp += 4) TML_DW_TAP(r, wp);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    acc += 4;
  }
}
#endif

#if TML_DSP
/* ---- 3x3, stride_w 1 or 2, fast requantization: two taps of one channel per SMLAD ----
 * Row buffers channel-major int16 (raw input, zero point where padded): row[c * L + x], L even
 * and >= pw + 3 (the extra columns, zero point, feed only outputs that are never stored). The
 * 32-bit word at x is the tap pair (x, x + 1) of one channel. Per channel a record of 10 words,
 * made once per call: the doubled int16 taps as (w00, w01), (w10, w11), (w20, w21), (w02, w12),
 * (w22, 0), then 2 * bias, mult, k, rsh and a slot for the loop's end. Products are the same
 * integers as tml_dw3x3_row's, summed in 32 bits without overflow (proven with the fast
 * requantization), so the results are identical.
 * Scratch (layout.dw_scratch_bytes): 40 * C bytes of records, then 3 row buffers of C * L int16. */
#define TML_DW16_L(pw) (((pw) + 4) & ~1)
#define TML_DW16_REC 10

TML_INLINE int32_t tml_pair16(int32_t lo, int32_t hi) { return (int32_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16)); }
/* the high halves of lo and hi as a pair: PKHTB (one instruction on a DSP core) */
#if TML_DSP_NATIVE
TML_INLINE int32_t tml_pair16_hi(int32_t lo, int32_t hi) {
  int32_t r;
  __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(hi), "r"(lo));
  return r;
}
TML_INLINE int32_t tml_pair16_lo(int32_t lo, int32_t hi) {
  int32_t r;
  __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
  return r;
}
#else
TML_INLINE int32_t tml_pair16_hi(int32_t lo, int32_t hi) { return (int32_t)(((uint32_t)lo >> 16) | ((uint32_t)hi & 0xFFFF0000u)); }
#define tml_pair16_lo tml_pair16
#endif

static TML_COLD void tml_dw16_records(const tml_dw_s8_params *p, const int16_t *w, int32_t *rec) {
  static const uint8_t lane[4] = {0, 2, 1, 3};
  const int32_t C = p->channels;
  int32_t c;
  for (c = 0; c < C; ++c, rec += TML_DW16_REC) {
    const int16_t *t = w + (c >> 2) * 36 + lane[c & 3];
    rec[0] = p->bias[c];
    rec[1] = tml_pair16(t[0], t[4]);   /* W0 */
    rec[2] = tml_pair16(t[24], t[28]); /* W2 */
    rec[3] = tml_pair16(t[32], 0);     /* W4 */
    rec[4] = tml_pair16(t[12], t[16]); /* W1 */
    rec[5] = tml_pair16(t[8], t[20]);  /* W3 */
    rec[6] = p->rq[c].mult;
    rec[7] = p->rq[c].k;
    rec[8] = p->rq[c].rsh;
    rec[9] = 0;
  }
}

/* fill n int16 with zp (n even, p 4-byte aligned) */
static TML_NOINLINE void tml_fill16(int16_t *p, int32_t n, int32_t zp) {
  const int32_t zp2 = tml_lanes_of(zp);
  int32_t *d = (int32_t *)(void *)p, *e = d + (n >> 1);
  for (; e - d >= 4; d += 4) {
    d[0] = zp2;
    d[1] = zp2;
    d[2] = zp2;
    d[3] = zp2;
  }
  for (; d != e; ++d) *d = zp2;
}

/* one input row (src, or 0 for a padding row) into the channel-major int16 row buffer: only the
 * columns of the input row [pad_w, pad_w + in_w); the padding columns of every row buffer hold
 * the zero point from the start of the call (tml_fill16) and are never written again */
static TML_COLD void tml_dw16_fill(const int8_t *src, int16_t *row, int32_t C, int32_t L, int32_t pad_w, int32_t in_w,
                                       int32_t zp) {
  const int32_t x0 = TML_MIN(pad_w, L);
  const int32_t x1 = TML_MAX(x0, TML_MIN(L, pad_w + in_w));
  int32_t c, x;
  if (!src) {
    tml_fill16(row, C * L, zp);
    return;
  }
  /* columns in pairs; an odd last column pairs with the zero point (the column after it is
   * padding or never read, and holds the zero point already) */
  for (x = x0; x < x1; x += 2) {
    const int32_t two = x + 1 < x1, zp4 = tml_bytes_of(zp), Lb = 2 * L;
    const int8_t *s0 = src + (x - pad_w) * C, *s1 = two ? s0 + C : (const int8_t *)&zp4;
    const int8_t *e = s0 + (C & ~3);
    const int32_t d1 = two ? 4 : 0;
    int8_t *d = (int8_t *)(row + x); /* channel c's column x: d + c * Lb */
#if TML_DSP_NATIVE
    if (s0 != e) {
      int32_t X0, X1, a, b, a1, b1;
      __asm__ volatile("1:\n\t"
                       "ldr %[X0], [%[s0]], #4\n\t"
                       "ldr %[X1], [%[s1]]\n\t"
                       "add %[s1], %[s1], %[d1]\n\t"
                       "sxtb16 %[a], %[X0]\n\t"
                       "sxtb16 %[b], %[X1]\n\t"
                       "sxtb16 %[a1], %[X0], ror #8\n\t"
                       "sxtb16 %[b1], %[X1], ror #8\n\t"
                       "pkhbt %[X0], %[a], %[b], lsl #16\n\t"
                       "pkhbt %[X1], %[a1], %[b1], lsl #16\n\t"
                       "str %[X0], [%[d]]\n\t"
                       "str %[X1], [%[d], %[Lb]]\n\t"
                       "add %[d], %[d], %[Lb], lsl #1\n\t"
                       "pkhtb %[X0], %[b], %[a], asr #16\n\t"
                       "pkhtb %[X1], %[b1], %[a1], asr #16\n\t"
                       "str %[X0], [%[d]]\n\t"
                       "str %[X1], [%[d], %[Lb]]\n\t"
                       "add %[d], %[d], %[Lb], lsl #1\n\t"
                       "cmp %[s0], %[e]\n\t"
                       "bne 1b\n\t"
                       : [s0] "+r"(s0), [s1] "+r"(s1), [d] "+r"(d), [X0] "=&r"(X0), [X1] "=&r"(X1), [a] "=&r"(a),
                         [b] "=&r"(b), [a1] "=&r"(a1), [b1] "=&r"(b1)
                       : [d1] "r"(d1), [Lb] "r"(Lb), [e] "r"(e)
                       : "cc", "memory");
    }
#else
    for (; s0 != e; s0 += 4, s1 += d1) { /* (the host's model of the loop above) */
      const int32_t X0 = tml_rd32(s0), X1 = tml_rd32(s1);
      const int32_t a = tml_sxtb16(X0), b = tml_sxtb16(X1);
      const int32_t a1 = tml_sxtb16_ror8(X0), b1 = tml_sxtb16_ror8(X1);
      tml_wr32(d, tml_pair16_lo(a, b));
      tml_wr32(d + Lb, tml_pair16_lo(a1, b1));
      d += 2 * Lb;
      tml_wr32(d, tml_pair16_hi(a, b));
      tml_wr32(d + Lb, tml_pair16_hi(a1, b1));
      d += 2 * Lb;
    }
#endif
    for (c = C & ~3; c < C; ++c, d += Lb, ++s0) {
      ((int16_t *)(void *)d)[0] = s0[0];
      ((int16_t *)(void *)d)[1] = two ? s0[C] : (int16_t)zp;
    }
  }
}

#if TML_DSP_NATIVE
/* A whole output row, every channel, no activation clamp beyond int8, every value in a register
 * (gcc's version of the same loop spilled about 15 per pair): per channel n2 output pairs of
 * 41 instructions (18 MACs), the odd last output, then the next channel's rows, record and
 * output column. ctl: {n2, row step to the next channel (bytes), output step to the next
 * channel, odd, record end, stride_w == 2}. */
#define TML_DW16_PAIR_S1                                                                              \
  "ldrd %[v], %[w], [%[rec]]\n\t"                                                            \
  "ldr %[x], [%[p0]]\n\t"                                                                             \
  "smlad %[a0], %[x], %[w], %[v]\n\t"                                                                 \
  "ldr %[x], [%[p0], #2]\n\t"                                                                         \
  "smlad %[a1], %[x], %[w], %[v]\n\t"                                                                 \
  "ldr %[w], [%[rec], #20]\n\t"                                                                       \
  "ldr %[x], [%[p0], #4]!\n\t"                                                                        \
  "smlabb %[a0], %[x], %[w], %[a0]\n\t"                                                               \
  "smlatb %[a1], %[x], %[w], %[a1]\n\t"                                                               \
  "ldr %[v], [%[rec], #16]\n\t"                                                                        \
  "ldr %[x], [%[p1]]\n\t"                                                                             \
  "smlad %[a0], %[x], %[v], %[a0]\n\t"                                                                \
  "ldr %[x], [%[p1], #2]\n\t"                                                                         \
  "smlad %[a1], %[x], %[v], %[a1]\n\t"                                                                \
  "ldr %[x], [%[p1], #4]!\n\t"                                                                        \
  "smlabt %[a0], %[x], %[w], %[a0]\n\t"                                                               \
  "smlatt %[a1], %[x], %[w], %[a1]\n\t"                                                               \
  "ldrd %[v], %[w], [%[rec], #8]\n\t"                                                       \
  "ldr %[x], [%[p2]]\n\t"                                                                             \
  "smlad %[a0], %[x], %[v], %[a0]\n\t"                                                                \
  "ldr %[x], [%[p2], #2]\n\t"                                                                         \
  "smlad %[a1], %[x], %[v], %[a1]\n\t"                                                                \
  "ldr %[x], [%[p2], #4]!\n\t"                                                                        \
  "smlabb %[a0], %[x], %[w], %[a0]\n\t"                                                               \
  "smlatb %[a1], %[x], %[w], %[a1]\n\t"

#define TML_DW16_PAIR_S2                                                                              \
  "ldrd %[v], %[w], [%[rec]]\n\t"                                                            \
  "ldr %[x], [%[p0]]\n\t"                                                                             \
  "smlad %[a0], %[x], %[w], %[v]\n\t"                                                                 \
  "ldr %[x], [%[p0], #4]\n\t"                                                                         \
  "smlad %[a1], %[x], %[w], %[v]\n\t"                                                                 \
  "ldr %[w], [%[rec], #20]\n\t"                                                                       \
  "smlabb %[a0], %[x], %[w], %[a0]\n\t"                                                               \
  "ldr %[x], [%[p0], #8]!\n\t"                                                                        \
  "smlabb %[a1], %[x], %[w], %[a1]\n\t"                                                               \
  "ldr %[v], [%[rec], #16]\n\t"                                                                        \
  "ldr %[x], [%[p1]]\n\t"                                                                             \
  "smlad %[a0], %[x], %[v], %[a0]\n\t"                                                                \
  "ldr %[x], [%[p1], #4]\n\t"                                                                         \
  "smlad %[a1], %[x], %[v], %[a1]\n\t"                                                                \
  "smlabt %[a0], %[x], %[w], %[a0]\n\t"                                                               \
  "ldr %[x], [%[p1], #8]!\n\t"                                                                        \
  "smlabt %[a1], %[x], %[w], %[a1]\n\t"                                                               \
  "ldrd %[v], %[w], [%[rec], #8]\n\t"                                                       \
  "ldr %[x], [%[p2]]\n\t"                                                                             \
  "smlad %[a0], %[x], %[v], %[a0]\n\t"                                                                \
  "ldr %[x], [%[p2], #4]\n\t"                                                                         \
  "smlad %[a1], %[x], %[v], %[a1]\n\t"                                                                \
  "smlabb %[a0], %[x], %[w], %[a0]\n\t"                                                               \
  "ldr %[x], [%[p2], #8]!\n\t"                                                                        \
  "smlabb %[a1], %[x], %[w], %[a1]\n\t"

#define TML_DW16_RQ2                                                                                  \
  "ldrd %[w], %[v], [%[rec], #24]\n\t"                                                                \
  "add %[x], %[v], %[a0], asr #31\n\t"                                                                \
  "smmlar %[a0], %[a0], %[w], %[x]\n\t"                                                               \
  "add %[x], %[v], %[a1], asr #31\n\t"                                                                \
  "smmlar %[a1], %[a1], %[w], %[x]\n\t"                                                               \
  "ldr %[v], [%[rec], #32]\n\t"                                                                       \
  "asr %[a0], %[a0], %[v]\n\t"                                                                        \
  "asr %[a1], %[a1], %[v]\n\t"                                                                        \
  "ssat %[a0], #8, %[a0]\n\t"                                                                         \
  "ssat %[a1], #8, %[a1]\n\t"                                                                         \
  "strb %[a1], [%[o], %[C]]\n\t"                                                                      \
  "strb %[a0], [%[o]]\n\t"                                                                            \
  "add %[o], %[o], %[C], lsl #1\n\t"                                                                  \
  "subs %[cnt], %[cnt], #1\n\t"

/* stride 1, odd n >= 3: the first three outputs of the channel at once (27 MACs, 56
 * instructions: the middle tap pairs and the weights serve all three; cnt is the third accumulator) */
#define TML_DW16_TRIPLE_S1 \
  "ldrd %[v], %[w], [%[rec]]\n\t"                                                            \
  "ldr %[x], [%[p0]]\n\t" \
  "smlad %[a0], %[x], %[w], %[v]\n\t" \
  "ldr %[x], [%[p0], #2]\n\t" \
  "smlad %[a1], %[x], %[w], %[v]\n\t" \
  "ldr %[x], [%[p0], #4]\n\t" \
  "smlad %[cnt], %[x], %[w], %[v]\n\t" \
  "ldr %[w], [%[rec], #20]\n\t" \
  "smlabb %[a0], %[x], %[w], %[a0]\n\t" \
  "smlatb %[a1], %[x], %[w], %[a1]\n\t" \
  "ldr %[x], [%[p0], #6]!\n\t" \
  "smlatb %[cnt], %[x], %[w], %[cnt]\n\t" \
  "ldr %[v], [%[rec], #16]\n\t" \
  "ldr %[x], [%[p1]]\n\t" \
  "smlad %[a0], %[x], %[v], %[a0]\n\t" \
  "ldr %[x], [%[p1], #2]\n\t" \
  "smlad %[a1], %[x], %[v], %[a1]\n\t" \
  "ldr %[x], [%[p1], #4]\n\t" \
  "smlad %[cnt], %[x], %[v], %[cnt]\n\t" \
  "smlabt %[a0], %[x], %[w], %[a0]\n\t" \
  "smlatt %[a1], %[x], %[w], %[a1]\n\t" \
  "ldr %[x], [%[p1], #6]!\n\t" \
  "smlatt %[cnt], %[x], %[w], %[cnt]\n\t" \
  "ldrd %[v], %[w], [%[rec], #8]\n\t"                                                       \
  "ldr %[x], [%[p2]]\n\t" \
  "smlad %[a0], %[x], %[v], %[a0]\n\t" \
  "ldr %[x], [%[p2], #2]\n\t" \
  "smlad %[a1], %[x], %[v], %[a1]\n\t" \
  "ldr %[x], [%[p2], #4]\n\t" \
  "smlad %[cnt], %[x], %[v], %[cnt]\n\t" \
  "smlabb %[a0], %[x], %[w], %[a0]\n\t" \
  "smlatb %[a1], %[x], %[w], %[a1]\n\t" \
  "ldr %[x], [%[p2], #6]!\n\t" \
  "smlatb %[cnt], %[x], %[w], %[cnt]\n\t" \
  "ldrd %[w], %[v], [%[rec], #24]\n\t" \
  "add %[x], %[v], %[a0], asr #31\n\t" \
  "smmlar %[a0], %[a0], %[w], %[x]\n\t" \
  "add %[x], %[v], %[a1], asr #31\n\t" \
  "smmlar %[a1], %[a1], %[w], %[x]\n\t" \
  "add %[x], %[v], %[cnt], asr #31\n\t" \
  "smmlar %[cnt], %[cnt], %[w], %[x]\n\t" \
  "ldr %[v], [%[rec], #32]\n\t" \
  "asr %[a0], %[a0], %[v]\n\t" \
  "asr %[a1], %[a1], %[v]\n\t" \
  "asr %[cnt], %[cnt], %[v]\n\t" \
  "ssat %[a0], #8, %[a0]\n\t" \
  "ssat %[a1], #8, %[a1]\n\t" \
  "ssat %[cnt], #8, %[cnt]\n\t" \
  "strb %[a0], [%[o]]\n\t" \
  "strb %[a1], [%[o], %[C]]\n\t" \
  "add %[o], %[o], %[C], lsl #1\n\t" \
  "strb %[cnt], [%[o]]\n\t" \
  "add %[o], %[o], %[C]\n\t"

#define TML_DW16_ROW_ASM \
  "2:\n\t" \
  "ldr %[v], [%[ctl], #20]\n\t" \
  "cmp %[v], #1\n\t" \
  "beq 5f\n\t" \
  "blt 6f\n\t" \
  TML_DW16_TRIPLE_S1 \
  "6:\n\t" \
  "ldr %[cnt], [%[ctl]]\n\t" \
  "cmp %[cnt], #0\n\t" \
  "beq 4f\n\t" \
  "1:\n\t" \
  TML_DW16_PAIR_S1 \
  TML_DW16_RQ2 \
  "bne 1b\n\t" \
  "b 4f\n\t" \
  "5:\n\t" \
  "ldr %[cnt], [%[ctl]]\n\t" \
  "cmp %[cnt], #0\n\t" \
  "beq 3f\n\t" \
  "7:\n\t" \
  TML_DW16_PAIR_S2 \
  TML_DW16_RQ2 \
  "bne 7b\n\t" \
  "3:\n\t" \
  "ldr %[v], [%[ctl], #12]\n\t"                                                                       \
  "cmp %[v], #0\n\t"                                                                                  \
  "beq 4f\n\t"                                                                                        \
  "ldrd %[v], %[w], [%[rec]]\n\t"                                                            \
  "ldr %[x], [%[p0]]\n\t"                                                                             \
  "smlad %[a0], %[x], %[w], %[v]\n\t"                                                                 \
  "ldr %[w], [%[rec], #20]\n\t"                                                                       \
  "ldr %[x], [%[p0], #4]\n\t"                                                                         \
  "smlabb %[a0], %[x], %[w], %[a0]\n\t"                                                               \
  "ldr %[v], [%[rec], #16]\n\t"                                                                        \
  "ldr %[x], [%[p1]]\n\t"                                                                             \
  "smlad %[a0], %[x], %[v], %[a0]\n\t"                                                                \
  "ldr %[x], [%[p1], #4]\n\t"                                                                         \
  "smlabt %[a0], %[x], %[w], %[a0]\n\t"                                                               \
  "ldrd %[v], %[w], [%[rec], #8]\n\t"                                                       \
  "ldr %[x], [%[p2]]\n\t"                                                                             \
  "smlad %[a0], %[x], %[v], %[a0]\n\t"                                                                \
  "ldr %[x], [%[p2], #4]\n\t"                                                                         \
  "smlabb %[a0], %[x], %[w], %[a0]\n\t"                                                               \
  "ldrd %[w], %[v], [%[rec], #24]\n\t"                                                                \
  "add %[x], %[v], %[a0], asr #31\n\t"                                                                \
  "smmlar %[a0], %[a0], %[w], %[x]\n\t"                                                               \
  "ldr %[v], [%[rec], #32]\n\t"                                                                       \
  "asr %[a0], %[a0], %[v]\n\t"                                                                        \
  "ssat %[a0], #8, %[a0]\n\t"                                                                         \
  "strb %[a0], [%[o]]\n\t"                                                                            \
  "4:\n\t"                                                                                            \
  "ldr %[v], [%[ctl], #4]\n\t"                                                                        \
  "add %[p0], %[p0], %[v]\n\t"                                                                        \
  "add %[p1], %[p1], %[v]\n\t"                                                                        \
  "add %[p2], %[p2], %[v]\n\t"                                                                        \
  "ldr %[v], [%[ctl], #8]\n\t"                                                                        \
  "add %[o], %[o], %[v]\n\t"                                                                          \
  "add %[rec], %[rec], #40\n\t"                                                                       \
  "ldr %[v], [%[ctl], #16]\n\t"                                                                       \
  "cmp %[rec], %[v]\n\t"                                                                              \
  "bne 2b\n\t"

#define TML_DW16_OPERANDS                                                                             \
  : [p0] "+r"(p0), [p1] "+r"(p1), [p2] "+r"(p2), [o] "+r"(o), [rec] "+r"(rec), [cnt] "=&r"(cnt),      \
    [a0] "=&r"(a0), [a1] "=&r"(a1), [x] "=&r"(x), [w] "=&r"(w), [v] "=&r"(v)                          \
  : [ctl] "r"(ctl), [C] "r"(C)                                                                        \
  : "cc", "memory"

static TML_NOINLINE void tml_dw16_row_asm(const int16_t *p0, const int16_t *p1, const int16_t *p2, int8_t *o,
                                          const int32_t *rec, int32_t C, const int32_t *ctl) {
  int32_t cnt, a0, a1, x, w, v;
  __asm__ volatile(TML_DW16_ROW_ASM TML_DW16_OPERANDS);
}
#endif

#if !TML_DSP_NATIVE
/* one output row, every channel, in C (the host's exact model of tml_dw16_row_asm, which a DSP
 * core runs): rows r0/r1/r2 = the three row buffers (channel 0), n outputs */
static TML_NOINLINE void tml_dw16_row(const int16_t *r0, const int16_t *r1, const int16_t *r2, int32_t C, int32_t L,
                                      int32_t n, int32_t s2, const int32_t *rec, int8_t *out, int32_t lo, int32_t hi) {
  const int32_t step = s2 ? 4 : 2; /* int16 elements per output pair */
  const int32_t full = lo == -128 && hi == 127;
  int32_t c;
  for (c = 0; c < C; ++c, r0 += L, r1 += L, r2 += L, rec += TML_DW16_REC, ++out) {
    const int16_t *p0 = r0, *p1 = r1, *p2 = r2;
    int8_t *o = out;
    int32_t j = n >> 1;
    {
      const int32_t W0 = rec[1], W1 = rec[4], W2 = rec[2], W3 = rec[5], W4 = rec[3], bias = rec[0];
      const int32_t m = rec[6], k = rec[7], sh = rec[8];
      for (; j > 0; --j) {
        int32_t a0 = bias, a1 = bias, y0, y1;
        if (s2) {
          a0 = tml_smlad(tml_rd32(p0), W0, a0);
          a1 = tml_smlad(tml_rd32(p0 + 2), W0, a1);
          a0 = tml_smlabb(tml_rd32(p0 + 2), W3, a0);
          a1 = tml_smlabb(tml_rd32(p0 + 4), W3, a1);
          a0 = tml_smlad(tml_rd32(p1), W1, a0);
          a1 = tml_smlad(tml_rd32(p1 + 2), W1, a1);
          a0 = tml_smlabt(tml_rd32(p1 + 2), W3, a0);
          a1 = tml_smlabt(tml_rd32(p1 + 4), W3, a1);
          a0 = tml_smlad(tml_rd32(p2), W2, a0);
          a1 = tml_smlad(tml_rd32(p2 + 2), W2, a1);
          a0 = tml_smlabb(tml_rd32(p2 + 2), W4, a0);
          a1 = tml_smlabb(tml_rd32(p2 + 4), W4, a1);
        } else {
          int32_t B = tml_rd32(p0 + 2);
          a0 = tml_smlad(tml_rd32(p0), W0, a0);
          a1 = tml_smlad(tml_rd32(p0 + 1), W0, a1);
          a0 = tml_smlabb(B, W3, a0);
          a1 = tml_smlatb(B, W3, a1);
          B = tml_rd32(p1 + 2);
          a0 = tml_smlad(tml_rd32(p1), W1, a0);
          a1 = tml_smlad(tml_rd32(p1 + 1), W1, a1);
          a0 = tml_smlabt(B, W3, a0);
          a1 = tml_smlatt(B, W3, a1);
          B = tml_rd32(p2 + 2);
          a0 = tml_smlad(tml_rd32(p2), W2, a0);
          a1 = tml_smlad(tml_rd32(p2 + 1), W2, a1);
          a0 = tml_smlabb(B, W4, a0);
          a1 = tml_smlatb(B, W4, a1);
        }
        p0 += step;
        p1 += step;
        p2 += step;
        y0 = tml_rq_y(a0, m, k, sh);
        y1 = tml_rq_y(a1, m, k, sh);
        if (full) {
          o[0] = (int8_t)tml_ssat8(y0);
          o[C] = (int8_t)tml_ssat8(y1);
        } else {
          o[0] = (int8_t)TML_MIN(TML_MAX(y0, lo), hi);
          o[C] = (int8_t)TML_MIN(TML_MAX(y1, lo), hi);
        }
        o += 2 * C;
      }
      if (n & 1) {
        int32_t a0 = bias, y0;
        a0 = tml_smlad(tml_rd32(p0), W0, a0);
        a0 = tml_smlabb(tml_rd32(p0 + 2), W3, a0);
        a0 = tml_smlad(tml_rd32(p1), W1, a0);
        a0 = tml_smlabt(tml_rd32(p1 + 2), W3, a0);
        a0 = tml_smlad(tml_rd32(p2), W2, a0);
        a0 = tml_smlabb(tml_rd32(p2 + 2), W4, a0);
        y0 = tml_rq_y(a0, m, k, sh);
        o[0] = (int8_t)(full ? tml_ssat8(y0) : TML_MIN(TML_MAX(y0, lo), hi));
      }
    }
  }
}
#endif

TML_INLINE int32_t tml_slot3(int32_t iy) { return ((iy % 3) + 3) % 3; }

static TML_COLD void tml_dw3x3_s8_dsp(const tml_dw_s8_params *p, const int8_t *in, const int16_t *w, int8_t *out, void *scratch) {
  const int32_t C = p->channels, s_w = p->stride_w, n = p->out_w;
  const int32_t pw = (n - 1) * s_w + 3, L = TML_DW16_L(pw);
#if TML_DSP_NATIVE
  const int32_t step = s_w == 2 ? 4 : 2; /* int16 elements per output pair */
  int32_t ctl[6];
#endif
  const int32_t in_stride = p->in_h * p->in_w * C, out_stride = p->out_h * p->out_w * C;
  int32_t *rec = (int32_t *)scratch;
  int16_t *rows = (int16_t *)(void *)(rec + TML_DW16_REC * C);
  int32_t b, oy;
  tml_dw16_records(p, w, rec);
  tml_fill16(rows, 3 * C * L, -p->input_offset);
#if TML_DSP_NATIVE
  {
    /* mode 0: stride 1, pairs; 1: stride 2 (or a lone output), pairs, then an odd last output;
     * 2: stride 1, odd n >= 3: a triple, then pairs */
    const int32_t tri = s_w == 1 && (n & 1) && n >= 3;
    ctl[0] = (n >> 1) - tri;
    ctl[1] = (L - (tri ? n : step * (n >> 1))) * 2;
    ctl[2] = 1 - C * (tri ? n : 2 * (n >> 1));
    ctl[3] = n & 1;
    ctl[4] = (int32_t)(uintptr_t)(rec + TML_DW16_REC * C);
    ctl[5] = tri ? 2 : (s_w == 2 || n == 1);
  }
#endif
  for (b = 0; b < p->batches; ++b, in += in_stride, out += out_stride) {
    int32_t loaded = -p->pad_h - 1; /* highest input row in the row buffers */
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t iy0 = oy * p->stride_h - p->pad_h;
      int32_t iy;
      for (iy = TML_MAX(iy0, loaded + 1); iy < iy0 + 3; ++iy) {
        tml_dw16_fill(iy >= 0 && iy < p->in_h ? in + iy * p->in_w * C : 0, rows + tml_slot3(iy) * C * L, C, L,
                      p->pad_w, p->in_w, -p->input_offset);
        loaded = iy;
      }
#if TML_DSP_NATIVE
      /* only without an activation clamp beyond int8 (tml_dw_s8) */
      tml_dw16_row_asm(rows + tml_slot3(iy0) * C * L, rows + tml_slot3(iy0 + 1) * C * L, rows + tml_slot3(iy0 + 2) * C * L,
                       out + oy * n * C, rec, C, ctl);
#else
      tml_dw16_row(rows + tml_slot3(iy0) * C * L, rows + tml_slot3(iy0 + 1) * C * L, rows + tml_slot3(iy0 + 2) * C * L, C,
                   L, n, s_w == 2, rec, out + oy * n * C, p->act_min, p->act_max);
#endif
    }
  }
}
#endif

TML_COLD void tml_dw_s8(const tml_dw_s8_params *p, const int8_t *in, const int16_t *w, int8_t *out, void *scratch) {
  const int32_t C = p->channels, G = (C + 3) >> 2, taps = p->k_h * p->k_w;
  const int32_t pw = (p->out_w - 1) * p->stride_w + p->k_w;
  const int32_t rowbuf = G * pw * 4;
  const int32_t in_stride = p->in_h * p->in_w * C, out_stride = p->out_h * p->out_w * C;
  const int8_t *rows[8];
  int32_t b, oy, ox, g, ky, j;
  tml_rqctx q;
#if TML_DSP
  if (p->pairs && p->fast && p->rq_stride == 1 && p->k_h == 3 && p->k_w == 3 && (p->stride_w == 1 || p->stride_w == 2) &&
      (!TML_DSP_NATIVE || (p->act_min == -128 && p->act_max == 127))) {
    tml_dw3x3_s8_dsp(p, in, w, out, scratch);
    return;
  }
#endif
  tml_rqctx_init(&q, p->bias, p->rq, p->rq_stride, p->output_offset, p->act_min, p->act_max, p->fast);
  for (b = 0; b < p->batches; ++b, in += in_stride, out += out_stride) {
    int32_t loaded = -p->pad_h - 1; /* highest input row in the row buffers */
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t iy0 = oy * p->stride_h - p->pad_h;
      int32_t iy;
      for (iy = TML_MAX(iy0, loaded + 1); iy < iy0 + p->k_h; ++iy) {
        int8_t *slot = (int8_t *)scratch + (((iy % p->k_h) + p->k_h) % p->k_h) * rowbuf;
        tml_dw_fill(p, iy >= 0 && iy < p->in_h ? in + iy * p->in_w * C : 0, slot, pw);
        loaded = iy;
      }
      for (ky = 0; ky < p->k_h; ++ky) {
        const int32_t r = iy0 + ky;
        rows[ky] = (const int8_t *)scratch + (((r % p->k_h) + p->k_h) % p->k_h) * rowbuf;
      }
      for (g = 0; g < G; ++g) {
        const int16_t *wg = w + g * taps * 4;
        const int32_t nch = TML_MIN(4, C - 4 * g);
        int8_t *o = out + oy * p->out_w * C + 4 * g;
        int32_t acc[4 * 32];
        for (ox = 0; ox < p->out_w; ox += 32) {
          const int32_t n = TML_MIN(32, p->out_w - ox);
          int32_t c;
#if TML_DSP
          if (q.fast) {
            const int32_t *bias = p->bias + 4 * g;
            {
              const int8_t *gr[8];
              for (ky = 0; ky < p->k_h; ++ky) gr[ky] = rows[ky] + g * pw * 4 + ox * p->stride_w * 4;
              tml_dw_row(gr, p->k_h, p->k_w, 4 * p->stride_w, n, wg, bias, acc);
            }
            tml_rq_group_fast(acc, n, nch, q.rq + 4 * g, o + ox * C, C, q.lo, q.hi);
            continue;
          }
#endif
          {
            /* portable (and any op whose requantization is not fast): the same row buffers and
             * int16 weight lanes (c0, c2, c1, c3) */
            const int32_t kw = p->k_w, st = 4 * p->stride_w;
            for (j = 0; j < n; ++j) {
              int32_t a0 = p->bias[4 * g], a1 = p->bias[4 * g + 1], a2 = p->bias[4 * g + 2], a3 = p->bias[4 * g + 3];
              const int16_t *wp = wg;
              for (ky = 0; ky < p->k_h; ++ky) {
                const int8_t *r = rows[ky] + g * pw * 4 + (ox + j) * st;
                for (iy = 0; iy < kw; ++iy, r += 4, wp += 4) {
                  a0 += wp[0] * r[0];
                  a2 += wp[1] * r[2];
                  a1 += wp[2] * r[1];
                  a3 += wp[3] * r[3];
                }
              }
              acc[4 * j] = a0;
              acc[4 * j + 1] = a1;
              acc[4 * j + 2] = a2;
              acc[4 * j + 3] = a3;
            }
          }
          /* TFLM's 64-bit requantization */
          for (c = 0; c < nch; ++c) {
            const tml_rq *r = q.rq + 4 * g + c;
            for (j = 0; j < n; ++j) {
              const int32_t a = q.fast ? acc[4 * j + c] >> 1 : acc[4 * j + c];
              o[(ox + j) * C + c] = tml_out8(tml_rq_any(a, r, q.zp, q.fast), q.lo, q.hi);
            }
          }
        }
      }
    }
  }
}

/* ------------------------------------------------------------------------------------------ */
/* FULLY_CONNECTED: the single-pixel path of tml_gemm_s8 alone (rows = batches), so a model  */
/* without convolutions links none of the convolution machinery                              */
/* ------------------------------------------------------------------------------------------ */

/* a convolution with one output pixel (the generator's choice): the single-pixel path of
 * tml_gemm_s8 without linking the pair path, or the pair path without linking this one */
void tml_gemm1_s8(const tml_gemm_s8_params *p, const int8_t *in, const int8_t *w, int8_t *out, void *scratch) {
  const int32_t unit = p->k_h == 1 && p->k_w == 1 && p->pad_h == 0 && p->pad_w == 0;
  const int32_t k = p->k_h * p->k_w * p->in_c, in_stride = p->in_h * p->in_w * p->in_c;
  int8_t *stage = (int8_t *)scratch + 2 * TML_MIN(p->k4, TML_FC_KC);
  tml_rqctx q;
  int32_t b;
  tml_rqctx_init(&q, p->bias, p->rq, p->rq_stride, p->output_offset, p->act_min, p->act_max, p->fast);
  for (b = 0; b < p->batches; ++b, in += in_stride, out += p->out_c) {
    const int8_t *src = unit ? in : (tml_gather(p, in, 0, stage), stage);
#if TML_DSP
    if (p->fast) {
      tml_fc_fast(p, &q, src, unit ? k : p->k4, w, (int32_t *)scratch, out);
      continue;
    }
#endif
    tml_gemm_pixel(p, &q, src, k, w, out);
  }
}

/* a fully connected layer one pass covers (in_c <= TML_FC_KC, out_c <= TML_CHUNK: the generator's
 * choice), without linking the chunked path */
void tml_fc_packed1_s8(const tml_gemm_s8_params *p, const int8_t *in, const int8_t *w, int8_t *out, void *scratch) {
  const int32_t k = p->in_c;
  int32_t b;
  for (b = 0; b < p->batches; ++b, in += k, out += p->out_c) {
#if TML_DSP
    if (p->fast) {
      tml_fc_small(p, in, k, w, (int32_t *)scratch, out);
      continue;
    }
#endif
    (void)scratch;
    {
      tml_rqctx q;
      tml_rqctx_init(&q, p->bias, p->rq, p->rq_stride, p->output_offset, p->act_min, p->act_max, p->fast);
      tml_gemm_pixel(p, &q, in, k, w, out);
    }
  }
}

void tml_fc_packed_s8(const tml_gemm_s8_params *p, const int8_t *in, const int8_t *w, int8_t *out, void *scratch) {
  const int32_t k = p->in_c;
  tml_rqctx q;
  int32_t b;
  tml_rqctx_init(&q, p->bias, p->rq, p->rq_stride, p->output_offset, p->act_min, p->act_max, p->fast);
  for (b = 0; b < p->batches; ++b, in += k, out += p->out_c) {
#if TML_DSP
    if (p->fast) {
      if (k <= TML_FC_KC && p->out_c <= TML_CHUNK && p->wl == 4)
        tml_fc_small(p, in, k, w, (int32_t *)scratch, out);
      else
        tml_fc_fast(p, &q, in, k, w, (int32_t *)scratch, out);
      continue;
    }
#endif
    (void)scratch;
    tml_gemm_pixel(p, &q, in, k, w, out);
  }
}

