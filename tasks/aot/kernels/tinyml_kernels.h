/* tinyml_kernels.h - portable C99 inference kernels for doit-tinyml's AOT compiler.
 *
 * Integer kernels follow the TFLite quantization spec and the arithmetic of TensorFlow Lite
 * Micro's reference kernels (fixed-point MultiplyByQuantizedMultiplier with double rounding,
 * gemmlowp fixed-point exp/logistic/tanh), so their int8 results are bit-identical with TFLM.
 * Every Prepare-time value (multipliers, shifts, activation ranges, padding) is computed on the
 * host by tasks/aot/generate.py and passed in as const parameter structs that live in flash.
 * No malloc, no globals, no flatbuffer parsing.
 */
#ifndef TINYML_KERNELS_H
#define TINYML_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- fixed-point helpers (exposed for tests) ---- */
int32_t tml_mbqm(int32_t x, int32_t multiplier, int32_t shift);

/* ---- float exp and tanh used by every float kernel: IEEE single arithmetic only, so the host
 * and every Cortex-M (FPU or soft float) give the same bits; below 1 ulp (exp) and 2e-7
 * relative (tanh) from the exact values ---- */
float tml_expf(float x);
float tml_tanhf(float x);

/* ---- convolution family (NHWC, filters OHWI; depthwise 1HWO) ---- */
typedef struct {
  int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c;
  int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
  int32_t filter_in_c;  /* conv: in_c / groups; depthwise: depth multiplier */
  int32_t input_offset; /* -input zero point */
  int32_t output_offset;
  int32_t act_min, act_max;
  int32_t per_channel;  /* 0: mult[0]/shift[0] for every channel */
  const int32_t *mult;
  const int32_t *shift;
} tml_conv_s8_params;

typedef struct {
  int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c;
  int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
  int32_t filter_in_c;
  float act_min, act_max;
} tml_conv_f32_params;

void tml_conv2d_s8(const tml_conv_s8_params *p, const int8_t *in, const int8_t *filter,
                   const int32_t *bias, int8_t *out);
void tml_depthwise_s8(const tml_conv_s8_params *p, const int8_t *in, const int8_t *filter,
                      const int32_t *bias, int8_t *out);
void tml_conv2d_f32(const tml_conv_f32_params *p, const float *in, const float *filter,
                    const float *bias, float *out);
void tml_depthwise_f32(const tml_conv_f32_params *p, const float *in, const float *filter,
                       const float *bias, float *out);

/* ---- fully connected ---- */
typedef struct {
  int32_t batches, in_features, units;
  int32_t input_offset, filter_offset, output_offset;
  int32_t act_min, act_max;
  int32_t per_channel;
  const int32_t *mult;
  const int32_t *shift;
} tml_fc_s8_params;

typedef struct {
  int32_t batches, in_features, units;
  float act_min, act_max;
} tml_fc_f32_params;

void tml_fc_s8(const tml_fc_s8_params *p, const int8_t *in, const int8_t *filter,
               const int32_t *bias, int8_t *out);
void tml_fc_f32(const tml_fc_f32_params *p, const float *in, const float *filter,
                const float *bias, float *out);

/* ---- int8 kernels on generator-packed weights (tinyml_kernels_packed.c) ---- */
/* Which inner loops this build of the kernel library uses: "dsp" (Cortex-M DSP extension),
 * "dsp-emulated" (host test build) or "portable". */
const char *tml_kernels_variant(void);

/* per output channel requantization record (see tinyml_kernels_packed.c): fast ops
 * {mult, 2^(r-1) + zero_point * 2^r, r = -shift}, exact ops {mult, shift, 0} */
typedef struct {
  int32_t mult, k, rsh;
} tml_rq;

/* FULLY_CONNECTED (batches = rows, in/out 1x1 pixels) and CONV_2D (dilation 1, one group) as a
 * matrix product; weights packed by tasks/aot/layout.py (pack_gemm_weights). */
typedef struct {  /* int16 fields: the generator checks every value fits */
  int16_t batches, in_h, in_w, in_c, out_h, out_w, out_c;
  int16_t k_h, k_w, stride_h, stride_w, pad_h, pad_w;
  int16_t k4;           /* k_h * k_w * in_c rounded up to a multiple of 4 */
  int16_t wl;           /* weight layout: 4 = channel quads (single-pixel ops), 2 = pairs */
  int16_t input_offset, output_offset, act_min, act_max;
  int16_t fast;         /* 1: the 4-instruction requantization is exact (proven by the generator) */
  int16_t rq_stride;    /* 1: per-channel rq[], 0: per-tensor rq[0] */
  const tml_rq *rq;
  const int32_t *bias;  /* fast: 2 * bias */
} tml_gemm_s8_params;

void tml_gemm_s8(const tml_gemm_s8_params *p, const int8_t *in, const int8_t *w, int8_t *out, void *scratch);
/* CONV_2D with a 1x1 output: the same, without the pixel-pair path */
void tml_gemm1_s8(const tml_gemm_s8_params *p, const int8_t *in, const int8_t *w, int8_t *out, void *scratch);
/* FULLY_CONNECTED only (in/out 1x1 pixels, batches = rows): the same as tml_gemm_s8, smaller */
void tml_fc_packed_s8(const tml_gemm_s8_params *p, const int8_t *in, const int8_t *w, int8_t *out, void *scratch);
void tml_fc_packed1_s8(const tml_gemm_s8_params *p, const int8_t *in, const int8_t *w, int8_t *out, void *scratch);

/* DEPTHWISE_CONV_2D with depth multiplier 1 and dilation 1; weights packed by layout.pack_dw,
 * bias = bias + input_offset * sum(taps) (doubled when fast); scratch: layout.dw_scratch_bytes */
typedef struct {  /* int16 fields: the generator checks every value fits */
  int16_t batches, in_h, in_w, channels, out_h, out_w;
  int16_t k_h, k_w, stride_h, stride_w, pad_h, pad_w;
  int16_t input_offset, output_offset, act_min, act_max;
  int16_t fast, rq_stride;
  int16_t pairs;        /* 1: scratch sized for the DSP tap-pair path (layout.dw_scratch_bytes pairs=True) */
  const tml_rq *rq;
  const int32_t *bias;
} tml_dw_s8_params;

void tml_dw_s8(const tml_dw_s8_params *p, const int8_t *in, const int16_t *w, int8_t *out, void *scratch);

/* ---- pooling ---- */
typedef struct {
  int32_t batches, in_h, in_w, channels, out_h, out_w;
  int32_t k_h, k_w, stride_h, stride_w, pad_h, pad_w;
  int32_t act_min, act_max; /* int8 */
  float f_act_min, f_act_max;
} tml_pool_params;

void tml_avgpool_s8(const tml_pool_params *p, const int8_t *in, int8_t *out);
void tml_avgpool_global_s8(const tml_pool_params *p, const int8_t *in, int8_t *out);
void tml_maxpool_s8(const tml_pool_params *p, const int8_t *in, int8_t *out);
void tml_avgpool_f32(const tml_pool_params *p, const float *in, float *out);
void tml_maxpool_f32(const tml_pool_params *p, const float *in, float *out);

/* ---- MEAN over any axes of a tensor padded to 4-D ---- */
typedef struct {
  int32_t dims[4];
  int32_t reduce[4]; /* 1 if the axis is reduced */
  int32_t input_zp, output_zp;
  int32_t mult, shift; /* int8: input/output scale with the 1/count factor folded in (TFLM) */
} tml_mean_params;

void tml_mean_s8(const tml_mean_params *p, const int8_t *in, int8_t *out);
void tml_mean_f32(const tml_mean_params *p, const float *in, float *out);

/* ---- softmax / logistic / tanh ---- */
typedef struct {
  int32_t rows, depth;
  int32_t input_multiplier, input_left_shift, diff_min;
  float beta;
} tml_softmax_params;

void tml_softmax_s8(const tml_softmax_params *p, const int8_t *in, int8_t *out);
void tml_softmax_f32(const tml_softmax_params *p, const float *in, float *out);

typedef struct {
  int32_t size;
  int32_t input_zp, input_range_radius, input_multiplier, input_left_shift;
} tml_sigmoid_params;

void tml_logistic_s8(const tml_sigmoid_params *p, const int8_t *in, int8_t *out);
void tml_tanh_s8(const tml_sigmoid_params *p, const int8_t *in, int8_t *out);
void tml_logistic_f32(int32_t size, const float *in, float *out);
void tml_tanh_f32(int32_t size, const float *in, float *out);

/* ---- elementwise ---- */
typedef struct {
  int32_t size;
  int32_t input_offset, output_offset, mult, shift, act_min, act_max;
} tml_requant_params;

/* RELU/RELU6 int8 (TFLM ReluQuantized: rescale then clamp) and int8->int8 QUANTIZE */
void tml_requant_s8(const tml_requant_params *p, const int8_t *in, int8_t *out);
void tml_clamp_f32(int32_t size, float lo, float hi, const float *in, float *out);
void tml_quantize_f32_s8(int32_t size, float scale, int32_t zero_point, const float *in, int8_t *out);
/* TFLM computes (float)((double)scale * (v - zp)); the exact product of a float and an integer of
 * at most 9 bits fits a float multiply's exact intermediate, so one float multiply (correctly
 * rounded once) gives the same bits without software double arithmetic. */
void tml_dequantize_s8_f32(int32_t size, float scale, int32_t zero_point, const int8_t *in, float *out);

/* broadcasting binary ops over 4-D shapes; strides are 0 on broadcast axes */
typedef struct {
  int32_t out_dims[4];
  int32_t s1[4], s2[4];
  int32_t input1_offset, input2_offset, output_offset;
  int32_t left_shift;
  int32_t input1_mult, input1_shift, input2_mult, input2_shift;
  int32_t output_mult, output_shift;
  int32_t act_min, act_max;
  float f_act_min, f_act_max;
} tml_binary_params;

void tml_add_s8(const tml_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void tml_mul_s8(const tml_binary_params *p, const int8_t *a, const int8_t *b, int8_t *out);
void tml_add_f32(const tml_binary_params *p, const float *a, const float *b, float *out);
void tml_mul_f32(const tml_binary_params *p, const float *a, const float *b, float *out);

/* ---- data movement (element size in bytes) ---- */
/* concatenation: outer x (sum of axis_bytes) ; each input contributes axis_bytes[i] per outer row */
void tml_concat(int32_t outer, int32_t n_inputs, const void *const *inputs,
                const int32_t *axis_bytes, void *out);
typedef struct {
  int32_t dims[4];     /* input dims padded to 4-D */
  int32_t before[4];   /* padding before each axis */
  int32_t after[4];
  int32_t elem_bytes;
} tml_pad_params;
void tml_pad(const tml_pad_params *p, const void *in, const void *pad_value, void *out);
void tml_copy(int32_t bytes, const void *in, void *out);

#ifdef __cplusplus
}
#endif

#endif /* TINYML_KERNELS_H */
