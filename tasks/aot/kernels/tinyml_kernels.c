/* tinyml_kernels.c - see tinyml_kernels.h. Portable C99; no malloc, no global state.
 *
 * The arithmetic mirrors TensorFlow Lite Micro's reference kernels
 * (tensorflow/lite/kernels/internal/reference/..., common.h and gemmlowp's fixedpoint.h):
 * same operation order, same rounding, same saturation, so int8 outputs are bit-identical.
 */
#include "tinyml_kernels.h"
#include "tinyml_simd.h"

/* Float kernels: no fused multiply-add contraction, whatever -std the firmware build uses
 * (gnu* modes default to -ffp-contract=fast), so float results match the host build bit for bit;
 * exp and tanh are computed here (tml_expf, tml_tanhf), not by libm. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>
#include <string.h>

#define TML_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TML_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ------------------------------------------------------------------------------------------ */
/* gemmlowp / TFLite fixed-point primitives                                                   */
/* ------------------------------------------------------------------------------------------ */

/* x * 2^s with two's-complement wrap, without signed-overflow UB */
static int32_t tml_shl(int32_t x, int32_t s) { return (int32_t)((uint32_t)x << s); }

/* SaturatingRoundingDoublingHighMul: (a*b + nudge) / 2^31 truncated toward zero, INT32_MIN^2 saturates */
static int32_t tml_srdhm(int32_t a, int32_t b) {
  int64_t ab, v, q;
  if (a == b && a == INT32_MIN) return INT32_MAX;
  ab = (int64_t)a * (int64_t)b;
  v = ab + (ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30)));
  /* division by 2^31 rounding toward zero (C and C++ semantics), without a libcall */
  q = v >= 0 ? (v >> 31) : -((-v) >> 31);
  return (int32_t)q;
}

/* RoundingDivideByPOT: round-to-nearest, ties away from zero */
static int32_t tml_rdbypot(int32_t x, int32_t exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier (TFLite common.cc, double-rounding variant) */
int32_t tml_mbqm(int32_t x, int32_t multiplier, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  return tml_rdbypot(tml_srdhm(tml_shl(x, left), multiplier), right);
}

/* gemmlowp SaturatingRoundingMultiplyByPOT<e> for e > 0 */
static int32_t tml_sat_shl(int32_t x, int32_t e) {
  const int32_t threshold = (int32_t)(((uint32_t)1 << (31 - e)) - 1u);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return tml_shl(x, e);
}

/* gemmlowp Rescale<dst>(FixedPoint<src>) */
static int32_t tml_rescale(int32_t x, int32_t src_bits, int32_t dst_bits) {
  const int32_t e = src_bits - dst_bits;
  if (e > 0) return tml_sat_shl(x, e);
  if (e < 0) return tml_rdbypot(x, -e);
  return x;
}

static int32_t tml_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static int32_t tml_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

/* exp(x) for x in [-1/4, 0), Q0.31 in and out */
static int32_t tml_exp_quarter(int32_t a) {
  const int32_t constant_term = 1895147668;
  const int32_t constant_1_over_3 = 715827883;
  const int32_t x = tml_add(a, (int32_t)1 << 28);
  const int32_t x2 = tml_srdhm(x, x);
  const int32_t x3 = tml_srdhm(x2, x);
  const int32_t x4 = tml_srdhm(x2, x2);
  const int32_t x4_over_4 = tml_rdbypot(x4, 2);
  const int32_t poly = tml_rdbypot(tml_add(tml_srdhm(tml_add(x4_over_4, x3), constant_1_over_3), x2), 1);
  return tml_add(constant_term, tml_srdhm(constant_term, tml_add(x, poly)));
}

/* gemmlowp exp_on_negative_values for FixedPoint<int32, integer_bits>; result Q0.31 */
static int32_t tml_exp_on_negative_values(int32_t a, int32_t integer_bits) {
  static const int32_t kMult[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
  const int32_t fractional_bits = 31 - integer_bits;
  const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_one_quarter = tml_sub(a & mask, one_quarter);
  int32_t result = tml_exp_quarter(tml_rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0));
  const int32_t remainder = tml_sub(a_mod_quarter_minus_one_quarter, a);
  int32_t e;
  for (e = -2; e <= 4; ++e) {
    if (integer_bits > e) {
      const int32_t shift = fractional_bits + e;
      if (remainder & (int32_t)((uint32_t)1 << shift)) result = tml_srdhm(result, kMult[e + 2]);
    }
  }
  if (integer_bits > 5) {
    const int32_t clamp = -((int32_t)1 << (36 - integer_bits));
    if (a < clamp) result = 0;
  }
  if (a == 0) result = INT32_MAX;
  return result;
}

/* Newton-Raphson loop shared by 1/(1+x) and (1-x)/(1+x); returns x in Q2.29 */
static int32_t tml_nr_reciprocal(int32_t a) {
  const int64_t sum = (int64_t)a + (int64_t)INT32_MAX;
  const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  int32_t x = tml_add(1515870810, tml_srdhm(half_denominator, -1010580540));
  int i;
  for (i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = tml_srdhm(half_denominator, x);
    const int32_t one_minus = tml_sub((int32_t)1 << 29, half_denominator_times_x);
    x = tml_add(x, tml_rescale(tml_srdhm(x, one_minus), 4, 2));
  }
  return x;
}

static int32_t tml_one_over_one_plus_x(int32_t a) { return tml_rescale(tml_nr_reciprocal(a), 1, 0); }

static int32_t tml_one_minus_x_over_one_plus_x(int32_t a) {
  return tml_rescale(tml_sub(tml_nr_reciprocal(a), (int32_t)1 << 29), 2, 0);
}

static int32_t tml_fp_logistic(int32_t a, int32_t integer_bits) {
  const int32_t abs_input = a > 0 ? a : -a;
  const int32_t pos = tml_one_over_one_plus_x(tml_exp_on_negative_values(-abs_input, integer_bits));
  if (a == 0) return (int32_t)1 << 30;
  return a > 0 ? pos : tml_sub(INT32_MAX, pos);
}

static int32_t tml_fp_tanh(int32_t a, int32_t integer_bits) {
  const int32_t n = a < 0 ? a : -a;
  const int32_t t = tml_one_minus_x_over_one_plus_x(tml_exp_on_negative_values(n, integer_bits + 1));
  if (a == 0) return 0;
  return a < 0 ? -t : t;
}

static int32_t tml_clz(uint32_t x) {
  int32_t n = 0;
  if (x == 0) return 32;
  while (!(x & 0x80000000u)) {
    x <<= 1;
    ++n;
  }
  return n;
}

static int32_t tml_get_reciprocal(int32_t x, int32_t x_integer_digits, int32_t *num_bits_over_unit) {
  const int32_t headroom_plus_one = tml_clz((uint32_t)x);
  const int32_t shifted_sum_minus_one =
      (int32_t)(((uint32_t)x << headroom_plus_one) - ((uint32_t)1 << 31));
  *num_bits_over_unit = x_integer_digits - headroom_plus_one;
  return tml_one_over_one_plus_x(shifted_sum_minus_one);
}

/* ------------------------------------------------------------------------------------------ */
/* float exp / tanh: one implementation for every core, so float outputs are bit-identical on    */
/* the host and the target (libm's expf/tanhf differ between glibc and newlib in the last bits)  */
/* ------------------------------------------------------------------------------------------ */

static float tml_f32_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static uint32_t tml_bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* exp(x) in float arithmetic only (additions, multiplications, one division, float<->int
 * conversions: IEEE-exact on every FPU and in soft float), with the argument reduction and
 * rational approximation of fdlibm/FreeBSD e_expf.c: error below 1 ulp. */
float tml_expf(float x) {
  const float ln2_hi = 6.9314575195e-01f, ln2_lo = 1.4286067653e-06f, inv_ln2 = 1.4426950216e+00f;
  const float p1 = 1.6666625440e-1f, p2 = -2.7667332906e-3f;
  const uint32_t hx = tml_bits_of(x) & 0x7FFFFFFFu;
  const int32_t neg = (int32_t)(tml_bits_of(x) >> 31);
  float hi = 0.0f, lo = 0.0f, t, c, y, twopk;
  int32_t k = 0;
  if (hx >= 0x42B17218u) {                 /* |x| >= 88.72..., inf or NaN */
    if (hx > 0x7F800000u) return x + x;    /* NaN */
    if (hx == 0x7F800000u) return neg ? 0.0f : x;
    if (!neg) return tml_f32_from_bits(0x7F800000u);
    if (x < -1.0397208405e+02f) return 0.0f;
  }
  if (hx > 0x3EB17218u) {                  /* |x| > ln2 / 2: x = k ln2 + r */
    if (hx < 0x3F851592u) {                /* and < 1.5 ln2 */
      hi = neg ? x + ln2_hi : x - ln2_hi;
      lo = neg ? -ln2_lo : ln2_lo;
      k = neg ? -1 : 1;
    } else {
      k = (int32_t)(inv_ln2 * x + (neg ? -0.5f : 0.5f));
      t = (float)k;
      hi = x - t * ln2_hi; /* exact */
      lo = t * ln2_lo;
    }
    x = hi - lo;
  } else if (hx < 0x39000000u) {           /* |x| < 2^-14 */
    return 1.0f + x;
  }
  t = x * x;
  c = x - t * (p1 + t * p2);
  if (k == 0) return 1.0f - ((x * c) / (c - 2.0f) - x);
  y = 1.0f - ((lo - (x * c) / (2.0f - c)) - hi);
  if (k >= -125) {
    if (k == 128) return y * 2.0f * tml_f32_from_bits(0x7F000000u); /* 2^127 */
    twopk = tml_f32_from_bits((uint32_t)(0x3F800000 + (k << 23)));
    return y * twopk;
  }
  twopk = tml_f32_from_bits((uint32_t)(0x3F800000 + ((k + 100) << 23)));
  return y * twopk * tml_f32_from_bits(0x0D800000u); /* 2^-100 */
}

/* tanh(x): odd Taylor polynomial for |x| < 0.5 (truncation below 1e-8 absolute), else
 * (e^2|x| - 1) / (e^2|x| + 1) with tml_expf; +-1 beyond |x| = 9 (as fdlibm's tanhf). */
float tml_tanhf(float x) {
  const uint32_t hx = tml_bits_of(x) & 0x7FFFFFFFu;
  const int32_t neg = (int32_t)(tml_bits_of(x) >> 31);
  const float a = neg ? -x : x;
  float z;
  if (hx > 0x7F800000u) return x + x;      /* NaN */
  if (a >= 9.0f) {
    z = 1.0f;
  } else if (a < 0.5f) {
    const float t = a * a;
    z = a + a * t * (-3.33333333333e-1f + t * (1.33333333333e-1f + t * (-5.39682539683e-2f + t * (2.18694885362e-2f +
        t * (-8.86323552990e-3f + t * (3.59212803657e-3f + t * (-1.45583438705e-3f + t * 5.90027440946e-4f)))))));
  } else {
    const float e = tml_expf(2.0f * a);
    z = (e - 1.0f) / (e + 1.0f);
  }
  return neg ? -z : z;
}

/* ------------------------------------------------------------------------------------------ */
/* float dot products on a core with a single-precision FPU (Cortex-M4F, M7, M33F...)          */
/* ------------------------------------------------------------------------------------------ */
/* The float kernels sum each output's products one by one in the reference kernels' order,
 * every product and every sum rounded on its own (no fused multiply-add, see the pragma above),
 * which is what makes float outputs bit-identical on the host, soft-float cores and FPU cores.
 * The FPU variant keeps exactly that arithmetic (VMUL.F32 then VADD.F32, the same order per
 * output) and only changes the instruction selection: 4 outputs per pass over the input, 8
 * inputs and 8 weights of each row per VLDM, about 2.2 instructions per MAC instead of 7.
 * -DTML_FORCE_PORTABLE keeps the plain C loops. */
#if defined(__GNUC__) && defined(__arm__) && defined(__thumb2__) && defined(__ARM_FP) && ((__ARM_FP) & 4) && \
    !defined(TML_FORCE_PORTABLE)
#define TML_VFP 1
#else
#define TML_VFP 0
#endif

#if TML_VFP
/* one row of the block: 8 weights, 8 products with x (s4-s11), added one by one to accumulator A */
#define TML_VFP_ROW(P, A)                                                                           \
  "vldmia %[" #P "]!, {s16-s23}\n\t"                                                                \
  "vmul.f32 s16, s4, s16\n\t" "vmul.f32 s17, s5, s17\n\t" "vmul.f32 s18, s6, s18\n\t"               \
  "vmul.f32 s19, s7, s19\n\t" "vmul.f32 s20, s8, s20\n\t" "vmul.f32 s21, s9, s21\n\t"               \
  "vmul.f32 s22, s10, s22\n\t" "vmul.f32 s23, s11, s23\n\t"                                         \
  "vadd.f32 %[" #A "], %[" #A "], s16\n\t" "vadd.f32 %[" #A "], %[" #A "], s17\n\t"                 \
  "vadd.f32 %[" #A "], %[" #A "], s18\n\t" "vadd.f32 %[" #A "], %[" #A "], s19\n\t"                 \
  "vadd.f32 %[" #A "], %[" #A "], s20\n\t" "vadd.f32 %[" #A "], %[" #A "], s21\n\t"                 \
  "vadd.f32 %[" #A "], %[" #A "], s22\n\t" "vadd.f32 %[" #A "], %[" #A "], s23\n\t"

/* acc[j] = sum over d < n of x[d] * w[j * ws + d], j = 0..3, summed in order of d from 0.0f */
TML_INLINE void tml_dot4_f32(const float *x, const float *w, int32_t ws, int32_t n, float *acc) {
  const float *w1 = w + ws, *w2 = w1 + ws, *w3 = w2 + ws;
  int32_t n8 = n >> 3, d;
  float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
  if (n8) {
    __asm__ volatile(
        "1:\n\t"
        "vldmia %[x]!, {s4-s11}\n\t"
        TML_VFP_ROW(w0, a0) TML_VFP_ROW(w1, a1) TML_VFP_ROW(w2, a2) TML_VFP_ROW(w3, a3)
        "subs %[n8], %[n8], #1\n\t"
        "bne 1b\n\t"
        : [x] "+r"(x), [w0] "+r"(w), [w1] "+r"(w1), [w2] "+r"(w2), [w3] "+r"(w3), [n8] "+r"(n8),
          [a0] "+t"(a0), [a1] "+t"(a1), [a2] "+t"(a2), [a3] "+t"(a3)
        :
        : "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23",
          "cc", "memory");
  }
  for (d = 0; d < (n & 7); ++d) {
    const float xv = x[d];
    a0 += xv * w[d];
    a1 += xv * w1[d];
    a2 += xv * w2[d];
    a3 += xv * w3[d];
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

/* sum over d < n of x[d] * w[d], in order of d from 0.0f (16 products per VLDM of x) */
TML_INLINE float tml_dot1_f32(const float *x, const float *w, int32_t n) {
  int32_t n16 = n >> 4, d;
  float a = 0.0f;
  if (n16) {
    __asm__ volatile(
        "1:\n\t"
        "vldmia %[x]!, {s8-s23}\n\t"
        "vldmia %[w]!, {s24-s31}\n\t"
        "vmul.f32 s8, s8, s24\n\t" "vmul.f32 s9, s9, s25\n\t" "vmul.f32 s10, s10, s26\n\t"
        "vmul.f32 s11, s11, s27\n\t" "vmul.f32 s12, s12, s28\n\t" "vmul.f32 s13, s13, s29\n\t"
        "vmul.f32 s14, s14, s30\n\t" "vmul.f32 s15, s15, s31\n\t"
        "vldmia %[w]!, {s24-s31}\n\t"
        "vmul.f32 s16, s16, s24\n\t" "vmul.f32 s17, s17, s25\n\t" "vmul.f32 s18, s18, s26\n\t"
        "vmul.f32 s19, s19, s27\n\t" "vmul.f32 s20, s20, s28\n\t" "vmul.f32 s21, s21, s29\n\t"
        "vmul.f32 s22, s22, s30\n\t" "vmul.f32 s23, s23, s31\n\t"
        "vadd.f32 %[a], %[a], s8\n\t" "vadd.f32 %[a], %[a], s9\n\t" "vadd.f32 %[a], %[a], s10\n\t"
        "vadd.f32 %[a], %[a], s11\n\t" "vadd.f32 %[a], %[a], s12\n\t" "vadd.f32 %[a], %[a], s13\n\t"
        "vadd.f32 %[a], %[a], s14\n\t" "vadd.f32 %[a], %[a], s15\n\t" "vadd.f32 %[a], %[a], s16\n\t"
        "vadd.f32 %[a], %[a], s17\n\t" "vadd.f32 %[a], %[a], s18\n\t" "vadd.f32 %[a], %[a], s19\n\t"
        "vadd.f32 %[a], %[a], s20\n\t" "vadd.f32 %[a], %[a], s21\n\t" "vadd.f32 %[a], %[a], s22\n\t"
        "vadd.f32 %[a], %[a], s23\n\t"
        "subs %[n16], %[n16], #1\n\t"
        "bne 1b\n\t"
        : [x] "+r"(x), [w] "+r"(w), [n16] "+r"(n16), [a] "+t"(a)
        :
        : "s8", "s9", "s10", "s11", "s12", "s13", "s14", "s15", "s16", "s17", "s18", "s19", "s20", "s21", "s22",
          "s23", "s24", "s25", "s26", "s27", "s28", "s29", "s30", "s31", "cc", "memory");
  }
  for (d = 0; d < (n & 15); ++d) a += x[d] * w[d];
  return a;
}
#endif

static int8_t tml_sat8(int32_t v, int32_t lo, int32_t hi) { return (int8_t)TML_MIN(TML_MAX(v, lo), hi); }
static float tml_actf(float v, float lo, float hi) { return TML_MIN(TML_MAX(v, lo), hi); }

/* ------------------------------------------------------------------------------------------ */
/* convolution                                                                                */
/* ------------------------------------------------------------------------------------------ */

void tml_conv2d_s8(const tml_conv_s8_params *p, const int8_t *in, const int8_t *filter,
                   const int32_t *bias, int8_t *out) {
  const int32_t groups = p->in_c / p->filter_in_c;
  const int32_t oc_per_group = p->out_c / groups;
  int32_t b, oy, ox, oc, fy, fx, ic;
  for (b = 0; b < p->batches; ++b) {
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t in_y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t in_x0 = ox * p->stride_w - p->pad_w;
        for (oc = 0; oc < p->out_c; ++oc) {
          const int32_t group = oc / oc_per_group;
          const int32_t ch = p->per_channel ? oc : 0;
          int32_t acc = 0;
          for (fy = 0; fy < p->k_h; ++fy) {
            const int32_t in_y = in_y0 + p->dil_h * fy;
            if (in_y < 0 || in_y >= p->in_h) continue;
            for (fx = 0; fx < p->k_w; ++fx) {
              const int32_t in_x = in_x0 + p->dil_w * fx;
              const int8_t *ip;
              const int8_t *fp;
              if (in_x < 0 || in_x >= p->in_w) continue;
              ip = in + ((b * p->in_h + in_y) * p->in_w + in_x) * p->in_c + group * p->filter_in_c;
              fp = filter + ((oc * p->k_h + fy) * p->k_w + fx) * p->filter_in_c;
              for (ic = 0; ic < p->filter_in_c; ++ic) acc += (int32_t)fp[ic] * ((int32_t)ip[ic] + p->input_offset);
            }
          }
          if (bias) acc += bias[oc];
          acc = tml_mbqm(acc, p->mult[ch], p->shift[ch]) + p->output_offset;
          out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] = tml_sat8(acc, p->act_min, p->act_max);
        }
      }
    }
  }
}

void tml_depthwise_s8(const tml_conv_s8_params *p, const int8_t *in, const int8_t *filter,
                      const int32_t *bias, int8_t *out) {
  const int32_t depth_multiplier = p->filter_in_c;
  int32_t b, oy, ox, ic, m, fy, fx;
  for (b = 0; b < p->batches; ++b) {
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t in_y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t in_x0 = ox * p->stride_w - p->pad_w;
        for (ic = 0; ic < p->in_c; ++ic) {
          for (m = 0; m < depth_multiplier; ++m) {
            const int32_t oc = m + ic * depth_multiplier;
            const int32_t ch = p->per_channel ? oc : 0;
            int32_t acc = 0;
            for (fy = 0; fy < p->k_h; ++fy) {
              const int32_t in_y = in_y0 + p->dil_h * fy;
              if (in_y < 0 || in_y >= p->in_h) continue;
              for (fx = 0; fx < p->k_w; ++fx) {
                const int32_t in_x = in_x0 + p->dil_w * fx;
                int32_t iv, fv;
                if (in_x < 0 || in_x >= p->in_w) continue;
                iv = in[((b * p->in_h + in_y) * p->in_w + in_x) * p->in_c + ic];
                fv = filter[(fy * p->k_w + fx) * p->out_c + oc];
                acc += fv * (iv + p->input_offset);
              }
            }
            if (bias) acc += bias[oc];
            acc = tml_mbqm(acc, p->mult[ch], p->shift[ch]) + p->output_offset;
            out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] = tml_sat8(acc, p->act_min, p->act_max);
          }
        }
      }
    }
  }
}

void tml_conv2d_f32(const tml_conv_f32_params *p, const float *in, const float *filter,
                    const float *bias, float *out) {
  const int32_t groups = p->in_c / p->filter_in_c;
  const int32_t oc_per_group = p->out_c / groups;
  int32_t b, oy, ox, oc, fy, fx, ic;
  for (b = 0; b < p->batches; ++b) {
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t in_y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t in_x0 = ox * p->stride_w - p->pad_w;
        for (oc = 0; oc < p->out_c; ++oc) {
          const int32_t group = oc / oc_per_group;
          float total = 0.0f;
          for (fy = 0; fy < p->k_h; ++fy) {
            const int32_t in_y = in_y0 + p->dil_h * fy;
            if (in_y < 0 || in_y >= p->in_h) continue;
            for (fx = 0; fx < p->k_w; ++fx) {
              const int32_t in_x = in_x0 + p->dil_w * fx;
              const float *ip;
              const float *fp;
              if (in_x < 0 || in_x >= p->in_w) continue;
              ip = in + ((b * p->in_h + in_y) * p->in_w + in_x) * p->in_c + group * p->filter_in_c;
              fp = filter + ((oc * p->k_h + fy) * p->k_w + fx) * p->filter_in_c;
              for (ic = 0; ic < p->filter_in_c; ++ic) total += ip[ic] * fp[ic];
            }
          }
          out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
              tml_actf(total + (bias ? bias[oc] : 0.0f), p->act_min, p->act_max);
        }
      }
    }
  }
}

void tml_depthwise_f32(const tml_conv_f32_params *p, const float *in, const float *filter,
                       const float *bias, float *out) {
  const int32_t depth_multiplier = p->filter_in_c;
  int32_t b, oy, ox, ic, m, fy, fx;
  for (b = 0; b < p->batches; ++b) {
    for (oy = 0; oy < p->out_h; ++oy) {
      const int32_t in_y0 = oy * p->stride_h - p->pad_h;
      for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t in_x0 = ox * p->stride_w - p->pad_w;
        for (ic = 0; ic < p->in_c; ++ic) {
          for (m = 0; m < depth_multiplier; ++m) {
            const int32_t oc = m + ic * depth_multiplier;
            float total = 0.0f;
            for (fy = 0; fy < p->k_h; ++fy) {
              const int32_t in_y = in_y0 + p->dil_h * fy;
              if (in_y < 0 || in_y >= p->in_h) continue;
              for (fx = 0; fx < p->k_w; ++fx) {
                const int32_t in_x = in_x0 + p->dil_w * fx;
                if (in_x < 0 || in_x >= p->in_w) continue;
                total += in[((b * p->in_h + in_y) * p->in_w + in_x) * p->in_c + ic] *
                         filter[(fy * p->k_w + fx) * p->out_c + oc];
              }
            }
            out[((b * p->out_h + oy) * p->out_w + ox) * p->out_c + oc] =
                tml_actf(total + (bias ? bias[oc] : 0.0f), p->act_min, p->act_max);
          }
        }
      }
    }
  }
}

/* ------------------------------------------------------------------------------------------ */
/* fully connected                                                                            */
/* ------------------------------------------------------------------------------------------ */

void tml_fc_s8(const tml_fc_s8_params *p, const int8_t *in, const int8_t *filter,
               const int32_t *bias, int8_t *out) {
  int32_t b, o, d;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *ip = in + b * p->in_features;
    for (o = 0; o < p->units; ++o) {
      const int8_t *fp = filter + o * p->in_features;
      const int32_t ch = p->per_channel ? o : 0;
      int32_t acc = 0;
      if (p->filter_offset == 0 && p->input_offset == 0) {
        /* the generator folded input_offset * sum(w) into the bias */
        for (d = 0; d < p->in_features; ++d) acc += (int32_t)fp[d] * (int32_t)ip[d];
      } else {
        for (d = 0; d < p->in_features; ++d)
          acc += ((int32_t)fp[d] + p->filter_offset) * ((int32_t)ip[d] + p->input_offset);
      }
      if (bias) acc += bias[o];
      acc = tml_mbqm(acc, p->mult[ch], p->shift[ch]) + p->output_offset;
      out[b * p->units + o] = tml_sat8(acc, p->act_min, p->act_max);
    }
  }
}

void tml_fc_f32(const tml_fc_f32_params *p, const float *in, const float *filter,
                const float *bias, float *out) {
  const int32_t K = p->in_features;
  int32_t b, o;
  for (b = 0; b < p->batches; ++b) {
    const float *ip = in + b * K;
    float *op = out + b * p->units;
    o = 0;
#if TML_VFP
    /* 4 neurons per pass over the input (the same sums in the same order as below) */
    const float lo = p->act_min, hi = p->act_max;
    for (; o + 4 <= p->units; o += 4) {
      float acc[4];
      tml_dot4_f32(ip, filter + o * K, K, K, acc);
      if (bias) {
        op[o] = tml_actf(acc[0] + bias[o], lo, hi);
        op[o + 1] = tml_actf(acc[1] + bias[o + 1], lo, hi);
        op[o + 2] = tml_actf(acc[2] + bias[o + 2], lo, hi);
        op[o + 3] = tml_actf(acc[3] + bias[o + 3], lo, hi);
      } else {
        op[o] = tml_actf(acc[0] + 0.0f, lo, hi);
        op[o + 1] = tml_actf(acc[1] + 0.0f, lo, hi);
        op[o + 2] = tml_actf(acc[2] + 0.0f, lo, hi);
        op[o + 3] = tml_actf(acc[3] + 0.0f, lo, hi);
      }
    }
#endif
    for (; o < p->units; ++o) {
      const float *fp = filter + o * K;
      float total = 0.0f;
#if TML_VFP
      total = tml_dot1_f32(ip, fp, K);
#else
      int32_t d;
      for (d = 0; d < K; ++d) total += ip[d] * fp[d];
#endif
      op[o] = tml_actf(total + (bias ? bias[o] : 0.0f), p->act_min, p->act_max);
    }
  }
}

/* ------------------------------------------------------------------------------------------ */
/* pooling                                                                                    */
/* ------------------------------------------------------------------------------------------ */

#define TML_POOL_LOOP_BEGIN                                                              \
  int32_t b, oy, ox, c, fy, fx;                                                          \
  for (b = 0; b < p->batches; ++b)                                                       \
    for (oy = 0; oy < p->out_h; ++oy)                                                    \
      for (ox = 0; ox < p->out_w; ++ox)                                                  \
        for (c = 0; c < p->channels; ++c) {                                              \
          const int32_t in_x0 = ox * p->stride_w - p->pad_w;                             \
          const int32_t in_y0 = oy * p->stride_h - p->pad_h;                             \
          const int32_t fx0 = TML_MAX(0, -in_x0);                                        \
          const int32_t fx1 = TML_MIN(p->k_w, p->in_w - in_x0);                          \
          const int32_t fy0 = TML_MAX(0, -in_y0);                                        \
          const int32_t fy1 = TML_MIN(p->k_h, p->in_h - in_y0);                          \
          const int32_t o_idx = ((b * p->out_h + oy) * p->out_w + ox) * p->channels + c;

#define TML_IN_IDX (((b * p->in_h + in_y0 + fy) * p->in_w + in_x0 + fx) * p->channels + c)

static void tml_avgpool_window_s8(const tml_pool_params *p, const int8_t *in, int8_t *out);

void tml_avgpool_s8(const tml_pool_params *p, const int8_t *in, int8_t *out) {
  if (p->out_h == 1 && p->out_w == 1 && p->k_h == p->in_h && p->k_w == p->in_w && p->pad_h == 0 && p->pad_w == 0 &&
      p->channels <= 256) {
    tml_avgpool_global_s8(p, in, out);
    return;
  }
  tml_avgpool_window_s8(p, in, out);
}

/* global average (TFLM's arithmetic: integer sum, round half away from zero, clamp): one pass over
 * the input, all channels of a pixel at a time; the generator calls it directly for a global pool
 * (1x1 output, window = input, no padding, at most 256 channels), so the windowed loop is not linked */
void tml_avgpool_global_s8(const tml_pool_params *p, const int8_t *in, int8_t *out) {
  {
    int32_t sum[4], b, c, i, j, g;
    const int32_t n = p->in_h * p->in_w, C = p->channels;
    for (b = 0; b < p->batches; ++b, in += n * C, out += C) {
      for (c = 0; c < C; c += g) {
        /* 4 channels at a time (sums in registers), then 1 */
        const int8_t *x = in + c;
        g = C - c >= 4 ? 4 : 1;
        sum[0] = sum[1] = sum[2] = sum[3] = 0;
        if (g == 4) {
          int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          for (i = 0; i < n; ++i, x += C) {
            s0 += x[0];
            s1 += x[1];
            s2 += x[2];
            s3 += x[3];
          }
          sum[0] = s0;
          sum[1] = s1;
          sum[2] = s2;
          sum[3] = s3;
        } else {
          for (i = 0; i < n; ++i, x += C) sum[0] += x[0];
        }
        for (j = 0; j < g; ++j) {
          const int32_t acc = sum[j] > 0 ? (sum[j] + n / 2) / n : (sum[j] - n / 2) / n;
          out[c + j] = tml_sat8(acc, p->act_min, p->act_max);
        }
      }
    }
  }
}

/* int8 pools, pixel-major: the window bounds once per output pixel, the channels contiguous
 * (chunks of 64, kept locally until the pixel is written: the data flow of tasks/aot/flow.py
 * channelwise holds) */
#define TML_POOL_PIXELS(BODY)                                                                   \
  int32_t b, oy, ox;                                                                           \
  for (b = 0; b < p->batches; ++b)                                                             \
    for (oy = 0; oy < p->out_h; ++oy)                                                          \
      for (ox = 0; ox < p->out_w; ++ox) {                                                      \
        const int32_t iy0 = oy * p->stride_h - p->pad_h, ix0 = ox * p->stride_w - p->pad_w;   \
        const int32_t fy0 = TML_MAX(0, -iy0), fy1 = TML_MIN(p->k_h, p->in_h - iy0);            \
        const int32_t fx0 = TML_MAX(0, -ix0), fx1 = TML_MIN(p->k_w, p->in_w - ix0);            \
        const int8_t *ib = in + ((b * p->in_h + iy0) * p->in_w + ix0) * p->channels;           \
        int8_t *ob = out + ((b * p->out_h + oy) * p->out_w + ox) * p->channels;                \
        int32_t c0;                                                                            \
        for (c0 = 0; c0 < p->channels; c0 += 64) {                                             \
          const int32_t nc = TML_MIN(64, p->channels - c0);                                    \
          int32_t acc[64], c, fy, fx;                                                          \
          BODY                                                                                 \
        }                                                                                      \
      }

void tml_maxpool_s8(const tml_pool_params *p, const int8_t *in, int8_t *out) {
#if TML_DSP
  /* 4 channels per word: the window's per-byte maximum from the lower bound up (max(max(x), lo)
   * = max(x) clamped below), then clamped above; each group of 4 channels of an output pixel is
   * written after its window was read (the data flow of tasks/aot/flow.py channelwise) */
  if ((p->channels & 3) == 0) {
    const int32_t lo4 = tml_bytes_of(p->act_min), hi4 = tml_bytes_of(p->act_max), C = p->channels;
    TML_POOL_PIXELS({
      for (c = c0; c < c0 + nc; c += 4) {
        int32_t v = lo4;
        (void)acc;
        for (fy = fy0; fy < fy1; ++fy)
          for (fx = fx0; fx < fx1; ++fx) v = tml_max8x4(v, tml_rd32(ib + (fy * p->in_w + fx) * C + c));
        tml_wr32(ob + c, tml_min8x4(v, hi4));
      }
    })
    return;
  }
#endif
  {
  TML_POOL_PIXELS({
    for (c = 0; c < nc; ++c) acc[c] = -128;
    for (fy = fy0; fy < fy1; ++fy)
      for (fx = fx0; fx < fx1; ++fx) {
        const int8_t *x = ib + (fy * p->in_w + fx) * p->channels + c0;
        for (c = 0; c < nc; ++c) acc[c] = TML_MAX(acc[c], (int32_t)x[c]);
      }
    for (c = 0; c < nc; ++c) ob[c0 + c] = tml_sat8(acc[c], p->act_min, p->act_max);
  })
  }
}

static void tml_avgpool_window_s8(const tml_pool_params *p, const int8_t *in, int8_t *out) {
  TML_POOL_PIXELS({
    const int32_t count = TML_MAX(1, (fy1 - fy0) * (fx1 - fx0));
    for (c = 0; c < nc; ++c) acc[c] = 0;
    for (fy = fy0; fy < fy1; ++fy)
      for (fx = fx0; fx < fx1; ++fx) {
        const int8_t *x = ib + (fy * p->in_w + fx) * p->channels + c0;
        for (c = 0; c < nc; ++c) acc[c] += x[c];
      }
    for (c = 0; c < nc; ++c) {
      const int32_t a = acc[c] > 0 ? (acc[c] + count / 2) / count : (acc[c] - count / 2) / count;
      ob[c0 + c] = tml_sat8(a, p->act_min, p->act_max);
    }
  })
}

void tml_avgpool_f32(const tml_pool_params *p, const float *in, float *out) {
  TML_POOL_LOOP_BEGIN
  float total = 0.0f;
  int32_t count = 0;
  for (fy = fy0; fy < fy1; ++fy)
    for (fx = fx0; fx < fx1; ++fx) {
      total += in[TML_IN_IDX];
      ++count;
    }
  if (count == 0) count = 1;
  out[o_idx] = tml_actf(total / (float)count, p->f_act_min, p->f_act_max);
}
}

void tml_maxpool_f32(const tml_pool_params *p, const float *in, float *out) {
  TML_POOL_LOOP_BEGIN
  float m = -3.402823466e+38f;
  for (fy = fy0; fy < fy1; ++fy)
    for (fx = fx0; fx < fx1; ++fx) m = TML_MAX(m, in[TML_IN_IDX]);
  out[o_idx] = tml_actf(m, p->f_act_min, p->f_act_max);
}
}

/* ------------------------------------------------------------------------------------------ */
/* MEAN                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* Visits outputs in row-major order; for each, sums its inputs in row-major order. */
#define TML_MEAN_LOOP(ACC_T, SUM_STMT, STORE_STMT)                                               \
  int32_t o[4], r[4], lim_o[4], lim_r[4], k, count = 1, oidx = 0;                                \
  for (k = 0; k < 4; ++k) {                                                                      \
    lim_o[k] = p->reduce[k] ? 1 : p->dims[k];                                                    \
    lim_r[k] = p->reduce[k] ? p->dims[k] : 1;                                                    \
    count *= lim_r[k];                                                                           \
  }                                                                                              \
  for (o[0] = 0; o[0] < lim_o[0]; ++o[0])                                                        \
    for (o[1] = 0; o[1] < lim_o[1]; ++o[1])                                                      \
      for (o[2] = 0; o[2] < lim_o[2]; ++o[2])                                                    \
        for (o[3] = 0; o[3] < lim_o[3]; ++o[3]) {                                                \
          ACC_T acc = 0;                                                                         \
          for (r[0] = 0; r[0] < lim_r[0]; ++r[0])                                                \
            for (r[1] = 0; r[1] < lim_r[1]; ++r[1])                                              \
              for (r[2] = 0; r[2] < lim_r[2]; ++r[2])                                            \
                for (r[3] = 0; r[3] < lim_r[3]; ++r[3]) {                                        \
                  const int32_t idx =                                                            \
                      (((o[0] + r[0]) * p->dims[1] + o[1] + r[1]) * p->dims[2] + o[2] + r[2]) *  \
                          p->dims[3] + o[3] + r[3];                                              \
                  SUM_STMT;                                                                      \
                }                                                                                \
          STORE_STMT;                                                                            \
          ++oidx;                                                                                \
        }

void tml_mean_s8(const tml_mean_params *p, const int8_t *in, int8_t *out) {
  /* TFLM QuantizedMeanOrSum: integer sum, zero-point correction, one fixed-point rescale */
  TML_MEAN_LOOP(int32_t, acc += in[idx], {
    const int32_t shifted_sum = acc - p->input_zp * count;
    out[oidx] = tml_sat8(tml_mbqm(shifted_sum, p->mult, p->shift) + p->output_zp, -128, 127);
  })
}

void tml_mean_f32(const tml_mean_params *p, const float *in, float *out) {
  TML_MEAN_LOOP(float, acc += in[idx], out[oidx] = acc / (float)count)
}

/* ------------------------------------------------------------------------------------------ */
/* softmax, logistic, tanh                                                                    */
/* ------------------------------------------------------------------------------------------ */

void tml_softmax_s8(const tml_softmax_params *p, const int8_t *in, int8_t *out) {
  int32_t i, c;
  for (i = 0; i < p->rows; ++i) {
    const int8_t *row = in + i * p->depth;
    int8_t *orow = out + i * p->depth;
    int32_t max_in_row = -128, sum_of_exps = 0, num_bits_over_unit, shifted_scale;
    for (c = 0; c < p->depth; ++c) max_in_row = TML_MAX(max_in_row, (int32_t)row[c]);
    for (c = 0; c < p->depth; ++c) {
      const int32_t diff = (int32_t)row[c] - max_in_row;
      if (diff >= p->diff_min) {
        const int32_t rescaled = tml_srdhm(tml_shl(diff, p->input_left_shift), p->input_multiplier);
        sum_of_exps = tml_add(sum_of_exps, tml_rescale(tml_exp_on_negative_values(rescaled, 5), 0, 12));
      }
    }
    shifted_scale = tml_get_reciprocal(sum_of_exps, 12, &num_bits_over_unit);
    for (c = 0; c < p->depth; ++c) {
      const int32_t diff = (int32_t)row[c] - max_in_row;
      if (diff >= p->diff_min) {
        const int32_t rescaled = tml_srdhm(tml_shl(diff, p->input_left_shift), p->input_multiplier);
        const int32_t exp_in_0 = tml_exp_on_negative_values(rescaled, 5);
        const int32_t unsat = tml_rdbypot(tml_srdhm(shifted_scale, exp_in_0), num_bits_over_unit + 31 - 8);
        orow[c] = tml_sat8(unsat - 128, -128, 127);
      } else {
        orow[c] = -128;
      }
    }
  }
}

void tml_softmax_f32(const tml_softmax_params *p, const float *in, float *out) {
  int32_t i, c;
  for (i = 0; i < p->rows; ++i) {
    const float *row = in + i * p->depth;
    float *orow = out + i * p->depth;
    float max = row[0], sum = 0.0f;
    for (c = 1; c < p->depth; ++c) max = TML_MAX(max, row[c]);
    for (c = 0; c < p->depth; ++c) {
      const float e = tml_expf((row[c] - max) * p->beta);
      orow[c] = e;
      sum += e;
    }
    for (c = 0; c < p->depth; ++c) orow[c] = orow[c] / sum;
  }
}

void tml_logistic_s8(const tml_sigmoid_params *p, const int8_t *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    const int32_t x = (int32_t)in[i] - p->input_zp;
    if (x <= -p->input_range_radius) {
      out[i] = -128;
    } else if (x >= p->input_range_radius) {
      out[i] = 127;
    } else {
      const int32_t in_q4 = tml_mbqm(x, p->input_multiplier, p->input_left_shift);
      const int32_t out_q0 = tml_fp_logistic(in_q4, 4);
      out[i] = tml_sat8(tml_rdbypot(out_q0, 31 - 8) - 128, -128, 127);
    }
  }
}

void tml_tanh_s8(const tml_sigmoid_params *p, const int8_t *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    const int32_t x = (int32_t)in[i] - p->input_zp;
    if (x <= -p->input_range_radius) {
      out[i] = -128;
    } else if (x >= p->input_range_radius) {
      out[i] = 127;
    } else {
      const int32_t in_q4 = tml_mbqm(x, p->input_multiplier, p->input_left_shift);
      const int32_t out_q0 = tml_fp_tanh(in_q4, 4);
      out[i] = tml_sat8(tml_rdbypot(out_q0, 31 - 7), -128, 127);
    }
  }
}

void tml_logistic_f32(int32_t size, const float *in, float *out) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const float v = in[i];
    if (v > 16.619047164916992188f) out[i] = 1.0f;
    else if (v < -9.0f) out[i] = tml_expf(v);
    else out[i] = 1.0f / (1.0f + tml_expf(-v));
  }
}

void tml_tanh_f32(int32_t size, const float *in, float *out) {
  int32_t i;
  for (i = 0; i < size; ++i) out[i] = tml_tanhf(in[i]);
}

/* ------------------------------------------------------------------------------------------ */
/* elementwise                                                                                */
/* ------------------------------------------------------------------------------------------ */

void tml_requant_s8(const tml_requant_params *p, const int8_t *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    const int32_t v = p->output_offset + tml_mbqm((int32_t)in[i] + p->input_offset, p->mult, p->shift);
    out[i] = tml_sat8(v, p->act_min, p->act_max);
  }
}

void tml_clamp_f32(int32_t size, float lo, float hi, const float *in, float *out) {
  int32_t i;
  for (i = 0; i < size; ++i) out[i] = tml_actf(in[i], lo, hi);
}

void tml_quantize_f32_s8(int32_t size, float scale, int32_t zero_point, const float *in, int8_t *out) {
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int32_t v = (int32_t)roundf(in[i] / scale) + zero_point;
    out[i] = tml_sat8(v, -128, 127);
  }
}

void tml_dequantize_s8_f32(int32_t size, float scale, int32_t zero_point, const int8_t *in, float *out) {
  int32_t i;
  for (i = 0; i < size; ++i) out[i] = scale * (float)((int32_t)in[i] - zero_point);
}

#define TML_BINARY_LOOP(BODY)                                                          \
  int32_t i0, i1, i2, i3, oi = 0;                                                      \
  for (i0 = 0; i0 < p->out_dims[0]; ++i0)                                              \
    for (i1 = 0; i1 < p->out_dims[1]; ++i1)                                            \
      for (i2 = 0; i2 < p->out_dims[2]; ++i2)                                          \
        for (i3 = 0; i3 < p->out_dims[3]; ++i3) {                                      \
          const int32_t ia = i0 * p->s1[0] + i1 * p->s1[1] + i2 * p->s1[2] + i3 * p->s1[3]; \
          const int32_t ib = i0 * p->s2[0] + i1 * p->s2[1] + i2 * p->s2[2] + i3 * p->s2[3]; \
          BODY;                                                                        \
          ++oi;                                                                        \
        }

#if TML_DSP
/* (t + 2^(r-1) + (t < 0 ? -1 : 0)) >> r, i.e. RoundingDivideByPOT(t, r); mask = r ? -1 : 0 */
#define TML_RDBP(t, k, mask, r) (((t) + (k) + (((t) >> 31) & (mask))) >> (r))

/* ADD without broadcasting on a DSP core: TFLM's arithmetic (left shift 20, three
 * MultiplyByQuantizedMultiplier) with SMMULR: SaturatingRoundingDoublingHighMul(x, m) is
 * SMMULR(2x, m), exact here because |2 (x + offset) 2^20| < 2^29 and |2 sum| < 2^30. The
 * inputs' shifts are <= 0 (their multipliers are at most 1/2), the output's is checked. */
static void tml_add_s8_dsp(const tml_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out, int32_t n) {
  const int32_t o1 = (int32_t)((uint32_t)p->input1_offset << (p->left_shift + 1));
  const int32_t o2 = (int32_t)((uint32_t)p->input2_offset << (p->left_shift + 1));
  const int32_t sh = p->left_shift + 1;
  const int32_t m1 = p->input1_mult, r1 = -p->input1_shift, k1 = r1 ? 1 << (r1 - 1) : 0, z1 = r1 ? -1 : 0;
  const int32_t m2 = p->input2_mult, r2 = -p->input2_shift, k2 = r2 ? 1 << (r2 - 1) : 0, z2 = r2 ? -1 : 0;
  const int32_t mo = p->output_mult, ro = -p->output_shift, ko = ro ? 1 << (ro - 1) : 0, zo = ro ? -1 : 0;
  const int32_t zp = p->output_offset, lo = p->act_min, hi = p->act_max;
  int32_t i;
  for (i = 0; i < n; ++i) {
    int32_t t1 = tml_smmulr(o1 + (int32_t)((uint32_t)(int32_t)a[i] << sh), m1);
    int32_t t2 = tml_smmulr(o2 + (int32_t)((uint32_t)(int32_t)b[i] << sh), m2);
    int32_t sum, y;
    t1 = TML_RDBP(t1, k1, z1, r1);
    t2 = TML_RDBP(t2, k2, z2, r2);
    sum = t1 + t2;
    y = tml_smmulr(sum + sum, mo);
    y = TML_RDBP(y, ko, zo, ro) + zp;
    out[i] = (int8_t)TML_MIN(TML_MAX(y, lo), hi);
  }
}

/* are both inputs laid out exactly like the output (no broadcasting)? */
static int32_t tml_same_shape(const tml_binary_params *p) {
  int32_t k, acc = 1;
  for (k = 3; k >= 0; --k) {
    if (p->s1[k] != acc || p->s2[k] != acc) return 0;
    acc *= p->out_dims[k];
  }
  return 1;
}
#endif

void tml_add_s8(const tml_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) {
#if TML_DSP
  if (tml_same_shape(p) && p->output_shift <= 0 && p->input1_shift <= 0 && p->input2_shift <= 0 &&
      p->left_shift <= 20) {
    tml_add_s8_dsp(p, a, b, out, p->out_dims[0] * p->out_dims[1] * p->out_dims[2] * p->out_dims[3]);
    return;
  }
#endif
  TML_BINARY_LOOP({
    const int32_t va = tml_shl(p->input1_offset + a[ia], p->left_shift);
    const int32_t vb = tml_shl(p->input2_offset + b[ib], p->left_shift);
    const int32_t sa = tml_mbqm(va, p->input1_mult, p->input1_shift);
    const int32_t sb = tml_mbqm(vb, p->input2_mult, p->input2_shift);
    const int32_t raw = tml_mbqm(sa + sb, p->output_mult, p->output_shift) + p->output_offset;
    out[oi] = tml_sat8(raw, p->act_min, p->act_max);
  })
}

void tml_mul_s8(const tml_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out) {
  TML_BINARY_LOOP({
    const int32_t va = p->input1_offset + a[ia];
    const int32_t vb = p->input2_offset + b[ib];
    const int32_t raw = p->output_offset + tml_mbqm(va * vb, p->output_mult, p->output_shift);
    out[oi] = tml_sat8(raw, p->act_min, p->act_max);
  })
}

void tml_add_f32(const tml_binary_params *p, const float *a, const float *b, float *out) {
  TML_BINARY_LOOP(out[oi] = tml_actf(a[ia] + b[ib], p->f_act_min, p->f_act_max))
}

void tml_mul_f32(const tml_binary_params *p, const float *a, const float *b, float *out) {
  TML_BINARY_LOOP(out[oi] = tml_actf(a[ia] * b[ib], p->f_act_min, p->f_act_max))
}

/* ------------------------------------------------------------------------------------------ */
/* data movement                                                                              */
/* ------------------------------------------------------------------------------------------ */

void tml_concat(int32_t outer, int32_t n_inputs, const void *const *inputs,
                const int32_t *axis_bytes, void *out) {
  uint8_t *dst = (uint8_t *)out;
  int32_t k, i;
  for (k = 0; k < outer; ++k) {
    for (i = 0; i < n_inputs; ++i) {
      const uint8_t *src = (const uint8_t *)inputs[i] + k * axis_bytes[i];
      memcpy(dst, src, (size_t)axis_bytes[i]);
      dst += axis_bytes[i];
    }
  }
}

void tml_pad(const tml_pad_params *p, const void *in, const void *pad_value, void *out) {
  const uint8_t *src = (const uint8_t *)in;
  uint8_t *dst = (uint8_t *)out;
  int32_t od[4], o0, o1, o2, o3, k;
  const int32_t eb = p->elem_bytes;
  for (k = 0; k < 4; ++k) od[k] = p->before[k] + p->dims[k] + p->after[k];
  for (o0 = 0; o0 < od[0]; ++o0)
    for (o1 = 0; o1 < od[1]; ++o1)
      for (o2 = 0; o2 < od[2]; ++o2)
        for (o3 = 0; o3 < od[3]; ++o3) {
          const int32_t i0 = o0 - p->before[0], i1 = o1 - p->before[1];
          const int32_t i2 = o2 - p->before[2], i3 = o3 - p->before[3];
          if (i0 < 0 || i0 >= p->dims[0] || i1 < 0 || i1 >= p->dims[1] || i2 < 0 ||
              i2 >= p->dims[2] || i3 < 0 || i3 >= p->dims[3]) {
            memcpy(dst, pad_value, (size_t)eb);
          } else {
            const int32_t idx = ((i0 * p->dims[1] + i1) * p->dims[2] + i2) * p->dims[3] + i3;
            memcpy(dst, src + idx * eb, (size_t)eb);
          }
          dst += eb;
        }
}

void tml_copy(int32_t bytes, const void *in, void *out) {
  if (in != out) memmove(out, in, (size_t)bytes);
}
