// doit-tinyml demo sketch: run the sine model.
//
// With the TFLM Arduino library (official PlatformIO platforms, -DTINYML_HAVE_TFLM) it runs the
// TFLite Micro interpreter on a sweep of x in [0, 2*pi) and prints y = sin(x) over Serial.
// On doit-tinyml's offline platform (bare metal, no Arduino, no TFLM) it is a plain main() that
// touches every byte of the model and of the arena through volatile, so the linker keeps both
// and the RAM/Flash figures include them.
// For runtime = "aot", doit defines TINYML_RUNTIME_AOT and links the plain-C model (tinyml_model.h/.c:
// weights in flash, one static activation buffer, no interpreter): main() sweeps x through
// tinyml_model_invoke(), and neither g_model nor a TFLM arena is linked.
#include <stddef.h>
#include <stdint.h>

#if defined(TINYML_RUNTIME_AOT)

#include "tinyml_model.h"

// The input and the output live inside the model's own arena (no extra buffers): write x to
// tinyml_model_input(), run, read tinyml_model_output() (valid until the next input is written).
extern "C" int main(void) {
  volatile float acc = 0.0f;
  for (int step = 0; step < 20; ++step) {
    const float x = 6.2831853f * step / 20;
    TINYML_INPUT_CTYPE *in = tinyml_model_input();
#if TINYML_INPUT_IS_INT8
    long q = (long)(x / TINYML_INPUT_SCALE + (x >= 0 ? 0.5f : -0.5f)) + TINYML_INPUT_ZERO_POINT;
    in[0] = (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
#else
    in[0] = x;
#endif
    if (tinyml_model_run() != 0) return 1;
    const TINYML_OUTPUT_CTYPE *out = tinyml_model_output();
#if TINYML_OUTPUT_IS_INT8
    acc = acc + (out[0] - TINYML_OUTPUT_ZERO_POINT) * TINYML_OUTPUT_SCALE;
#else
    acc = acc + out[0];
#endif
  }
  return acc > 1e9f;
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
TfLiteTensor *input = nullptr;
TfLiteTensor *output = nullptr;
int step = 0;
constexpr int kSteps = 20;
}  // namespace

void setup() {
  Serial.begin(115200);
  const tflite::Model *model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    Serial.println("model schema version mismatch");
    return;
  }
#ifdef TINYML_OP_RESOLVER_TYPE
  // only the ops the model uses (the resolver helper generated into model_data.h)
  static TINYML_OP_RESOLVER_TYPE resolver;
  tinyml_register_ops(resolver);
#else
  static tflite::AllOpsResolver resolver;  // every op: bigger, but needs nothing from the header
#endif
  static tflite::MicroInterpreter static_interpreter(model, resolver, tensor_arena, TINYML_ARENA_SIZE);
  interpreter = &static_interpreter;
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    Serial.println("AllocateTensors() failed: the arena is too small");
    interpreter = nullptr;
    return;
  }
  input = interpreter->input(0);
  output = interpreter->output(0);
  Serial.print("arena used: ");
  Serial.println((unsigned long)interpreter->arena_used_bytes());
}

void loop() {
  if (!interpreter) return;
  const float x = 2.0f * (float)M_PI * step / kSteps;
  if (input->type == kTfLiteInt8) {
    int32_t q = (int32_t)lroundf(x / input->params.scale) + input->params.zero_point;
    input->data.int8[0] = (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
  } else {
    input->data.f[0] = x;
  }
  if (interpreter->Invoke() != kTfLiteOk) {
    Serial.println("Invoke() failed");
    return;
  }
  const float y = output->type == kTfLiteInt8
                      ? (output->data.int8[0] - output->params.zero_point) * output->params.scale
                      : output->data.f[0];
  Serial.print(x, 3);
  Serial.print(' ');
  Serial.println(y, 3);
  step = (step + 1) % kSteps;
  delay(100);
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
