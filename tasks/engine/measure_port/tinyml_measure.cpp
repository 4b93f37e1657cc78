// doit-tinyml's measurement harness (our own code). The `measure` stage builds it IN PLACE of the
// sketch's sources, in the sketch's own PlatformIO environment (its platform, framework, flags and
// libraries), with the variant's model: model_data.h/.cc and the TFLite Micro the environment links
// (TINYML_RUNTIME_TFLM), or the AOT C model (TINYML_RUNTIME_AOT); tinyml_measure_vectors.h holds K test
// inputs in the model's input type. `pio run -t upload` puts it on the board; engine/measure.py then
// speaks this line protocol over the serial port (ASCII, '\n'):
//
//   board: "tinyml-measure 1 ready"            about twice a second until the host sends a command
//   host:  "M"                                  measure ("Q": done; only the QEMU stand-in acts on it)
//   board: "tinyml-measure 1 begin"
//          "core cpuid=<hex> fpu=<0|1> f_cpu=<Hz> core_clock=<Hz> timer=<dwt|systick|micros> runtime=<tflm|aot>
//           build=<hex>"                        (one line) build: TINYML_MEASURE_BUILD, this build's identity
//          "arena used=<bytes> size=<bytes>"   arena_used_bytes() (TFLM) or the AOT plan
//          "stack used=<bytes> method=<how>"   deepest stack the inferences touched (painted), or "stack unknown"
//          "cycles <c1> ... <cN>"               cycles of each of N inferences (after one warm-up)
//          "out <i> <hex>"                      the raw output tensor for test input i
//          "tinyml-measure 1 end lines=<n>"     n: lines between begin and end
//   or     "tinyml-measure 1 error <message>"
//
// Cycles: the DWT cycle counter where the core has one and it runs (Cortex-M3/M4/M7/M33/M55); else
// SysTick on bare metal (our platform: the QEMU stand-in), else micros() x the clock (Arduino cores on
// Cortex-M0/M0+, which own SysTick).
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tinyml_measure_vectors.h"

#ifndef TINYML_MEASURE_RUNS
#define TINYML_MEASURE_RUNS 10
#endif
#ifndef TINYML_MEASURE_BAUD
#define TINYML_MEASURE_BAUD 115200
#endif
#ifndef F_CPU
#define F_CPU 0
#endif
// An Arduino core provides Serial, millis() and micros(); doit's bare-metal platform (TINYML_BARE_METAL)
// does not, even where the TFLite Micro Arduino library defines ARDUINO.
#if defined(ARDUINO) && !defined(TINYML_BARE_METAL)
#define TINYML_MEASURE_ARDUINO 1
#else
#define TINYML_MEASURE_ARDUINO 0
#endif

// ------------------------------------------------------------------------------------------ serial
#if TINYML_MEASURE_ARDUINO
#include <Arduino.h>
static void ser_begin(void) {
  Serial.begin(TINYML_MEASURE_BAUD);
}
static void ser_write(const char *s, size_t n) { Serial.write((const uint8_t *)s, n); }
static int ser_read(void) { return Serial.available() > 0 ? Serial.read() : -1; }
static void ser_idle(void) { delay(10); }
static uint32_t ser_millis(void) { return (uint32_t)millis(); }
#define TINYML_HAVE_MICROS 1
static uint32_t board_micros(void) { return (uint32_t)micros(); }
#elif defined(TINYML_MEASURE_UART_CMSDK)
// CMSDK APB UART (the MPS2/MPS3 boards QEMU emulates): DATA, STATE (bit0 TX full, bit1 RX full), CTRL, BAUDDIV
#define UART_REG(off) (*(volatile uint32_t *)((uintptr_t)(TINYML_MEASURE_UART_CMSDK) + (off)))
static void ser_begin(void) {
  UART_REG(0x10) = 16;  // BAUDDIV (QEMU needs >= 16)
  UART_REG(0x08) = 3;   // TX and RX enabled
}
static void ser_write(const char *s, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    while (UART_REG(0x04) & 1u) {
    }
    UART_REG(0x00) = (uint8_t)s[i];
  }
}
static int ser_read(void) { return (UART_REG(0x04) & 2u) ? (int)(UART_REG(0x00) & 0xFFu) : -1; }
static uint32_t ser_millis(void);
static void ser_idle(void) { __asm__ volatile("wfi"); }  // woken by SysTick (below): no busy host CPU under QEMU
#else
#error "doit-tinyml measure: this build has no serial port: measure a board through its own PlatformIO environment (an Arduino framework), or the QEMU board (TINYML_MEASURE_UART_CMSDK)"
#endif

static void puts_(const char *s) { ser_write(s, strlen(s)); }

static void put_u32(uint32_t v) {
  char b[11];
  int i = 10;
  b[i] = 0;
  do {
    b[--i] = (char)('0' + v % 10u);
    v /= 10u;
  } while (v && i > 0);
  puts_(b + i);
}

static void put_hex_bytes(const uint8_t *p, size_t n) {
  static const char hx[] = "0123456789abcdef";
  char b[64];
  size_t k = 0;
  for (size_t i = 0; i < n; ++i) {
    b[k++] = hx[p[i] >> 4];
    b[k++] = hx[p[i] & 15];
    if (k == sizeof b) {
      ser_write(b, k);
      k = 0;
    }
  }
  if (k) ser_write(b, k);
}

static uint32_t lines;
static void end_line(void) {
  puts_("\n");
  ++lines;
}

// ------------------------------------------------------------------------------------------ cycles
#define SCB_CPUID (*(volatile uint32_t *)0xE000ED00u)
#define SCB_DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define FP_MVFR0 (*(volatile uint32_t *)0xE000EF40u)
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)
#define DWT_LAR (*(volatile uint32_t *)0xE0001FB0u)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

extern "C" uint32_t SystemCoreClock __attribute__((weak));

enum { TIMER_DWT = 1, TIMER_SYSTICK = 2, TIMER_MICROS = 3 };
static int timer_kind;

#if !TINYML_MEASURE_ARDUINO
static volatile uint32_t systick_wraps;
extern "C" void SysTick_Handler(void) { systick_wraps = systick_wraps + 1; }
static uint64_t systick_now(void) {
  uint32_t w, v;
  do {
    w = systick_wraps;
    v = SYST_CVR;
  } while (w != systick_wraps);
  return ((uint64_t)w << 24) | (uint64_t)(0xFFFFFFu - v);
}
static uint32_t ser_millis(void) {
  const uint32_t hz = F_CPU ? (uint32_t)F_CPU : 25000000u;
  return (uint32_t)(systick_now() / (hz / 1000u));
}
#endif

static void timer_init(void) {
#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__) || defined(__ARM_ARCH_8M_MAIN__) || \
    defined(__ARM_ARCH_8_1M_MAIN__)
  SCB_DEMCR |= 1u << 24;  // TRCENA
  DWT_LAR = 0xC5ACCE55u;  // unlock (Cortex-M7)
  DWT_CYCCNT = 0;
  DWT_CTRL |= 1u;  // CYCCNTENA
  const uint32_t a = DWT_CYCCNT;
  for (volatile int i = 0; i < 64; i = i + 1) {
  }
  if (DWT_CYCCNT != a) {
    timer_kind = TIMER_DWT;
  }
#endif
#if !TINYML_MEASURE_ARDUINO
  // bare metal: SysTick is ours (core clock, interrupt on each wrap for the high bits and for ser_idle)
  SYST_RVR = 0xFFFFFFu;
  SYST_CVR = 0;
  SYST_CSR = 7u;
  if (!timer_kind) timer_kind = TIMER_SYSTICK;
#else
  if (!timer_kind) timer_kind = TIMER_MICROS;
#endif
}

static uint64_t cycles_now(void) {
  if (timer_kind == TIMER_DWT) return DWT_CYCCNT;
#if !TINYML_MEASURE_ARDUINO
  return systick_now();
#else
  const uint32_t hz = (&SystemCoreClock && SystemCoreClock) ? SystemCoreClock : (uint32_t)F_CPU;
  return (uint64_t)board_micros() * (hz / 1000000u);
#endif
}

static uint32_t elapsed(uint64_t t0) {
  const uint64_t t1 = cycles_now();
  if (timer_kind == TIMER_DWT) return (uint32_t)((uint32_t)t1 - (uint32_t)t0);  // 32-bit counter, wraps
  return (uint32_t)(t1 - t0);
}

// ------------------------------------------------------------------------------------------ stack
#ifndef TINYML_STACK_PAINT_MAX
#define TINYML_STACK_PAINT_MAX (64 * 1024)
#endif
#define PAINT 0xC5A5C5A5u
static uint32_t *paint_lo, *paint_hi;
static const char *stack_method = "unknown";

#if defined(TINYML_BARE_METAL)
extern "C" uint32_t _tinyml_stack_bottom;
#elif defined(__MBED__) && defined(__has_include)
#if __has_include("rtx_os.h")
#include "rtx_os.h"
#define TINYML_STACK_RTX 1
#endif
#else
extern "C" char __StackLimit __attribute__((weak));
#endif

__attribute__((unused)) static bool on_main_stack(void) {  // CONTROL.SPSEL == 0: the code runs on MSP, the linker script's stack
  uint32_t control;
  __asm__ volatile("mrs %0, control" : "=r"(control));
  return (control & 2u) == 0;
}

// The lowest address the stack may reach, where it is known for sure; else nullptr (then nothing is painted:
// painting a guessed region could overwrite another thread's stack).
static uint32_t *stack_limit(void) {
#if defined(TINYML_BARE_METAL)
  stack_method = "painted (linker stack)";
  return &_tinyml_stack_bottom;
#elif defined(TINYML_STACK_RTX)
  osRtxThread_t *t = (osRtxThread_t *)osThreadGetId();
  if (t && t->stack_mem && !on_main_stack()) {
    stack_method = "painted (RTX thread stack)";
    return (uint32_t *)t->stack_mem + 2;  // RTX keeps its watermark word at the bottom
  }
  return nullptr;
#elif defined(__MBED__)
  return nullptr;
#else
  if (&__StackLimit && on_main_stack()) {
    stack_method = "painted (__StackLimit)";
    return (uint32_t *)&__StackLimit;
  }
  return nullptr;
#endif
}

__attribute__((noinline)) static void stack_paint(void) {
  uint32_t here;
  uint32_t *sp = (uint32_t *)((uintptr_t)&here & ~(uintptr_t)3) - 64;  // below this frame, with room
  uint32_t *lo = stack_limit();
  if (!lo || lo >= sp) {
    stack_method = "unknown";
    return;
  }
  if ((uintptr_t)(sp - lo) * 4u > TINYML_STACK_PAINT_MAX) lo = sp - TINYML_STACK_PAINT_MAX / 4;
  for (uint32_t *p = lo; p < sp; ++p) *p = PAINT;
  paint_lo = lo;
  paint_hi = sp;
}

static bool stack_reached_limit;  // the lowest painted word was overwritten: the figure is a lower bound

static uint32_t stack_used(uintptr_t top) {
  if (!paint_lo) return 0;
  uint32_t *p = paint_lo;
  stack_reached_limit = *p != PAINT;
  while (p < paint_hi && *p == PAINT) ++p;
  return (uint32_t)(top - (uintptr_t)p);
}

// ------------------------------------------------------------------------------------------ the model
#if defined(TINYML_RUNTIME_AOT)
#include "tinyml_model.h"
static const char *runtime_name = "aot";
static const char *model_setup(void) { return nullptr; }
static uint32_t arena_used(void) { return TINYML_ARENA_BYTES; }
static uint32_t arena_size(void) { return TINYML_ARENA_BYTES; }
static uint8_t *model_input(void) { return (uint8_t *)tinyml_model_input(); }
static size_t input_bytes(void) { return TINYML_INPUT_BYTES; }
static bool model_run(void) { return tinyml_model_run() == 0; }
static const uint8_t *model_output(void) { return (const uint8_t *)tinyml_model_output(); }
static size_t output_bytes(void) { return TINYML_OUTPUT_BYTES; }
#else
#ifndef TINYML_HAVE_TFLM
#define TINYML_HAVE_TFLM 1
#endif
#include <new>

#include "model_data.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"
static const char *runtime_name = "tflm";
alignas(16) static uint8_t tensor_arena[TINYML_ARENA_SIZE];
alignas(tflite::MicroInterpreter) static uint8_t interp_mem[sizeof(tflite::MicroInterpreter)];
static tflite::MicroInterpreter *interp;
static const char *model_setup(void) {
  const tflite::Model *model = tflite::GetModel(g_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) return "the model's schema version is not this TFLite Micro's";
  static TinyMLOpResolver resolver;
  if (tinyml_register_ops(resolver) != kTfLiteOk) return "registering the model's operators failed";
  interp = new (interp_mem) tflite::MicroInterpreter(model, resolver, tensor_arena, TINYML_ARENA_SIZE);
  if (interp->AllocateTensors() != kTfLiteOk)
    return "AllocateTensors failed: the arena (TINYML_ARENA_SIZE) is too small for this TFLite Micro";
  return nullptr;
}
static uint32_t arena_used(void) { return (uint32_t)interp->arena_used_bytes(); }
static uint32_t arena_size(void) { return TINYML_ARENA_SIZE; }
static uint8_t *model_input(void) { return interp->input(0)->data.uint8; }
static size_t input_bytes(void) { return interp->input(0)->bytes; }
static bool model_run(void) { return interp->Invoke() == kTfLiteOk; }
static const uint8_t *model_output(void) { return interp->output(0)->data.uint8; }
static size_t output_bytes(void) { return interp->output(0)->bytes; }
#endif

static void fail(const char *why) {
  puts_("tinyml-measure 1 error ");
  puts_(why);
  puts_("\n");
}

// ------------------------------------------------------------------------------------------ one measurement
__attribute__((noinline)) static void measure(void) {
  static uint32_t cycles[TINYML_MEASURE_RUNS];
  static const char *err = nullptr;
  static bool set_up = false;
  uint32_t top;
  lines = 0;
  puts_("tinyml-measure 1 begin\n");  // first: a board that dies setting up the model has started measuring
  stack_paint();                       // before the set-up: AllocateTensors' depth counts too
  if (!set_up) {                       // once: a second measurement reuses the interpreter
    err = model_setup();
    set_up = true;
  }
  if (err) return fail(err);
  if (input_bytes() != TINYML_MEASURE_INPUT_BYTES) return fail("the model's input size differs from the test vectors");
  const uint32_t cpuid = SCB_CPUID;
  const uint32_t hz = (&SystemCoreClock && SystemCoreClock) ? SystemCoreClock : 0u;
  puts_("core cpuid=");
  static const char hx[] = "0123456789abcdef";
  char cb[9];
  for (int i = 0; i < 8; ++i) cb[i] = hx[(cpuid >> (28 - 4 * i)) & 15];
  cb[8] = 0;
  puts_(cb);
#if defined(__ARM_FP) && (__ARM_FP != 0)
  puts_(" fpu=");
  puts_(FP_MVFR0 ? "1" : "0");
#else
  puts_(" fpu=0");
#endif
  puts_(" f_cpu=");
  put_u32((uint32_t)F_CPU);
  puts_(" core_clock=");
  put_u32(hz);
  puts_(timer_kind == TIMER_DWT ? " timer=dwt" : timer_kind == TIMER_SYSTICK ? " timer=systick" : " timer=micros");
  puts_(" runtime=");
  puts_(runtime_name);
#if defined(TINYML_MEASURE_BUILD)
  puts_(" build=");  // which build this is: the host refuses a report from another (a stale harness)
  for (int i = 0; i < 8; ++i) cb[i] = hx[((uint32_t)(TINYML_MEASURE_BUILD) >> (28 - 4 * i)) & 15];
  puts_(cb);
#endif
  end_line();

  // one warm-up inference (caches, first-touch), then the timed runs over the vectors in turn
  memcpy(model_input(), tinyml_measure_vectors[0], TINYML_MEASURE_INPUT_BYTES);
  if (!model_run()) return fail("the inference failed (Invoke returned an error)");
  for (int r = 0; r < TINYML_MEASURE_RUNS; ++r) {
    memcpy(model_input(), tinyml_measure_vectors[r % TINYML_MEASURE_N_VECTORS], TINYML_MEASURE_INPUT_BYTES);
    const uint32_t ms0 = ser_millis();
    const uint64_t t0 = cycles_now();
    const bool ok = model_run();
    cycles[r] = elapsed(t0);
    if (!ok) return fail("the inference failed (Invoke returned an error)");
    // the cycle figures are 32-bit: an inference longer than that (67 s at 64 MHz, 8.9 s at 480 MHz) would wrap
    if (hz && (uint64_t)(ser_millis() - ms0) * (hz / 1000u) > 0xF0000000ull)
      return fail("an inference took longer than a 32-bit cycle count holds at this clock");
  }
  const uint32_t used_stack = stack_used((uintptr_t)&top);

  puts_("arena used=");
  put_u32(arena_used());
  puts_(" size=");
  put_u32(arena_size());
  end_line();
  if (paint_lo) {
    puts_("stack used=");
    put_u32(used_stack);
    puts_(" method=");
    puts_(stack_method);
    if (stack_reached_limit) puts_(", reached the lowest painted word: at least this much");
  } else {
    puts_("stack unknown");
  }
  end_line();
  puts_("cycles");
  for (int r = 0; r < TINYML_MEASURE_RUNS; ++r) {
    puts_(" ");
    put_u32(cycles[r]);
  }
  end_line();
  for (int i = 0; i < TINYML_MEASURE_N_VECTORS; ++i) {
    memcpy(model_input(), tinyml_measure_vectors[i], TINYML_MEASURE_INPUT_BYTES);
    if (!model_run()) return fail("the inference failed (Invoke returned an error)");
    puts_("out ");
    put_u32((uint32_t)i);
    puts_(" ");
    put_hex_bytes(model_output(), output_bytes());
    end_line();
  }
  puts_("tinyml-measure 1 end lines=");
  put_u32(lines);
  puts_("\n");
}

static void serve(void) {
  uint32_t last = ser_millis() - 1000u;
  for (;;) {
    const int c = ser_read();
    if (c == 'M') {
      measure();
      last = ser_millis();
      continue;
    }
#if defined(TINYML_SEMIHOSTING)
    if (c == 'Q') exit(0);  // the QEMU stand-in: the host is done, stop the emulator (a real board ignores 'Q')
#endif
    if (ser_millis() - last >= 500u) {
      puts_("tinyml-measure 1 ready\n");
      last = ser_millis();
    }
    ser_idle();
  }
}

#if TINYML_MEASURE_ARDUINO
void setup() {
  ser_begin();
  timer_init();
}
void loop() { serve(); }
#else
int main(void) {
  ser_begin();
  timer_init();
  serve();
  return 0;
}
#endif
