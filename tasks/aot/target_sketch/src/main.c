/* doit-tinyml AOT target check: run the generated model on every embedded test vector and print
 * the raw output bytes over semihosting, plus the timer ticks spent inside tinyml_model_invoke.
 *
 * Built by tasks/aot/target.py with the local PlatformIO platform for board mps2_an386 and run
 * under qemu-system-arm -icount (deterministic). The test vectors come from aot_vectors.h,
 * generated next to the model; the platform start-up provides tinyml_timer_ticks().
 */
#include <stdint.h>
#include <stdio.h>

#include "aot_vectors.h"
#include "tinyml_kernels.h"
#include "tinyml_model.h"

extern uint32_t tinyml_timer_ticks(void);

static TINYML_OUTPUT_CTYPE out_buf[TINYML_OUTPUT_ELEMS];

int main(void) {
  static const char hex[] = "0123456789abcdef";
  char line[2 * TINYML_OUTPUT_BYTES + 1];
  uint32_t total = 0, lo = 0xFFFFFFFFu, hi = 0;
  int32_t i, k;
  for (i = 0; i < AOT_N_VECTORS; ++i) {
    const uint8_t *ob = (const uint8_t *)out_buf;
    const uint32_t t0 = tinyml_timer_ticks();
    tinyml_model_invoke(aot_vectors[i], out_buf);
    {
      const uint32_t dt = tinyml_timer_ticks() - t0;
      total += dt;
      if (dt < lo) lo = dt;
      if (dt > hi) hi = dt;
    }
    for (k = 0; k < TINYML_OUTPUT_BYTES; ++k) {
      line[2 * k] = hex[ob[k] >> 4];
      line[2 * k + 1] = hex[ob[k] & 15];
    }
    line[2 * TINYML_OUTPUT_BYTES] = 0;
    printf("[aot] out %ld %s\n", (long)i, line);
  }
  printf("[aot] invoke_ticks total=%lu min=%lu max=%lu n=%ld\n", (unsigned long)total, (unsigned long)lo,
         (unsigned long)hi, (long)AOT_N_VECTORS);
  return 0;
}
