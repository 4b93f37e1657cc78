"""Milliseconds per inference on a board, from an instruction count under QEMU.

    time_ms = instructions x isa x cpi[core][dtype] x memory[board] / f_cpu_MHz / 1000

* `instructions`: executed per inference, counted by QEMU (-icount, exact) on a build for a
  Cortex-M core (the M4 with DSP and FPU, `mps2_an386`; a Cortex-M3 count when the AOT stage
  provides one): AOT always (aot.json), the real TFLite Micro when it was linked (tflm.json).
* `isa`: 1 when the count was made for the board's instruction set; otherwise the measured ratio
  of instructions between builds of the same int8 kernels for the two cores (e.g. Cortex-M0+ runs
  3.0-3.8x the M4's instructions for CMSIS-NN int8), with a wider band for plain-C kernels.
* `cpi`: cycles per instruction of the board's core for int8 or float32 inference (data/cpi_model.json:
  calibrated on MLPerf Tiny published latencies and CoreMark; see docs/firmware.md for the sources).
* `memory`: the board's flash wait states and cache (boards.MEMORY_CLASSES).

Every figure is an estimate with a band [low, high] from the low/high ends of isa, cpi and memory;
`basis` says which count, which factors and how far off it can be. Pure Python.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from .boards import Board

DATA = Path(__file__).resolve().parent / "data" / "cpi_model.json"
QEMU_CORE = "cortex-m4f"  # mps2_an386: Cortex-M4 with FPv4-SP


@functools.lru_cache(maxsize=1)
def fmt_ms(v: float | None) -> str:
    """Milliseconds to three significant figures, zeros kept (0.0300, 1.20, 12.0), whole from 100 on;
    the one format of the firmware line and the report."""
    return "-" if v is None else f"{v:#.3g}".rstrip(".") if v < 100 else f"{v:,.0f}"


def model() -> dict:
    return json.loads(DATA.read_text())


def _family(core: str) -> str | None:
    for fam, v in model()["cores"].items():
        if core in v["applies_to"]:
            return fam
    return None


def _has_fpu(core: str) -> bool:
    return core in ("cortex-m4f", "cortex-m7", "cortex-m7dp", "cortex-m33", "cortex-m55")


def counts_from_aot(aot: dict | None) -> dict[str, int]:
    """{core: instructions per inference} from aot.json, read defensively.

    `instructions_per_inference` is the QEMU Cortex-M4 (mps2_an386) count; a per-core count may be
    given as `targets: {<core or board>: {instructions_per_inference, core?}}` or as a list of such
    records, or `target: {core, instructions_per_inference}`.
    """
    out: dict[str, int] = {}
    if not isinstance(aot, dict):
        return out

    def add(rec: Any, key: str | None = None) -> None:
        if not isinstance(rec, dict):
            return
        n = rec.get("instructions_per_inference")
        if not isinstance(n, (int, float)) or isinstance(n, bool) or n <= 0:
            return
        core = rec.get("core") or key or ""
        board = rec.get("board") or rec.get("machine") or ""
        core = str(core).lower()
        if "an385" in str(board) or "an385" in core or core in ("m3", "cortex-m3"):
            out.setdefault("cortex-m3", int(n))
        elif "an386" in str(board) or "an386" in core or core in ("m4", "cortex-m4", "cortex-m4f", ""):
            out.setdefault(QEMU_CORE, int(n))
        elif core.startswith("cortex-"):
            out.setdefault(core, int(n))

    targets = aot.get("targets")
    if isinstance(targets, dict):
        for k, v in targets.items():
            add(v, k)
    elif isinstance(targets, list):
        for v in targets:
            add(v)
    add(aot.get("target") if isinstance(aot.get("target"), dict) else None)
    n = aot.get("instructions_per_inference")
    if isinstance(n, (int, float)) and not isinstance(n, bool) and n > 0:
        out.setdefault(QEMU_CORE, int(n))
    return out


def estimate(counts: dict[str, int], board: Board, *, dtype: str, code: str, source: str) -> tuple[float | None, dict]:
    """(typical ms, basis) for `board`, or (None, basis with `why_not`).

    counts: {core the count was made for: instructions per inference}; dtype: "int8" | "float32"
    (the model's compute type); code: "cmsis_nn" (SIMD kernels) | "plain_c" (TFLM reference kernels,
    AOT); source: where the count comes from (for the basis).
    """
    m = model()
    basis: dict[str, Any] = {"source": source, "board": board.id, "core": board.core, "cpu_mhz": board.cpu_mhz,
                             "memory": board.memory, "dtype": dtype}
    fam = _family(board.core)
    if fam is None or not counts:
        basis["why_not"] = ("no instruction count" if not counts else
                            f"no cycles-per-instruction model for {board.core} ({board.arch})")
        return None, basis
    float_model = dtype not in ("int8", "int16", "uint8")
    # which count: the board's own core, else one with the same ISA, else the M4's with an ISA factor
    same_isa = {"cortex-m4": ("cortex-m4f", "cortex-m4"), "cortex-m7": ("cortex-m4f",), "cortex-m33": ("cortex-m4f",),
                "cortex-m3": ("cortex-m3",), "cortex-m0+": ()}
    counted, isa = None, {"low": 1.0, "typical": 1.0, "high": 1.0}
    for c in (board.core,) + same_isa.get(fam, ()):
        if c in counts:
            counted = c
            break
    if counted is not None and float_model and _has_fpu(counted) != _has_fpu(board.core):
        counted = None  # a hard-float count says nothing about soft-float code, and back
    if counted is None:
        if float_model:
            basis["why_not"] = (f"float32 model: the instruction count was made on "
                                f"{', '.join(sorted(counts))} and {board.core} "
                                f"{'has no' if not _has_fpu(board.core) else 'has an'} FPU; soft-float and hard-float "
                                f"code differ too much for a ratio")
            return None, basis
        if fam in m["isa"] and QEMU_CORE in counts:
            counted = QEMU_CORE
            f = m["isa"][fam]
            isa = {"low": f["low"], "typical": f["typical"], "high": f["high"]}
            if code != "cmsis_nn":
                isa = {"low": f["plain_c_low"], "typical": round((f["plain_c_low"] + f["typical"]) / 2, 2),
                       "high": f["high"]}
        elif "cortex-m3" in counts and fam == "cortex-m0+":
            counted = "cortex-m3"
            f0, f3 = m["isa"]["cortex-m0+"], m["isa"]["cortex-m3"]
            isa = {"low": round(f0["plain_c_low"] / f3["high"], 2) if code != "cmsis_nn" else round(f0["low"] / f3["high"], 2),
                   "typical": round(f0["typical"] / f3["typical"], 2), "high": round(f0["high"] / f3["low"], 2)}
        else:
            basis["why_not"] = f"no instruction count for {board.core} or a core with its instruction set"
            return None, basis
    n = counts[counted]
    cpi = m["cores"][fam]["cpi_float" if float_model else "cpi_int8"]
    mem = m["memory"].get(board.memory) or m["memory"]["flash_cache"]
    mhz = float(board.cpu_mhz)

    def ms(k: str) -> float:
        return n * isa[k] * cpi[k] * mem[k] / mhz / 1000.0

    typical, low, high = ms("typical"), ms("low"), ms("high")
    basis.update({
        "instructions": int(n), "counted_on": counted, "isa_factor": isa, "cpi": dict(cpi), "memory_factor":
        {k: mem[k] for k in ("low", "typical", "high")}, "code": code,
        "band_ms": [round(low, 4), round(high, 4)],
        "error": f"{100 * (low / typical - 1):+.0f} % / {100 * (high / typical - 1):+.0f} %",
        "formula": "instructions x isa x cpi x memory / cpu_mhz / 1000",
        "note": ("an estimate from an instruction count (QEMU) and published cycles per instruction, not a "
                 "measurement on the board" + ("" if counted == board.core or isa["typical"] == 1.0 else
                                              f"; the count was made for {counted} and scaled to {board.core}")),
    })
    return round(typical, 4), basis
