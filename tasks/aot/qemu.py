"""QEMU MPS2 targets for the AOT proof, independent of the board catalogue.

`TARGETS` maps a target id to the QEMU machine and the catalogue board it is built like:

* `mps2_an386`: Cortex-M4 with the DSP extension and FPv4-SP (the catalogue's own QEMU board);
* `mps2_an385`: Cortex-M3: no DSP extension, no FPU; the same MPS2 memory map, UART-less
  semihosting and CMSDK timer, so the same start-up code and linker script serve it. The kernel
  library compiles its portable loops for it (tinyml_simd.h), which proves them on a real Cortex-M
  instruction set, and any DSP instruction would fault there.

`run(elf, target)` is tasks.firmware.run_qemu for any of these machines.
"""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

from tasks.util import TinyMLError

TARGETS = {
    "mps2_an386": {"machine": "mps2-an386", "core": "cortex-m4f", "dsp": True, "name": "QEMU mps2-an386 (Cortex-M4)"},
    "mps2_an385": {"machine": "mps2-an385", "core": "cortex-m3", "dsp": False, "name": "QEMU mps2-an385 (Cortex-M3)"},
}
# cores whose gcc -mcpu enables the DSP extension (__ARM_FEATURE_DSP) in tasks.boards' flags
DSP_CORES = ("cortex-m4", "cortex-m4f", "cortex-m7", "cortex-m7dp", "cortex-m33", "cortex-m33nofp", "cortex-m55")


def core_has_dsp(core: str) -> bool:
    return core in DSP_CORES


def board(target: str):
    """A tasks.boards.Board for the target (the catalogue's mps2_an386 with the target's core)."""
    from tasks.boards import CATALOGUE

    if target not in TARGETS:
        raise TinyMLError(f"unknown AOT target '{target}'; known: {', '.join(TARGETS)}")
    base = CATALOGUE["mps2_an386"]
    t = TARGETS[target]
    if target == base.id:
        return base
    return dataclasses.replace(base, id=target, name=t["name"], core=t["core"], mcu="cmsdk-cm3",
                               source=f"QEMU hw/arm/mps2.c machine {t['machine']}: the same memory map as "
                                      "mps2-an386 (SSRAM1 at 0x00000000, SSRAM2/3 at 0x20000000), SYSCLK 25 MHz")


_TICKS = re.compile(r"^\[tinyml\] timer_ticks=(\d+)\s*$", re.M)


def run(elf: Path, target: str = "mps2_an386", timeout: float = 60) -> dict:
    """Run a firmware under qemu-system-arm (semihosting, -icount: deterministic timing)."""
    from tasks.firmware import QEMU_ICOUNT_SHIFT

    qemu = shutil.which("qemu-system-arm")
    if not qemu:
        raise TinyMLError("qemu-system-arm was not found on PATH: sudo apt-get install qemu-system-arm")
    cmd = [qemu, "-M", TARGETS[target]["machine"], "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native",
           "-icount", f"shift={QEMU_ICOUNT_SHIFT},align=off,sleep=off", "-kernel", str(elf)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        stdout, code, timed_out = p.stdout, p.returncode, False
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        code, timed_out = None, True
    m = _TICKS.search(stdout)
    return {"stdout": stdout, "exit_code": code, "timed_out": timed_out,
            "timer_ticks": int(m.group(1)) if m else None, "command": cmd}
