/* doit-tinyml AOT target check: run the generated model on every embedded test vector and print
 * the raw output bytes over semihosting, plus the timer ticks spent inside tinyml_model_run().
 *
 * Built by tasks/aot/target.py with the local PlatformIO platform for a QEMU MPS2 board (Cortex-M4
 * mps2_an386 with the DSP extension, Cortex-M3 mps2_an385 without) and run under
 * qemu-system-arm -icount (deterministic). The test vectors come from aot_vectors.h, generated next
 * to the model; the platform start-up provides tinyml_timer_ticks(). With AOT_PROFILE (set in
 * aot_vectors.h, the model compiled with TINYML_TRACE) it also prints the ticks of every operator.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "aot_vectors.h"
#include "tinyml_kernels.h"
#include "tinyml_model.h"

extern uint32_t tinyml_timer_ticks(void);

#if AOT_PROFILE
#define AOT_MAX_OPS 256
static uint32_t op_ticks[AOT_MAX_OPS];
static uint32_t op_t0;
void tinyml_trace(int op, const void *data, int32_t bytes) {
  const uint32_t now = tinyml_timer_ticks();
  (void)data;
  (void)bytes;
  if (op >= 0 && op < AOT_MAX_OPS) op_ticks[op] += now - op_t0;
  op_t0 = tinyml_timer_ticks();
}
#endif

/* The window engine/profile.py profiles (QEMU plugin): from the call of the first to the call of the second. */
__attribute__((noinline, used)) void tinyml_profile_begin(void) { __asm__ volatile("" ::: "memory"); }
__attribute__((noinline, used)) void tinyml_profile_end(void) { __asm__ volatile("" ::: "memory"); }

int main(void) {
  static const char hex[] = "0123456789abcdef";
  static char line[2 * TINYML_OUTPUT_BYTES + 1];
  uint32_t total = 0, lo = 0xFFFFFFFFu, hi = 0;
  int32_t i, k;
  printf("[aot] kernels %s\n", tml_kernels_variant());
  for (i = 0; i < AOT_N_VECTORS; ++i) {
    const uint8_t *ob;
    uint32_t t0;
    memcpy(tinyml_model_input(), aot_vectors[i], TINYML_INPUT_BYTES);
    t0 = tinyml_timer_ticks();
#if AOT_PROFILE
    op_t0 = t0;
#endif
    tinyml_profile_begin();
    tinyml_model_run();
    tinyml_profile_end();
    {
      const uint32_t dt = tinyml_timer_ticks() - t0;
      total += dt;
      if (dt < lo) lo = dt;
      if (dt > hi) hi = dt;
    }
    ob = (const uint8_t *)tinyml_model_output();
    for (k = 0; k < TINYML_OUTPUT_BYTES; ++k) {
      line[2 * k] = hex[ob[k] >> 4];
      line[2 * k + 1] = hex[ob[k] & 15];
    }
    line[2 * TINYML_OUTPUT_BYTES] = 0;
    printf("[aot] out %ld %s\n", (long)i, line);
  }
  printf("[aot] invoke_ticks total=%lu min=%lu max=%lu n=%ld\n", (unsigned long)total, (unsigned long)lo,
         (unsigned long)hi, (long)AOT_N_VECTORS);
#if AOT_PROFILE
  for (k = 0; k < AOT_MAX_OPS; ++k)
    if (op_ticks[k]) printf("[aot] op %ld ticks %lu\n", (long)k, (unsigned long)op_ticks[k]);
#endif
  return 0;
}
