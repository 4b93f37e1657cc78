// doit-tinyml's port of TFLite Micro to its bare-metal platform, for trees whose DebugLog takes a
// finished string (the Arduino export of 2023 and tflite-micro before 2023-07). It provides what
// the Arduino core's system_setup.cpp / micro_time.cpp provide on a board: DebugLog,
// InitializeTarget and a tick counter. Our own glue code; no TFLM source is copied here.
#include <stdint.h>
#include <stdio.h>

#include "tensorflow/lite/micro/debug_log.h"
#include "tensorflow/lite/micro/micro_time.h"
#include "tensorflow/lite/micro/system_setup.h"

extern "C" uint32_t tinyml_timer_ticks(void);  // the platform's start-up code (25 MHz CMSDK timer on mps2)
extern "C" volatile int tinyml_log_muted;
volatile int tinyml_log_muted = 0;

// MicroPrintf -> DebugLog: the host's stdout under QEMU (semihosting), nothing on a real board.
extern "C" void DebugLog(const char *s) {
#ifdef TINYML_SEMIHOSTING
  if (!tinyml_log_muted) fputs(s, stdout);
#else
  (void)s;
#endif
}

namespace tflite {
void InitializeTarget() {}
uint32_t ticks_per_second() { return 25000000u; }
uint32_t GetCurrentTimeTicks() { return tinyml_timer_ticks(); }
}  // namespace tflite
