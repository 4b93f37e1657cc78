// doit-tinyml's TFLite Micro target check (our own code): the real interpreter, linked from the
// user's TFLM tree, on QEMU's Cortex-M4 (board mps2_an386, semihosting, -icount).
//
// Built by engine/tflm_target.py with the variant's model_data.h/.cc (its op resolver:
// tinyml_register_ops / TinyMLOpResolver) and tflm_vectors.h/.cc (the test inputs, already in the
// model's input type). Prints over semihosting:
//   [tflm] arena_used <bytes>            interpreter.arena_used_bytes() after AllocateTensors
//   [tflm] out <i> <hex bytes>           the raw output tensor per vector
//   [tflm] invoke_ticks total= min= max= n=   CMSDK timer ticks inside Invoke() (25 MHz; -icount)
//   RecordingMicroAllocator's table       (a separate run, so it does not change the figures above)
//   [tflm] arena_min <bytes>             smallest multiple of 16 for which AllocateTensors AND Invoke
//                                        succeed (bisection, in the same firmware run)
// The arena handed to the interpreter can be limited with the semihosting command line argument
// "arena=<n>" (qemu -semihosting-config ...,arg=fw,arg=arena=<n>): then one attempt, no bisection.
// With the argument "recording" it also bisects with RecordingMicroInterpreter (what the
// tflite-micro Python interpreter allocates with): [tflm] arena_min_recording <bytes>.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <new>

#include "model_data.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/recording_micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "tflm_vectors.h"

#ifndef TINYML_ARENA_MAX
#define TINYML_ARENA_MAX (256 * 1024)
#endif

extern "C" uint32_t tinyml_timer_ticks(void);
extern "C" volatile int tinyml_log_muted;  // our port: DebugLog is silent while set

alignas(16) static uint8_t tensor_arena[TINYML_ARENA_MAX];
alignas(tflite::RecordingMicroInterpreter) static uint8_t interp_mem[sizeof(tflite::RecordingMicroInterpreter)];

// The window engine/profile.py profiles (QEMU plugin): from the call of the first to the call of the second.
extern "C" __attribute__((noinline, used)) void tinyml_profile_begin(void) { __asm__ volatile("" ::: "memory"); }
extern "C" __attribute__((noinline, used)) void tinyml_profile_end(void) { __asm__ volatile("" ::: "memory"); }

static void print_hex(int i, const void *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const uint8_t *b = (const uint8_t *)p;
  printf("[tflm] out %d ", i);
  for (size_t k = 0; k < n; ++k) {
    putchar(hex[b[k] >> 4]);
    putchar(hex[b[k] & 15]);
  }
  putchar('\n');
}

// An interpreter over the first `size` bytes of the arena; allocated; optionally invoked once.
static tflite::MicroInterpreter *make(const tflite::Model *model, const tflite::MicroOpResolver &r, size_t size,
                                      bool invoke, bool recording = false) {
  tflite::MicroInterpreter *it =
      recording ? new (interp_mem) tflite::RecordingMicroInterpreter(model, r, tensor_arena, size)
                : new (interp_mem) tflite::MicroInterpreter(model, r, tensor_arena, size);
  if (it->AllocateTensors() != kTfLiteOk) return it->~MicroInterpreter(), nullptr;
  if (invoke) {
    TfLiteTensor *in = it->input(0);
    memset(in->data.raw, 0, in->bytes);
    if (it->Invoke() != kTfLiteOk) return it->~MicroInterpreter(), nullptr;
  }
  return it;
}

static int semihost(int op, const void *arg) {
  register int r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

static const char *cmdline(void) {
  static char buf[128];
  struct {
    char *p;
    int len;
  } blk = {buf, (int)sizeof(buf)};
  if (semihost(0x15 /* SYS_GET_CMDLINE */, &blk) != 0) return "";
  return buf;
}

int main(void) {
  const tflite::Model *model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    printf("[tflm] error: schema version %lu, this TFLM reads %d\n", (unsigned long)model->version(),
           TFLITE_SCHEMA_VERSION);
    return 2;
  }
  static TinyMLOpResolver resolver;
  if (tinyml_register_ops(resolver) != kTfLiteOk) {
    printf("[tflm] error: registering the model's ops failed\n");
    return 2;
  }
  const char *cl = cmdline();
  const char *a = strstr(cl, "arena=");
  size_t arena_size = a ? (size_t)strtoul(a + 6, nullptr, 0) : TINYML_ARENA_MAX;
  const bool bisect = a == nullptr;
  if (arena_size > TINYML_ARENA_MAX) arena_size = TINYML_ARENA_MAX;
  printf("[tflm] arena_size %lu\n", (unsigned long)arena_size);

  tflite::MicroInterpreter *it = make(model, resolver, arena_size, false);
  if (!it) {
    printf("[tflm] error: AllocateTensors failed with an arena of %lu bytes\n", (unsigned long)arena_size);
    return 3;
  }
  printf("[tflm] arena_used %lu\n", (unsigned long)it->arena_used_bytes());
  TfLiteTensor *in = it->input(0);
  TfLiteTensor *out = it->output(0);
  if (in->bytes != TFLM_INPUT_BYTES) {
    printf("[tflm] error: input tensor has %lu bytes, the vectors %d\n", (unsigned long)in->bytes, TFLM_INPUT_BYTES);
    return 4;
  }
  uint32_t total = 0, lo = 0xFFFFFFFFu, hi = 0;
  for (int i = 0; i < TFLM_N_VECTORS; ++i) {
    memcpy(in->data.raw, tflm_vectors[i], TFLM_INPUT_BYTES);
    const uint32_t t0 = tinyml_timer_ticks();
    tinyml_profile_begin();
    const TfLiteStatus st = it->Invoke();
    tinyml_profile_end();
    const uint32_t dt = tinyml_timer_ticks() - t0;
    if (st != kTfLiteOk) {
      printf("[tflm] error: Invoke failed at vector %d\n", i);
      return 5;
    }
    total += dt;
    if (dt < lo) lo = dt;
    if (dt > hi) hi = dt;
    print_hex(i, out->data.raw, out->bytes);
  }
  printf("[tflm] invoke_ticks total=%lu min=%lu max=%lu n=%d\n", (unsigned long)total, (unsigned long)lo,
         (unsigned long)hi, TFLM_N_VECTORS);
  it->~MicroInterpreter();
  if (!bisect) return 0;

  // the allocation table of the same model (RecordingMicroAllocator, its own run)
  {
    auto *rit = new (interp_mem) tflite::RecordingMicroInterpreter(model, resolver, tensor_arena, arena_size);
    if (rit->AllocateTensors() == kTfLiteOk) {
      printf("[tflm] allocations begin\n");
      rit->GetMicroAllocator().PrintAllocations();
      printf("[tflm] allocations end\n");
    }
    rit->~RecordingMicroInterpreter();
  }

  // smallest multiple of 16 in (bad, good] that allocates and invokes
  size_t good = arena_size, bad = 0;
  tinyml_log_muted = 1;
  while (good - bad > 16) {
    size_t mid = ((bad + good) / 2) & ~(size_t)15;
    if (mid <= bad) mid = bad + 16;
    tflite::MicroInterpreter *p = make(model, resolver, mid, true);
    if (p) {
      good = mid;
      p->~MicroInterpreter();
    } else {
      bad = mid;
    }
  }
  tinyml_log_muted = 0;
  printf("[tflm] arena_min %lu\n", (unsigned long)good);
  if (strstr(cl, "recording")) {
    size_t rgood = arena_size, rbad = 0;
    tinyml_log_muted = 1;
    while (rgood - rbad > 16) {
      size_t mid = ((rbad + rgood) / 2) & ~(size_t)15;
      if (mid <= rbad) mid = rbad + 16;
      tflite::MicroInterpreter *p = make(model, resolver, mid, true, true);
      if (p) {
        rgood = mid;
        p->~MicroInterpreter();
      } else {
        rbad = mid;
      }
    }
    tinyml_log_muted = 0;
    printf("[tflm] arena_min_recording %lu\n", (unsigned long)rgood);
  }
  return 0;
}
