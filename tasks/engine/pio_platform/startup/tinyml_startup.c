/* doit-tinyml bare-metal Cortex-M start-up: vector table, Reset_Handler, default handlers.
 *
 * Linked into every firmware the local platform builds (the linker script names Reset_Handler
 * as the entry and places .isr_vector first in FLASH). With TINYML_SEMIHOSTING (board
 * mps2_an386 under QEMU) it also sets up newlib's semihosted stdio and reports the CMSDK
 * timer ticks spent in main() so the host can derive a deterministic instruction count.
 */
#include <stdint.h>
#include <stdlib.h>
#ifdef TINYML_SEMIHOSTING
#include <stdio.h>
#include <unistd.h>
#endif

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
extern int main(void);
extern void __libc_init_array(void);

void Reset_Handler(void);
void Default_Handler(void);

/* -nostartfiles drops crti/crtn: __libc_init_array still calls _init. */
__attribute__((weak)) void _init(void) {}
__attribute__((weak)) void _fini(void) {}

#define WEAK_DEFAULT __attribute__((weak, alias("Default_Handler")))
void NMI_Handler(void) WEAK_DEFAULT;
void HardFault_Handler(void) WEAK_DEFAULT;
void MemManage_Handler(void) WEAK_DEFAULT;
void BusFault_Handler(void) WEAK_DEFAULT;
void UsageFault_Handler(void) WEAK_DEFAULT;
void SVC_Handler(void) WEAK_DEFAULT;
void DebugMon_Handler(void) WEAK_DEFAULT;
void PendSV_Handler(void) WEAK_DEFAULT;
void SysTick_Handler(void) WEAK_DEFAULT;

__attribute__((section(".isr_vector"), used)) void (*const tinyml_vectors[16])(void) = {
    (void (*)(void))(&_estack),
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    0, 0, 0, 0,
    SVC_Handler,
    DebugMon_Handler,
    0,
    PendSV_Handler,
    SysTick_Handler,
};

#ifdef TINYML_SEMIHOSTING
/* ARM semihosting, Thumb: bkpt 0xAB, operation in r0, argument in r1. */
static inline int tinyml_semihost(int op, const void *arg) {
  register int r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}
#define SYS_EXIT 0x18

/* to the program's stdout (after whatever printf has buffered), not the semihosting console */
static void tinyml_puts(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  fflush(stdout);
  write(1, s, n);
}

static void tinyml_put_u32(const char *prefix, uint32_t v) {
  char buf[64];
  char digits[11];
  int n = 0, i = 0;
  while (prefix[i] && i < 40) { buf[i] = prefix[i]; i++; }
  do { digits[n++] = (char)('0' + v % 10u); v /= 10u; } while (v && n < 10);
  while (n) buf[i++] = digits[--n];
  buf[i++] = '\n';
  buf[i] = 0;
  tinyml_puts(buf);
}

/* CMSDK APB Timer0 of the MPS2 boards, clocked by the 25 MHz SYSCLK. */
#define CMSDK_TIMER0_CTRL (*(volatile uint32_t *)0x40000000u)
#define CMSDK_TIMER0_VALUE (*(volatile uint32_t *)0x40000004u)
#define CMSDK_TIMER0_RELOAD (*(volatile uint32_t *)0x40000008u)

static void tinyml_timer_start(void) {
  CMSDK_TIMER0_CTRL = 0;
  CMSDK_TIMER0_RELOAD = 0xFFFFFFFFu;
  CMSDK_TIMER0_VALUE = 0xFFFFFFFFu;
  CMSDK_TIMER0_CTRL = 1u; /* enable, no interrupt */
}

/* Timer ticks since reset (down-counter from 0xFFFFFFFF). */
uint32_t tinyml_timer_ticks(void) { return 0xFFFFFFFFu - CMSDK_TIMER0_VALUE; }

extern void initialise_monitor_handles(void);
#else
uint32_t tinyml_timer_ticks(void) { return 0; }
#endif

void Default_Handler(void) {
#ifdef TINYML_SEMIHOSTING
  uint32_t ipsr;
  __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
  tinyml_put_u32("[tinyml] fault: exception ", ipsr);
  tinyml_semihost(SYS_EXIT, (const void *)0x20023); /* ADP_Stopped_RunTimeErrorUnknown */
#endif
  for (;;) {
  }
}

void Reset_Handler(void) {
  uint32_t *src = &_sidata, *dst = &_sdata;
  while (dst < &_edata) *dst++ = *src++;
  for (dst = &_sbss; dst < &_ebss;) *dst++ = 0;
#if defined(__ARM_FP) && (__ARM_FP != 0)
  /* enable CP10/CP11 (the FPU) before any floating-point instruction */
  *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
  __asm__ volatile("dsb\n isb" ::: "memory");
#endif
#ifdef TINYML_SEMIHOSTING
  initialise_monitor_handles();
  tinyml_timer_start();
#endif
  __libc_init_array();
  int rc = main();
#ifdef TINYML_SEMIHOSTING
  tinyml_put_u32("[tinyml] timer_ticks=", tinyml_timer_ticks());
#endif
  exit(rc);
}
