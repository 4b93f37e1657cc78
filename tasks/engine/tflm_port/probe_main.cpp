// doit-tinyml's size probe (our own code): the shape of the examples' sketches (an Arduino-style
// setup()/loop() that builds one TFLM interpreter over a static arena, reads its input/output and
// prints over Serial), linked with the real TFLite Micro and N ops (tinyml_probe.h), or without
// TFLM (model and arena only, like the offline sketches). engine/tflm_size.py measures the
// difference: what the interpreter adds to a firmware.
#include <stddef.h>
#include <stdint.h>

#include "tinyml_probe.h"

#ifndef TINYML_PROBE_MODEL_BYTES
#define TINYML_PROBE_MODEL_BYTES 2048
#endif
#ifndef TINYML_PROBE_ARENA
#define TINYML_PROBE_ARENA 4096
#endif

// defined in probe_model.cc, another translation unit: the compiler must not see (and fold) its bytes
extern const unsigned char g_model[];
extern const unsigned int g_model_len;
alignas(16) static uint8_t tensor_arena[TINYML_PROBE_ARENA];

#ifdef TINYML_HAVE_TFLM
#include <Arduino.h>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
tflite::MicroInterpreter *interpreter = nullptr;
TfLiteTensor *input = nullptr;
TfLiteTensor *output = nullptr;
int step = 0;
}  // namespace

void setup() {
  Serial.begin(115200);
  const tflite::Model *model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    Serial.println("model schema version mismatch");
    return;
  }
  static tflite::MicroMutableOpResolver<TINYML_PROBE_N> resolver;
  TINYML_PROBE_REGISTER(resolver);
  static tflite::MicroInterpreter static_interpreter(model, resolver, tensor_arena, TINYML_PROBE_ARENA);
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
  const float x = 0.1f * (float)step;
  if (input->type == kTfLiteInt8) {
    int32_t q = (int32_t)(x / input->params.scale) + input->params.zero_point;
    input->data.int8[0] = (int8_t)(q < -128 ? -128 : (q > 127 ? 127 : q));
  } else {
    input->data.f[0] = x;
  }
  const unsigned long t0 = micros();
  if (interpreter->Invoke() != kTfLiteOk) {
    Serial.println("Invoke() failed");
    return;
  }
  const float y = output->type == kTfLiteInt8 ? (output->data.int8[0] - output->params.zero_point) * output->params.scale
                                              : output->data.f[0];
  Serial.print(y, 4);
  Serial.print("  invoke us ");
  Serial.println(micros() - t0);
  step = (step + 1) % 20;
  delay(100);
}

#else  // no TFLM: model and arena only, like the offline sketches

int main(void) {
  const volatile unsigned char *m = g_model;
  volatile uint8_t *a = tensor_arena;
  uint32_t sum = 0;
  for (unsigned int i = 0; i < g_model_len; ++i) sum += m[i];
  for (size_t i = 0; i < sizeof(tensor_arena); ++i) a[i] = (uint8_t)(sum + i);
  return (int)(a[sum % sizeof(tensor_arena)] == 0xFFu && sum == 0xFFFFFFFFu);
}

#endif
