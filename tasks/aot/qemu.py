"""QEMU MPS2 targets for the AOT proof, independent of the board catalogue.

`TARGETS` maps a target id to the QEMU machine and the catalogue board it is built like:

* `mps2_an386`: Cortex-M4 with the DSP extension and FPv4-SP (the catalogue's own QEMU board);
* `mps2_an385`: Cortex-M3: no DSP extension, no FPU; the same MPS2 memory map, UART-less
  semihosting and CMSDK timer, so the same start-up code and linker script serve it. The kernel
  library compiles its portable loops for it (tinyml_simd.h), which proves them on a real Cortex-M
  instruction set, and any DSP instruction would fault there.

`run(elf, target)` is engine.qemu.run_qemu on the target's machine.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..engine import qemu as _qemu
from ..engine.errors import TinyMLError

QEMU_ICOUNT_SHIFT = _qemu.QEMU_ICOUNT_SHIFT

TARGETS = {
    "mps2_an386": {"machine": "mps2-an386", "core": "cortex-m4f", "dsp": True, "name": "QEMU mps2-an386 (Cortex-M4)"},
    "mps2_an385": {"machine": "mps2-an385", "core": "cortex-m3", "dsp": False, "name": "QEMU mps2-an385 (Cortex-M3)"},
}
# cores whose gcc -mcpu enables the DSP extension (__ARM_FEATURE_DSP) in tasks.boards' flags
DSP_CORES = ("cortex-m4", "cortex-m4f", "cortex-m7", "cortex-m7dp", "cortex-m33", "cortex-m33nofp", "cortex-m55")


def core_has_dsp(core: str) -> bool:
    return core in DSP_CORES


def board(target: str):
    """An engine.boards.Board for the target (the catalogue's mps2_an386 with the target's core)."""
    from ..engine.boards import CATALOGUE

    if target not in TARGETS:
        raise TinyMLError(f"unknown AOT target '{target}'; known: {', '.join(TARGETS)}")
    base = CATALOGUE["mps2_an386"]
    t = TARGETS[target]
    if target == base.id:
        return base
    return dataclasses.replace(base, id=target, name=t["name"], core=t["core"], mcu="cmsdk-cm3",
                               source=f"QEMU hw/arm/mps2.c machine {t['machine']}: the same memory map as "
                                      "mps2-an386 (SSRAM1 at 0x00000000, SSRAM2/3 at 0x20000000), SYSCLK 25 MHz")


def run(elf: Path, target: str = "mps2_an386", timeout: float = 60) -> dict:
    """Run a firmware on the target's QEMU machine (engine.qemu: semihosting, -icount)."""
    if target not in TARGETS:
        raise TinyMLError(f"unknown AOT target '{target}'; known: {', '.join(TARGETS)}")
    return _qemu.run_qemu(elf, timeout=timeout, machine=TARGETS[target]["machine"])
