// doit-tinyml's minimal Arduino API for its bare-metal platform (our own code, not the Arduino core).
//
// When doit links the real TFLite Micro into a sketch offline, the sketch's TINYML_HAVE_TFLM path
// (written for an Arduino board: setup()/loop(), Serial, delay, micros) compiles against this
// header instead of an Arduino core: Serial prints to the host through semihosting on the QEMU
// board (mps2_an386) and to nothing on a real board; micros()/millis() read the platform's timer.
// It is deliberately tiny: the Arduino core itself is NOT in the offline figures (size.json says
// so); build your own platformio.ini environment (envs = [...]) for those.
#ifndef TINYML_ARDUINO_SHIM_H_
#define TINYML_ARDUINO_SHIM_H_

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TINYML_ARDUINO_SHIM 1
#ifndef PI
#define PI 3.1415926535897932384626433832795
#endif
#define DEC 10
#define HEX 16

unsigned long millis(void);
unsigned long micros(void);
void delay(unsigned long ms);
void delayMicroseconds(unsigned int us);
inline void pinMode(int, int) {}
inline void digitalWrite(int, int) {}
inline int digitalRead(int) { return 0; }
#define INPUT 0
#define OUTPUT 1
#define LOW 0
#define HIGH 1
#define LED_BUILTIN 13

void setup(void);
void loop(void);

class TinymlSerial {
 public:
  void begin(unsigned long) {}
  operator bool() const { return true; }
  int available() { return 0; }
  int read() { return -1; }
  void flush() {}
  size_t write(uint8_t c);
  size_t write(const char *s);
  size_t print(const char *s) { return write(s); }
  size_t print(char c) { return write((uint8_t)c); }
  size_t print(unsigned char v, int base = DEC) { return print((unsigned long)v, base); }
  size_t print(int v, int base = DEC) { return print((long)v, base); }
  size_t print(unsigned int v, int base = DEC) { return print((unsigned long)v, base); }
  size_t print(long v, int base = DEC);
  size_t print(unsigned long v, int base = DEC);
  size_t print(double v, int digits = 2);
  template <typename T>
  size_t println(T v) { size_t n = print(v); return n + write("\r\n"); }
  template <typename T>
  size_t println(T v, int f) { size_t n = print(v, f); return n + write("\r\n"); }
  size_t println() { return write("\r\n"); }
};
extern TinymlSerial Serial;

#endif  // TINYML_ARDUINO_SHIM_H_
