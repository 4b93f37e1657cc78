/* tinyml_simd.h - the Cortex-M DSP-extension operations used by tinyml_kernels_packed.c.
 *
 * TML_DSP is 1 when the core has the DSP extension (__ARM_FEATURE_DSP: Cortex-M4, M7, M33/M35P/M55
 * with DSP): the operations below are then single instructions (ACLE intrinsics from <arm_acle.h>,
 * plus three one-instruction inline-asm helpers for forms ACLE lacks: SXTB16/SXTAB16 with ROR #8
 * and SMMULR). On a core without it (Cortex-M0/M0+/M3, the host) TML_DSP is 0 and the kernels
 * take their portable C loops instead.
 *
 * -DTML_EMULATE_DSP on a non-ARM host compiles the DSP code paths with exact C models of these
 * instructions, so the host can prove the DSP kernels bit-exact against TFLM without an emulator.
 * -DTML_FORCE_PORTABLE selects the portable loops even on a DSP core.
 */
#ifndef TINYML_SIMD_H
#define TINYML_SIMD_H

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && (__ARM_FEATURE_DSP == 1) && !defined(TML_FORCE_PORTABLE)
#define TML_DSP 1
#define TML_DSP_NATIVE 1
#include <arm_acle.h>
#elif defined(TML_EMULATE_DSP) && !defined(TML_FORCE_PORTABLE)
#define TML_DSP 1
#define TML_DSP_NATIVE 0
#else
#define TML_DSP 0
#define TML_DSP_NATIVE 0
#endif

#if defined(__GNUC__)
#define TML_INLINE static inline __attribute__((always_inline))
#else
#define TML_INLINE static inline
#endif

/* unaligned little-endian 32-bit load/store (one LDR/STR on cores with unaligned access) */
TML_INLINE int32_t tml_rd32(const void *p) {
  int32_t v;
  memcpy(&v, p, 4);
  return v;
}
TML_INLINE void tml_wr32(void *p, int32_t v) { memcpy(p, &v, 4); }
/* v (-128..127) in all four bytes */
TML_INLINE int32_t tml_bytes_of(int32_t v) { return (int32_t)(((uint32_t)v & 0xFFu) * 0x01010101u); }
/* v in both 16-bit lanes */
TML_INLINE int32_t tml_lanes_of(int32_t v) { return (int32_t)(((uint32_t)v << 16) | ((uint32_t)v & 0xFFFFu)); }
TML_INLINE void tml_wr16(void *p, int32_t v) {
  int16_t h = (int16_t)v;
  memcpy(p, &h, 2);
}

#if TML_DSP_NATIVE

TML_INLINE int32_t tml_sxtb16(int32_t x) { return (int32_t)__sxtb16(x); }
TML_INLINE int32_t tml_sxtb16_ror8(int32_t x) {
  int32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
}
TML_INLINE int32_t tml_sxtab16(int32_t a, int32_t x) { return (int32_t)__sxtab16(a, x); }
TML_INLINE int32_t tml_sxtab16_ror8(int32_t a, int32_t x) {
  int32_t r;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
  return r;
}
TML_INLINE int32_t tml_smlad(int32_t x, int32_t y, int32_t acc) { return __smlad(x, y, acc); }
TML_INLINE int32_t tml_sadd16(int32_t x, int32_t y) { return __sadd16(x, y); }
TML_INLINE int32_t tml_smlabb(int32_t x, int32_t y, int32_t acc) { return __smlabb(x, y, acc); }
TML_INLINE int32_t tml_smlatt(int32_t x, int32_t y, int32_t acc) { return __smlatt(x, y, acc); }
TML_INLINE int32_t tml_smlabt(int32_t x, int32_t y, int32_t acc) { return __smlabt(x, y, acc); }
TML_INLINE int32_t tml_smlatb(int32_t x, int32_t y, int32_t acc) { return __smlatb(x, y, acc); }
/* (a * b + 2^31) >> 32, the rounded high word of the 64-bit product */
TML_INLINE int32_t tml_smmulr(int32_t a, int32_t b) {
  int32_t r;
  __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
/* c + ((a * b + 2^31) >> 32) */
TML_INLINE int32_t tml_smmlar(int32_t a, int32_t b, int32_t c) {
  int32_t r;
  __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}
#define tml_ssat8(x) __ssat((x), 8)
/* saturate n (2 or 4) results to int8, pack them little-endian, clamp every byte to [lo, hi]
 * (lo4/hi4: the bounds replicated in every byte) with SSUB8/SEL */
TML_INLINE int32_t tml_pack2(int32_t y0, int32_t y1, int32_t lo4, int32_t hi4) {
  int32_t v = (int32_t)(((uint32_t)__ssat(y0, 8) & 0xFFu) | ((uint32_t)__ssat(y1, 8) << 8));
  (void)__ssub8(v, lo4);
  v = (int32_t)__sel((uint32_t)v, (uint32_t)lo4);
  (void)__ssub8(v, hi4);
  return (int32_t)__sel((uint32_t)hi4, (uint32_t)v);
}
TML_INLINE int32_t tml_pack4(int32_t y0, int32_t y1, int32_t y2, int32_t y3, int32_t lo4, int32_t hi4) {
  int32_t v = (int32_t)(((uint32_t)__ssat(y0, 8) & 0xFFu) | (((uint32_t)__ssat(y1, 8) & 0xFFu) << 8) |
                        (((uint32_t)__ssat(y2, 8) & 0xFFu) << 16) | ((uint32_t)__ssat(y3, 8) << 24));
  (void)__ssub8(v, lo4);
  v = (int32_t)__sel((uint32_t)v, (uint32_t)lo4);
  (void)__ssub8(v, hi4);
  return (int32_t)__sel((uint32_t)hi4, (uint32_t)v);
}
/* per-byte signed max / min of four int8 lanes (SSUB8 sets the GE flags, SEL picks) */
TML_INLINE int32_t tml_max8x4(int32_t a, int32_t b) {
  (void)__ssub8(a, b);
  return (int32_t)__sel((uint32_t)a, (uint32_t)b);
}
TML_INLINE int32_t tml_min8x4(int32_t a, int32_t b) {
  (void)__ssub8(a, b);
  return (int32_t)__sel((uint32_t)b, (uint32_t)a);
}

#elif TML_DSP

/* exact C models of the instructions (two's-complement wrap like the hardware) */
TML_INLINE int32_t tml_lanes(int32_t lo, int32_t hi) {
  return (int32_t)(((uint32_t)hi << 16) | ((uint32_t)lo & 0xFFFFu));
}
TML_INLINE int32_t tml_lo16(int32_t x) { return (int32_t)(int16_t)(uint16_t)((uint32_t)x & 0xFFFFu); }
TML_INLINE int32_t tml_hi16(int32_t x) { return (int32_t)(int16_t)(uint16_t)((uint32_t)x >> 16); }
TML_INLINE int32_t tml_byte(int32_t x, int n) { return (int32_t)(int8_t)(uint8_t)((uint32_t)x >> (8 * n)); }
TML_INLINE int32_t tml_sxtb16(int32_t x) { return tml_lanes(tml_byte(x, 0), tml_byte(x, 2)); }
TML_INLINE int32_t tml_sxtb16_ror8(int32_t x) { return tml_lanes(tml_byte(x, 1), tml_byte(x, 3)); }
TML_INLINE int32_t tml_sxtab16(int32_t a, int32_t x) {
  return tml_lanes(tml_lo16(a) + tml_byte(x, 0), tml_hi16(a) + tml_byte(x, 2));
}
TML_INLINE int32_t tml_sxtab16_ror8(int32_t a, int32_t x) {
  return tml_lanes(tml_lo16(a) + tml_byte(x, 1), tml_hi16(a) + tml_byte(x, 3));
}
TML_INLINE int32_t tml_smlad(int32_t x, int32_t y, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(tml_lo16(x) * tml_lo16(y)) + (uint32_t)(tml_hi16(x) * tml_hi16(y)));
}
TML_INLINE int32_t tml_smlabb(int32_t x, int32_t y, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(tml_lo16(x) * tml_lo16(y)));
}
TML_INLINE int32_t tml_sadd16(int32_t x, int32_t y) { return tml_lanes(tml_lo16(x) + tml_lo16(y), tml_hi16(x) + tml_hi16(y)); }
TML_INLINE int32_t tml_smlatt(int32_t x, int32_t y, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(tml_hi16(x) * tml_hi16(y)));
}
TML_INLINE int32_t tml_smlabt(int32_t x, int32_t y, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(tml_lo16(x) * tml_hi16(y)));
}
TML_INLINE int32_t tml_smlatb(int32_t x, int32_t y, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(tml_hi16(x) * tml_lo16(y)));
}
TML_INLINE int32_t tml_smmulr(int32_t a, int32_t b) {
  return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 31)) >> 32);
}
TML_INLINE int32_t tml_smmlar(int32_t a, int32_t b, int32_t c) {
  const uint64_t sum = ((uint64_t)(uint32_t)c << 32) + (uint64_t)((int64_t)a * (int64_t)b + ((int64_t)1 << 31));
  return (int32_t)(uint32_t)(sum >> 32);
}
TML_INLINE int32_t tml_ssat8(int32_t x) { return x < -128 ? -128 : (x > 127 ? 127 : x); }
TML_INLINE uint32_t tml_clampb(int32_t y, int32_t lo4, int32_t hi4) {
  const int32_t lo = (int32_t)(int8_t)(uint8_t)((uint32_t)lo4 & 0xFFu), hi = (int32_t)(int8_t)(uint8_t)((uint32_t)hi4 & 0xFFu);
  y = tml_ssat8(y);
  y = y < lo ? lo : y;
  return (uint32_t)(y > hi ? hi : y) & 0xFFu;
}
TML_INLINE int32_t tml_pack2(int32_t y0, int32_t y1, int32_t lo4, int32_t hi4) {
  return (int32_t)(tml_clampb(y0, lo4, hi4) | (tml_clampb(y1, lo4, hi4) << 8));
}
TML_INLINE int32_t tml_pack4(int32_t y0, int32_t y1, int32_t y2, int32_t y3, int32_t lo4, int32_t hi4) {
  return (int32_t)(tml_clampb(y0, lo4, hi4) | (tml_clampb(y1, lo4, hi4) << 8) | (tml_clampb(y2, lo4, hi4) << 16) |
                   (tml_clampb(y3, lo4, hi4) << 24));
}
/* per byte, a's lane when a >= b (SSUB8's GE flags), else b's: SEL(a, b) (max) or SEL(b, a) (min) */
TML_INLINE int32_t tml_sel8x4(int32_t a, int32_t b, int max) {
  uint32_t r = 0;
  int n;
  for (n = 0; n < 4; ++n) {
    const int32_t x = tml_byte(a, n), y = tml_byte(b, n);
    r |= ((uint32_t)((x >= y) == (max != 0) ? x : y) & 0xFFu) << (8 * n);
  }
  return (int32_t)r;
}
TML_INLINE int32_t tml_max8x4(int32_t a, int32_t b) { return tml_sel8x4(a, b, 1); }
TML_INLINE int32_t tml_min8x4(int32_t a, int32_t b) { return tml_sel8x4(a, b, 0); }

#endif /* TML_DSP */

#endif /* TINYML_SIMD_H */
