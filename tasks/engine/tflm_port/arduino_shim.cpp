// doit-tinyml's minimal Arduino API for its bare-metal platform: see Arduino.h (our own code).
// main() (weak) runs setup() and then loop(); under QEMU (TINYML_SEMIHOSTING) it stops after
// TINYML_SHIM_LOOPS iterations so a firmware run ends, elsewhere it loops forever like a board.
#include "Arduino.h"

#ifdef TINYML_SEMIHOSTING
#include <unistd.h>
#endif

#ifndef TINYML_SHIM_LOOPS
#define TINYML_SHIM_LOOPS 3
#endif

extern "C" uint32_t tinyml_timer_ticks(void);

TinymlSerial Serial;

size_t TinymlSerial::write(uint8_t c) {
#ifdef TINYML_SEMIHOSTING
  return (size_t)::write(1, &c, 1);
#else
  (void)c;
  return 1;
#endif
}

size_t TinymlSerial::write(const char *s) {
  size_t n = strlen(s);
#ifdef TINYML_SEMIHOSTING
  ::write(1, s, n);
#endif
  return n;
}

size_t TinymlSerial::print(unsigned long v, int base) {
  char buf[34];
  int i = 33;
  buf[i] = 0;
  if (base < 2 || base > 16) base = 10;
  do {
    buf[--i] = "0123456789abcdef"[v % (unsigned)base];
    v /= (unsigned)base;
  } while (v && i > 0);
  return write(buf + i);
}

size_t TinymlSerial::print(long v, int base) {
  if (v < 0 && base == DEC) return write((uint8_t)'-') + print((unsigned long)(-v), base);
  return print((unsigned long)v, base);
}

size_t TinymlSerial::print(double v, int digits) {
  size_t n = 0;
  if (v != v) return write("nan");
  if (v < 0) {
    n += write((uint8_t)'-');
    v = -v;
  }
  double rounding = 0.5;
  for (int i = 0; i < digits; ++i) rounding /= 10.0;
  v += rounding;
  unsigned long whole = (unsigned long)v;
  n += print(whole);
  if (digits > 0) n += write((uint8_t)'.');
  double rest = v - (double)whole;
  while (digits-- > 0) {
    rest *= 10.0;
    int d = (int)rest;
    n += write((uint8_t)('0' + d));
    rest -= d;
  }
  return n;
}

// The platform's timer: the 25 MHz CMSDK timer on mps2_an386; 0 on boards without one.
unsigned long micros(void) { return (unsigned long)(tinyml_timer_ticks() / 25u); }
unsigned long millis(void) { return micros() / 1000u; }

void delay(unsigned long ms) {
#ifdef TINYML_SEMIHOSTING
  (void)ms;  // virtual time: nothing to wait for
#else
  const unsigned long t0 = millis();
  while (tinyml_timer_ticks() && millis() - t0 < ms) {
  }
#endif
}

void delayMicroseconds(unsigned int us) { (void)us; }

// Weak, and setup()/loop() weak references: a sketch that writes its own main() links as it is (its main
// wins, and this one is dropped with its calls by --gc-sections).
extern void setup(void) __attribute__((weak));
extern void loop(void) __attribute__((weak));

__attribute__((weak)) int main(void) {
  if (!setup || !loop) return 1;
  setup();
#ifdef TINYML_SEMIHOSTING
  for (int i = 0; i < TINYML_SHIM_LOOPS; ++i) loop();
  return 0;
#else
  for (;;) loop();
#endif
}
