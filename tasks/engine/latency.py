"""Milliseconds per inference on a board, from what the inference executes under QEMU.

With an instruction profile (engine/profile.py: per translation block, the instructions by class,
the jumps taken and the data reads from code memory) the estimate is built from the parts the
issue of a real board is made of (data/timing_model.json, every figure with its source):

    core    = sum over blocks of executions x (sum over classes of count x cycles(core, class)
              + LDM/STM instructions x 1 - load/store pairs x 1) + jumps taken x P
    memory  = data reads from flash x wait(board) + jumps taken x refill(board)
    cycles  = (core x scale(core) + memory) x factor(board)
    time_ms = cycles / f_cpu_MHz / 1000

`cycles(core, class)` are the Arm Technical Reference Manuals' instruction timings (zero wait
states); P the pipeline refill of a taken branch (1-3). `wait`, `refill` and `factor` describe the
board's memory as its framework leaves it: flash wait states on data reads (the model's weights
live in flash), an instruction cache on or off, and what is left, calibrated on published on-device
measurements (docs/latency.md, bench/latency_truth.py). Low and high ends of every term give the
band; the typical values the estimate.

Without a profile (an older artifact, or a count made for another core), the count is scaled by a
cycles-per-instruction band of the core (`fallback`), wider, and said so. Pure Python.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from .boards import Board

DATA = Path(__file__).resolve().parent / "data" / "timing_model.json"
QEMU_CORE = "cortex-m4f"  # mps2_an386: Cortex-M4 with FPv4-SP
ENDS = ("low", "typical", "high")


def fmt_ms(v: float | None) -> str:
    """Milliseconds to three significant figures, zeros kept (0.0300, 1.20, 12.0), whole from 100 on;
    the one format of the firmware line and the report."""
    return "-" if v is None else f"{v:#.3g}".rstrip(".") if v < 100 else f"{v:,.0f}"


@functools.lru_cache(maxsize=1)
def model() -> dict:
    return json.loads(DATA.read_text())


def _triple(v) -> tuple[float, float, float]:
    """A figure as (low, typical, high): a number is exact, a list of 2 is (low, high), of 3 is all three."""
    if isinstance(v, (int, float)):
        return float(v), float(v), float(v)
    if len(v) == 2:
        return float(v[0]), (float(v[0]) + float(v[1])) / 2, float(v[1])
    return float(v[0]), float(v[1]), float(v[2])


def _family(core: str) -> str | None:
    for fam, v in model()["cores"].items():
        if core in v["applies_to"]:
            return fam
    return None


def _has_fpu(core: str) -> bool:
    return core in ("cortex-m4f", "cortex-m7", "cortex-m7dp", "cortex-m33", "cortex-m55")


def memory(board: Board) -> dict:
    """The board's memory class parameters (data/timing_model.json "memory")."""
    m = model()["memory"]
    return m.get(board.memory) or m["flash_cache"]


# ----------------------------------------------------------------------------------- the profile model
def core_cycles(profile: dict, fam: str) -> tuple[tuple[float, float, float], dict]:
    """(low, typical, high) core cycles of one inference and the typical cycles by class."""
    cores = model()["cores"]
    spec = cores[fam]
    base = cores[spec["like"]] if spec.get("like") else spec
    costs = {k: _triple(v) for k, v in base["classes"].items()}
    multi, paired, taken_p = (_triple(spec.get(k, base.get(k, 0))) for k in ("multi", "paired", "taken"))
    scale = _triple(spec.get("scale", 1.0))
    n = max(int(profile.get("inferences") or 1), 1)
    ends = [0.0, 0.0, 0.0]
    by_class: dict[str, float] = {}
    for b in profile["blocks"]:
        execs, taken, n_multi, n_paired, classes = b[0], b[1], b[4], b[5], b[-1]
        for i in range(3):
            c = sum(costs.get(k, costs["alu"])[i] * v for k, v in classes.items())
            c += n_multi * multi[i] - n_paired * paired[i]
            ends[i] += execs * c + taken * taken_p[i]
        for k, v in classes.items():
            by_class[k] = by_class.get(k, 0.0) + execs * v * costs.get(k, costs["alu"])[1] / n
        by_class["taken branches"] = by_class.get("taken branches", 0.0) + taken * taken_p[1] / n
    out = tuple(ends[i] * scale[i] / n for i in range(3))
    return out, {k: round(v * scale[1]) for k, v in sorted(by_class.items(), key=lambda kv: -kv[1]) if v}


def memory_cycles(profile: dict, board: Board) -> tuple[float, float, float]:
    """(low, typical, high) cycles one inference waits for flash on this board: integer data reads from flash
    (constants, int8 weights read a word at a time by SIMD kernels, whose use comes later), VFP loads from flash
    (float weights, used by the next instruction: the FPU waits for the whole flash access), and jumps whose
    target misses the instruction cache."""
    mem = memory(board)
    wait_int, wait_fp = _triple(mem.get("data_wait", 0)), _triple(mem.get("fp_data_wait", mem.get("data_wait", 0)))
    refill = _triple(mem.get("refill", 0))
    n = max(int(profile.get("inferences") or 1), 1)
    fields = profile.get("block_fields") or []
    i_fp = fields.index("code_reads_fp") if "code_reads_fp" in fields else None
    reads = sum(b[6] for b in profile["blocks"]) / n
    fp = sum(b[i_fp] for b in profile["blocks"]) / n if i_fp is not None else 0.0
    taken = sum(b[1] for b in profile["blocks"]) / n
    return tuple((reads - fp) * wait_int[i] + fp * wait_fp[i] + taken * refill[i] for i in range(3))


def estimate_from_profile(profile: dict, board: Board, *, dtype: str, source: str,
                          counted_on: str = QEMU_CORE) -> tuple[float | None, dict]:
    """(typical ms, basis) for `board` from an instruction profile counted on `counted_on`, or (None, basis with
    `why_not`)."""
    m = model()
    fam = _family(board.core)
    basis: dict[str, Any] = {"kind": "estimate", "source": source, "board": board.id, "core": board.core,
                             "cpu_mhz": board.cpu_mhz, "memory": board.memory, "dtype": dtype}
    counted_fam = _family(counted_on)
    float_model = dtype not in ("int8", "int16", "uint8")
    ok = fam is not None and fam in m["profile_cores"].get(counted_fam or "", [])
    if ok and float_model and _has_fpu(counted_on) != _has_fpu(board.core):
        ok = False
    if not ok:
        basis["why_not"] = (f"the instruction profile was counted on {counted_on}, whose code says nothing exact "
                            f"about {board.core}")
        return None, basis
    core, by_class = core_cycles(profile, fam)
    mem = memory_cycles(profile, board)
    factor = _triple(memory(board).get("factor", 1.0))
    cycles = [(core[i] + mem[i]) * factor[i] for i in range(3)]
    mhz = float(board.cpu_mhz)
    low, typical, high = (c / mhz / 1000.0 for c in cycles)
    n_instr = profile["instructions"] / max(int(profile.get("inferences") or 1), 1)
    basis.update({
        "model": "instruction mix",
        "instructions": round(n_instr), "counted_on": counted_on,
        "cycles": {"low": round(cycles[0]), "typical": round(cycles[1]), "high": round(cycles[2])},
        "core_cycles": round(core[1]), "memory_cycles": round(mem[1]), "memory_factor": factor[1],
        "cycles_by_class": dict(list(by_class.items())[:8]),
        "cycles_per_instruction": round(cycles[1] / max(n_instr, 1), 3),
        "band_ms": [round(low, 6), round(high, 6)],
        "error": f"{100 * (low / typical - 1):+.0f} % / {100 * (high / typical - 1):+.0f} %",
        "formula": "((instruction classes x core timings + taken jumps x P) x core scale + flash data reads x wait "
                   "+ taken jumps x refill) x board factor / cpu_mhz / 1000",
        "note": (f"an estimate from what the inference executes under QEMU, weighted by {fam} instruction timings "
                 f"and the {board.memory} memory of the board (data/timing_model.json); not a measurement on the board"),
    })
    return round(typical, 6), basis


# ----------------------------------------------------------------------------------- counts only
def counts_from_aot(aot: dict | None) -> dict[str, int]:
    """{core: instructions per inference} from aot.json, read defensively.

    `instructions_per_inference` is the QEMU Cortex-M4 (mps2_an386) count; a per-core count may be
    given as `targets: {<core or board>: {instructions_per_inference, core?}}` or as a list of such
    records, or `target: {core, instructions_per_inference}`.
    """
    out: dict[str, int] = {}
    for core, rec in _aot_records(aot):
        n = rec.get("instructions_per_inference")
        if isinstance(n, (int, float)) and not isinstance(n, bool) and n > 0:
            out.setdefault(core, int(n))
    if isinstance(aot, dict):
        n = aot.get("instructions_per_inference")
        if isinstance(n, (int, float)) and not isinstance(n, bool) and n > 0:
            out.setdefault(QEMU_CORE, int(n))
    return out


def profiles_from_aot(aot: dict | None) -> dict[str, dict]:
    """{core: instruction profile} of aot.json's QEMU runs (targets.<board>.profile)."""
    out: dict[str, dict] = {}
    for core, rec in _aot_records(aot):
        p = rec.get("profile")
        if isinstance(p, dict) and isinstance(p.get("blocks"), list):
            out.setdefault(core, p)
    return out


def _aot_records(aot: dict | None) -> list[tuple[str, dict]]:
    if not isinstance(aot, dict):
        return []
    recs: list[tuple[Any, str | None]] = []
    targets = aot.get("targets")
    if isinstance(targets, dict):
        recs += [(v, k) for k, v in targets.items()]
    elif isinstance(targets, list):
        recs += [(v, None) for v in targets]
    if isinstance(aot.get("target"), dict):
        recs.append((aot["target"], None))
    out = []
    for rec, key in recs:
        if not isinstance(rec, dict):
            continue
        core = str(rec.get("core") or key or "").lower()
        board = str(rec.get("board") or rec.get("machine") or "")
        if "an385" in board or "an385" in core or core in ("m3", "cortex-m3"):
            out.append(("cortex-m3", rec))
        elif "an386" in board or "an386" in core or core in ("m4", "cortex-m4", "cortex-m4f", ""):
            out.append((QEMU_CORE, rec))
        elif core.startswith("cortex-"):
            out.append((core, rec))
    return out


def estimate(counts: dict[str, int], board: Board, *, dtype: str, code: str, source: str,
             profiles: dict[str, dict] | None = None) -> tuple[float | None, dict]:
    """(typical ms, basis) for `board`, or (None, basis with `why_not`).

    profiles: {core the profile was counted on: profile}: the instruction-mix model (estimate_from_profile) when
    one was counted for the board's core or one whose code it runs; else counts: {core: instructions per
    inference} with the fallback cycles-per-instruction band (and an instruction-set ratio when the count was
    made for another core). dtype: "int8" | "float32" (the model's compute type); code: "cmsis_nn" (SIMD
    kernels) | "plain_c" (TFLM reference kernels, AOT); source: where the count comes from.
    """
    fam = _family(board.core)
    for counted, prof in (profiles or {}).items():
        if fam is not None and fam in model()["profile_cores"].get(_family(counted) or "", []):
            ms, basis = estimate_from_profile(prof, board, dtype=dtype, source=source, counted_on=counted)
            if ms is not None:
                if counts.get(counted):  # the timer's exact count of the whole call (the profile's omits the call)
                    basis["profiled_instructions"], basis["instructions"] = basis["instructions"], int(counts[counted])
                return ms, basis
    return _estimate_from_counts(counts, board, dtype=dtype, code=code, source=source)


def _estimate_from_counts(counts: dict[str, int], board: Board, *, dtype: str, code: str,
                          source: str) -> tuple[float | None, dict]:
    m = model()
    basis: dict[str, Any] = {"kind": "estimate", "source": source, "board": board.id, "core": board.core,
                             "cpu_mhz": board.cpu_mhz, "memory": board.memory, "dtype": dtype}
    fam = _family(board.core)
    if fam is None or not counts:
        basis["why_not"] = ("no instruction count" if not counts else
                            f"no cycles-per-instruction model for {board.core} ({board.arch})")
        return None, basis
    float_model = dtype not in ("int8", "int16", "uint8")
    same_isa = {"cortex-m4": ("cortex-m4f", "cortex-m4"), "cortex-m7": ("cortex-m4f",), "cortex-m33": ("cortex-m4f",),
                "cortex-m3": ("cortex-m3",), "cortex-m0+": ()}
    counted, isa = None, (1.0, 1.0, 1.0)
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
            isa = (f["low"], f["typical"], f["high"]) if code == "cmsis_nn" else (
                f["plain_c_low"], round((f["plain_c_low"] + f["typical"]) / 2, 2), f["high"])
        elif "cortex-m3" in counts and fam == "cortex-m0+":
            counted = "cortex-m3"
            f0, f3 = m["isa"]["cortex-m0+"], m["isa"]["cortex-m3"]
            isa = (round((f0["plain_c_low"] if code != "cmsis_nn" else f0["low"]) / f3["high"], 2),
                   round(f0["typical"] / f3["typical"], 2), round(f0["high"] / f3["low"], 2))
        else:
            basis["why_not"] = f"no instruction count for {board.core} or a core with its instruction set"
            return None, basis
    n = counts[counted]
    cpi = _triple(m["cores"][fam]["fallback_cpi"]["float" if float_model else "int8"])
    factor = _triple(memory(board).get("factor", 1.0))
    mhz = float(board.cpu_mhz)
    low, typical, high = (n * isa[i] * cpi[i] * factor[i] / mhz / 1000.0 for i in range(3))
    basis.update({
        "model": "cycles per instruction (no instruction profile)",
        "instructions": int(n), "counted_on": counted, "isa_factor": dict(zip(ENDS, isa)),
        "cpi": dict(zip(ENDS, cpi)), "memory_factor": factor[1], "code": code,
        "band_ms": [round(low, 6), round(high, 6)],
        "error": f"{100 * (low / typical - 1):+.0f} % / {100 * (high / typical - 1):+.0f} %",
        "formula": "instructions x isa x cpi x memory factor / cpu_mhz / 1000",
        "note": ("an estimate from an instruction count (QEMU) and a cycles-per-instruction band of the core, not a "
                 "measurement on the board" + ("" if counted == board.core or isa[1] == 1.0 else
                                              f"; the count was made for {counted} and scaled to {board.core}")),
    })
    return round(typical, 6), basis
