// doit-tinyml example sketch: run any model the header describes (1D CNN, 64 x 3 accelerometer window in, activity probabilities out).
//
// With the TFLM Arduino library (official PlatformIO platforms, -DTINYML_HAVE_TFLM) it runs the
// TFLite Micro interpreter once a second on an all-zero input (for a z-score normalised model,
// that is the training mean; replace fill_input() with your sensor or feature code) and prints
// the output tensor over Serial, de-quantized when the model's output is int8.
// On doit-tinyml's offline platform (bare metal, no Arduino, no TFLM) it is a plain main() that
// touches every byte of the model and of the arena through volatile, so the linker keeps both
// and the RAM/Flash figures include them.
// For a variant with runtime = "aot" doit defines TINYML_RUNTIME_AOT and links the plain-C model
// (tinyml_model.h/.c, weights in flash, its own static arena): main() then runs one inference
// through tinyml_model_invoke(), and neither g_model nor a TFLM arena is linked.
#include <stddef.h>
#include <stdint.h>

#if defined(TINYML_RUNTIME_AOT)

#include "tinyml_model.h"

// The input and the output live inside the model's own arena (no extra buffers): write the
// features to tinyml_model_input(), run, read tinyml_model_output() (valid until the next input).
extern "C" int main(void) {
  volatile TINYML_INPUT_CTYPE *in = tinyml_model_input();  // your features go here (quantized when int8)
  for (size_t i = 0; i < TINYML_INPUT_ELEMS; ++i) in[i] = 0;
  if (tinyml_model_run() != 0) return 1;
  const volatile TINYML_OUTPUT_CTYPE *out = tinyml_model_output();
  return (int)(out[0] == 0 && out[TINYML_OUTPUT_ELEMS - 1] == 1);
}

#else  // the TFLM runtime: model_data.h (g_model, TINYML_ARENA_SIZE, op resolver)

#include "model_data.h"

alignas(16) static uint8_t tensor_arena[TINYML_ARENA_SIZE];

#ifdef TINYML_HAVE_TFLM
#include <Arduino.h>
#include <math.h>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#ifndef TINYML_OP_RESOLVER_TYPE
#include "tensorflow/lite/micro/all_ops_resolver.h"
#endif
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
tflite::MicroInterpreter *interpreter = nullptr;

size_t elements(const TfLiteTensor *t) {
  size_t n = 1;
  for (int i = 0; i < t->dims->size; ++i) n *= (size_t)t->dims->data[i];
  return n;
}

// Put the (already normalised) features in the input tensor. Here: zeros.
void fill_input(TfLiteTensor *in) {
  const size_t n = elements(in);
  for (size_t i = 0; i < n; ++i) {
    const float x = 0.0f;
    if (in->type == kTfLiteInt8) {
      int32_t q = (int32_t)lroundf(x / in->params.scale) + in->params.zero_point;
      in->data.int8[i] = (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
    } else {
      in->data.f[i] = x;
    }
  }
}

float output_at(const TfLiteTensor *out, size_t i) {
  return out->type == kTfLiteInt8 ? (out->data.int8[i] - out->params.zero_point) * out->params.scale
                                  : out->data.f[i];
}
}  // namespace

void setup() {
  Serial.begin(115200);
  const tflite::Model *model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    Serial.println("model schema version mismatch");
    return;
  }
#ifdef TINYML_OP_RESOLVER_TYPE
  static TINYML_OP_RESOLVER_TYPE resolver;  // only the ops the model uses (generated into model_data.h)
  tinyml_register_ops(resolver);
#else
  static tflite::AllOpsResolver resolver;
#endif
  static tflite::MicroInterpreter static_interpreter(model, resolver, tensor_arena, TINYML_ARENA_SIZE);
  interpreter = &static_interpreter;
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    Serial.println("AllocateTensors() failed: the arena is too small");
    interpreter = nullptr;
    return;
  }
  Serial.print("arena used: ");
  Serial.println((unsigned long)interpreter->arena_used_bytes());
}

void loop() {
  if (!interpreter) return;
  fill_input(interpreter->input(0));
  const unsigned long t0 = micros();
  if (interpreter->Invoke() != kTfLiteOk) {
    Serial.println("Invoke() failed");
    return;
  }
  const unsigned long dt = micros() - t0;
  const TfLiteTensor *out = interpreter->output(0);
  const size_t n = elements(out);
  size_t best = 0;
  for (size_t i = 0; i < n; ++i) {
    const float y = output_at(out, i);
    if (y > output_at(out, best)) best = i;
    Serial.print(y, 4);
    Serial.print(i + 1 < n ? ' ' : '\n');
  }
  Serial.print("argmax ");
  Serial.print((unsigned long)best);
  Serial.print("  invoke us ");
  Serial.println(dt);
  delay(1000);
}

#else  // bare metal: doit-tinyml's offline platform

extern "C" int main(void) {
  // Read every model byte and write every arena byte through volatile: nothing can be dropped.
  const volatile unsigned char *m = g_model;
  volatile uint8_t *a = tensor_arena;
  uint32_t sum = 0;
  for (unsigned int i = 0; i < g_model_len; ++i) sum += m[i];
  for (size_t i = 0; i < sizeof(tensor_arena); ++i) a[i] = (uint8_t)(sum + i);
  return (int)(a[sum % sizeof(tensor_arena)] == 0xFFu && sum == 0xFFFFFFFFu);
}

#endif

#endif  // TINYML_RUNTIME_AOT
