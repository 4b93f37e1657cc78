"""Run a firmware on QEMU's Cortex-M4 (`mps2-an386`) with semihosting; count its instructions.

With `-icount shift=6` every instruction advances virtual time by 64 ns, and the CMSDK timer that
the platform's start-up code reads (`tinyml_timer_ticks()`, 25 MHz) ticks every 40 ns, so
instructions = ticks * 40 / 64, exact to one instruction; identical runs give identical counts.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .errors import TinyMLError

QEMU_HINT = "sudo apt-get install qemu-system-arm"


_TICKS = re.compile(r"^\[tinyml\] timer_ticks=(\d+)\s*$", re.M)
QEMU_ICOUNT_SHIFT = 6  # 1 instruction = 2**6 ns of virtual time; the 25 MHz timer ticks every 40 ns


def run_qemu(elf: Path, timeout: float = 60, machine: str = "mps2-an386", args: list[str] | None = None,
             plugin: str | None = None) -> dict:
    """Run an `mps2_an386` firmware under qemu-system-arm with semihosting; deterministic timing.

    Returns {"stdout", "exit_code", "timed_out", "timer_ticks", "instructions"}. With
    `-icount shift=6` every instruction advances virtual time by 64 ns and the CMSDK timer
    (25 MHz) that the start-up code reads ticks every 40 ns, so instructions = ticks * 40 / 64
    (exact to one instruction) and identical runs give identical counts. `args` become the
    program's semihosting command line (SYS_GET_CMDLINE: "fw arg1 arg2 ..."). `plugin`: a TCG plugin
    and its arguments (`-plugin`, engine.profile).
    """
    qemu = shutil.which("qemu-system-arm")
    if not qemu:
        raise TinyMLError("qemu-system-arm was not found on PATH: sudo apt-get install qemu-system-arm")
    cmd = [qemu, "-M", machine, "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native" + "".join(f",arg={a}" for a in (["fw"] + list(args) if args else [])),
           "-icount", f"shift={QEMU_ICOUNT_SHIFT},align=off,sleep=off",
           "-kernel", str(elf)] + (["-plugin", plugin] if plugin else [])
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        stdout, stderr, code, timed_out = p.stdout, p.stderr, p.returncode, False
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        stderr = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        code, timed_out = None, True
    m = _TICKS.search(stdout)
    ticks = int(m.group(1)) if m else None
    instructions = round(ticks * 40 / (1 << QEMU_ICOUNT_SHIFT)) if ticks is not None else None
    return {"stdout": stdout, "stderr": stderr, "exit_code": code, "timed_out": timed_out,
            "timer_ticks": ticks, "instructions": instructions, "command": cmd}
