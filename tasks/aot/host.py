"""Host builds of the generated C: the model, the kernel library and a harness, compiled with gcc
(-std=c99 -O2 -Wall -Wextra -Werror), in the portable and the emulated-DSP variant; and running a
command with a one-line error when it fails. Used by the check, the diagnosis and the benchmarks.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from . import KERNEL_SOURCES, KERNELS_DIR
from ..engine.errors import TinyMLError
from ..engine.io import write_text

HOST_CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
_HARNESS = r"""/* host harness: read raw input records from argv[1], write raw output records to argv[2] */
#include <stdio.h>
#include "@P@_model.h"

static @P_@_INPUT_CTYPE in_buf[@P_@_INPUT_ELEMS];
static @P_@_OUTPUT_CTYPE out_buf[@P_@_OUTPUT_ELEMS];

int main(int argc, char **argv) {
  FILE *fi, *fo;
  long n = 0;
  if (argc != 3) return 2;
  fi = fopen(argv[1], "rb");
  fo = fopen(argv[2], "wb");
  if (!fi || !fo) return 3;
  while (fread(in_buf, sizeof in_buf, 1, fi) == 1) {
    if (@P@_model_invoke(in_buf, out_buf) != 0) return 4;
    if (fwrite(out_buf, sizeof out_buf, 1, fo) != 1) return 5;
    ++n;
  }
  fclose(fi);
  fclose(fo);
  printf("%ld\n", n);
  return 0;
}
"""


def harness_source(prefix: str) -> str:
    return _HARNESS.replace("@P_@", prefix.upper()).replace("@P@", prefix)


def _run(cmd: list[str], what: str, cwd: Path | None = None, timeout: int = 300) -> str:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise TinyMLError(f"{what}: '{cmd[0]}' is not installed (install it, e.g. apt-get install {cmd[0]})") from None
    if r.returncode != 0:
        raise TinyMLError(f"{what} failed (exit {r.returncode}):\n{' '.join(map(str, cmd))}\n{r.stdout}{r.stderr}")
    return r.stdout


# host builds of the kernel library: "portable" (what every core without the DSP extension runs) and
# "dsp" (the Cortex-M DSP code paths with exact C models of the instructions, tinyml_simd.h)
HOST_VARIANTS = {"portable": [], "dsp": ["-DTML_EMULATE_DSP"]}


def compile_host(gen_dir: Path, exe: Path, prefix: str = "tinyml", variant: str = "portable",
                 extra: list[str] | tuple = (), harness_src: str | None = None) -> Path:
    """Build the generated model with the kernels and the file harness; return the executable."""
    gen_dir = Path(gen_dir)
    harness = gen_dir / ("host_harness.c" if harness_src is None else "host_trace.c")
    write_text(harness, harness_source(prefix) if harness_src is None else harness_src)
    cmd = ["gcc", *HOST_CFLAGS, *HOST_VARIANTS[variant], *extra, f"-I{gen_dir}", f"-I{KERNELS_DIR}",
           str(gen_dir / f"{prefix}_model.c"), *map(str, KERNEL_SOURCES), str(harness), "-lm", "-o", str(exe)]
    _run(cmd, f"host compile of the AOT model in {gen_dir}")
    return exe
