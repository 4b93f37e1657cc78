"""Ahead-of-time C inference: compile a .tflite to plain C99 (no interpreter, no malloc).

`generate.generate` writes the model's C source, `plan.plan_memory` lays out the activation
arena offline, `check.host_check` / `check.target_check` prove the result bit-exact against the
real TFLite Micro interpreter on the host and under QEMU's Cortex-M4. Nothing here imports numpy
or TensorFlow at module import time.
"""
from pathlib import Path

KERNELS_DIR = Path(__file__).resolve().parent / "kernels"
# the kernel library's C sources (every firmware and host build compiles all of them; the core picks
# DSP or portable inner loops at compile time, see kernels/tinyml_simd.h)
KERNEL_SOURCES = [KERNELS_DIR / "tinyml_kernels.c", KERNELS_DIR / "tinyml_kernels_packed.c"]
