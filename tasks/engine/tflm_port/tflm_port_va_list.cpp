// doit-tinyml's port of TFLite Micro to its bare-metal platform, for trees whose DebugLog takes a
// format and a va_list (tflite-micro since 2023-07). The tree's own micro_time.cc and
// system_setup.cc are generic and compiled as they are; its debug_log.cc is replaced by this file.
// Our own glue code; no TFLM source is copied here.
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "tensorflow/lite/micro/debug_log.h"

extern "C" volatile int tinyml_log_muted;
volatile int tinyml_log_muted = 0;

extern "C" void DebugLog(const char *format, va_list args) {
#ifdef TINYML_SEMIHOSTING
  if (!tinyml_log_muted) vfprintf(stdout, format, args);
#else
  (void)format;
  (void)args;
#endif
}

extern "C" int DebugVsnprintf(char *buffer, size_t buf_size, const char *format, va_list vlist) {
  return vsnprintf(buffer, buf_size, format, vlist);
}
