"""Firmware stage: the sketch + the variant's model, built per board with PlatformIO; size.json.

Reads the variant's artifacts (model_data.cc and analysis.json for the tflm runtime; the aot/
sources and aot.json for the aot runtime) and the sketch's src/ folder; builds with the offline
PlatformIO platform (engine.platformio); writes `firmware.elf` (+ `firmware.map`) and `size.json`:
PlatformIO's own flash/RAM figures against the board's limits, with the ELF's breakdown of where
every byte goes. Boards the local platform cannot build (Xtensa, AVR) get a marked estimate.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from .aot import KERNEL_SOURCES, KERNELS_DIR
from .engine.boards import Board
from .engine import artifacts
from .engine import elf as elfsize
from .engine import platformio
from .engine.errors import TinyMLError
from .engine.io import atomic_path

# Estimates for boards the local platform cannot build (Xtensa, AVR): what a minimal Arduino
# sketch costs on that core (PlatformIO's own figures for an empty sketch on the official
# platform) plus the inference runtime's code with a handful of kernels. Documented in
# docs/firmware.md; size.json says "estimate": true for these boards.
ESTIMATE_BASELINES: dict[tuple[str, str], dict[str, int | str]] = {
    ("xtensa", "tflm"): {"flash": 290_000, "ram": 24_000,
                         "note": "Arduino-ESP32 core (~225 KB flash, ~21 KB RAM for an empty sketch) "
                                 "+ TFLM interpreter and a few int8 kernels (~65 KB flash, ~3 KB RAM)"},
    ("xtensa", "aot"): {"flash": 235_000, "ram": 22_000,
                        "note": "Arduino-ESP32 core + ahead-of-time generated kernels (~10 KB)"},
    ("avr", "tflm"): {"flash": 60_000, "ram": 1_200,
                      "note": "TFLM has no 8-bit AVR port; Arduino AVR core (~0.5 KB) + an indicative "
                              "~60 KB for a 32-bit interpreter, i.e. it will not fit an ATmega328P"},
    ("avr", "aot"): {"flash": 4_000, "ram": 200,
                     "note": "Arduino AVR core (~0.5 KB flash, 9 B RAM) + ahead-of-time kernels (~3.5 KB)"},
}


def _fmt(n: int) -> str:
    return f"{n:,}"


def _size_record(board: Board, runtime: str, flash_used: int | None, ram_used: int | None, breakdown: dict,
                 estimate: bool, **extra) -> dict:
    """The size.json record; flash_used/ram_used None when nothing was built (the runtime cannot run it)."""
    built = flash_used is not None and ram_used is not None
    rec = {
        "board": board.id,
        "runtime": runtime,
        "estimate": estimate,
        "flash_used": int(flash_used) if built else None,
        "flash_limit": int(board.flash),
        "ram_used": int(ram_used) if built else None,
        "ram_limit": int(board.ram),
        "flash_over_by": max(0, int(flash_used) - board.flash) if built else None,
        "ram_over_by": max(0, int(ram_used) - board.ram) if built else None,
        "breakdown": breakdown,
    }
    rec["fits"] = built and rec["flash_over_by"] == 0 and rec["ram_over_by"] == 0
    rec.update(extra)
    return rec


def _summary(label: str, rec: dict) -> str:
    def pct(u, l):
        return f"{100.0 * u / l:.1f} %" if l else "n/a"

    if rec["flash_used"] is None:
        return f"{label} @ {rec['board']}: not built: {rec.get('incompatible') or 'no firmware'}"
    line = (f"{label} @ {rec['board']}: flash {_fmt(rec['flash_used'])} / {_fmt(rec['flash_limit'])} B "
            f"({pct(rec['flash_used'], rec['flash_limit'])})  RAM {_fmt(rec['ram_used'])} / "
            f"{_fmt(rec['ram_limit'])} B ({pct(rec['ram_used'], rec['ram_limit'])})  ")
    if rec.get("incompatible"):
        line += f"CANNOT RUN: {rec['incompatible']} (built for size only)"
    elif rec["fits"]:
        line += "fits"
    else:
        over = []
        if rec["flash_over_by"]:
            over.append(f"flash over by {_fmt(rec['flash_over_by'])} B")
        if rec["ram_over_by"]:
            over.append(f"RAM over by {_fmt(rec['ram_over_by'])} B")
        line += "DOES NOT FIT: " + ", ".join(over)
    if rec.get("estimate"):
        line += "  (estimate: not buildable offline)"
    return line


def _sources(sketch_dir: Path, variant_dir: Path, runtime: str) -> tuple[dict[str, Path], list[Path]]:
    """(files under the project's src/, include folders) for the sketch with this variant's model."""
    src = sketch_dir / "src"
    if not src.is_dir():
        raise TinyMLError(f"sketch {sketch_dir}: no src/ folder (a PlatformIO sketch keeps its sources in src/).")
    files = {str(p.relative_to(src)): p for p in sorted(src.rglob("*")) if p.is_file()}
    includes = [variant_dir]
    if runtime == "aot":
        aot_dir = variant_dir / "aot"
        model_c = aot_dir / "tinyml_model.c"
        if not model_c.is_file():
            raise TinyMLError(f"{model_c} is missing: the aot stage must run before the firmware stage.")
        files["tinyml_aot/tinyml_model.c"] = model_c
        files.update({f"tinyml_aot/{src.name}": src for src in KERNEL_SOURCES})
        includes += [aot_dir, KERNELS_DIR]
    else:
        cc = variant_dir / "model_data.cc"
        if not cc.is_file():
            raise TinyMLError(f"{cc} is missing: the header stage must write it before the firmware stage runs.")
        files["tinyml_model/model_data.cc"] = cc
    if (sketch_dir / "include").is_dir():
        includes.append(sketch_dir / "include")
    return files, includes


def _model_figures(variant_dir: Path, runtime: str) -> tuple[int, int]:
    """(model bytes in flash, arena bytes in RAM) from the variant's artifacts (for estimates)."""
    if runtime == "aot":
        aot = artifacts.read_dict(variant_dir / "aot.json", artifacts.Aot)
        return int(aot["weights_bytes"]) + int(aot.get("tables_bytes") or 0), int(aot["planned_bytes"])
    a = artifacts.read_dict(variant_dir / "analysis.json", artifacts.Analysis)
    arena = (a.get("arena") or {}).get("bytes")
    if arena is None:  # TFLM cannot run it: the header sized its arena from the activation peak
        from .engine.tflm import arena_bytes

        arena = arena_bytes(int(a.get("peak_alive_bytes") or 0), float(a.get("arena_margin", 0.10))) or 16
    return int(a["tflite_bytes"]), int(arena)


def run(sketch_dir: Path, variant_dir: Path, board: Board, out_dir: Path, core_dir: Path, *,
        runtime: str = "tflm", fail_on_overflow: bool = False, label: str | None = None,
        quiet: bool = False) -> dict:
    """Build `sketch_dir` with the model of `variant_dir` for `board`; write firmware.elf + size.json.

    Returns the size.json record. A firmware that does not fit is reported (not raised) unless
    `fail_on_overflow`. Boards the local platform cannot build get an estimate ("estimate": true).
    """
    sketch_dir, variant_dir, out_dir = Path(sketch_dir), Path(variant_dir), Path(out_dir)
    # a failed build must not leave the previous size.json for the report to show as current
    for stale in ("size.json", "firmware.elf", "firmware.map"):
        (out_dir / stale).unlink(missing_ok=True)
    label = label or f"{variant_dir.parent.name}/{variant_dir.name}"
    if runtime != "tflm":
        label = f"{label} ({runtime})"
    why = _cannot_run(variant_dir, runtime)
    if why and runtime == "aot":   # no C was generated: nothing to build or estimate
        rec = _size_record(board, runtime, None, None, {}, False)
    elif not board.buildable_offline:
        rec = _estimate(board, variant_dir, runtime)
    else:
        files, includes = _sources(sketch_dir, variant_dir, runtime)
        define = f"TINYML_RUNTIME_{re.sub(r'[^A-Za-z0-9]', '_', runtime).upper()}"
        res = platformio.build(out_dir / "pio", board, core_dir, files, include_dirs=includes, defines=[define],
                               what=f"{sketch_dir} with {label}")
        with atomic_path(out_dir / "firmware.elf") as tmp:
            shutil.copyfile(res.elf, tmp)
        if res.map is not None:
            with atomic_path(out_dir / "firmware.map") as tmp:
                shutil.copyfile(res.map, tmp)
        bd = elfsize.breakdown(out_dir / "firmware.elf", board)
        extra = {"linker_overflow": dict(res.linker_overflow)} if res.linker_overflow else {}
        rec = _size_record(board, runtime, res.flash_used, res.ram_used, bd, False, **extra)
    if why:  # built for the size comparison, but the runtime cannot run it: never "fits"
        rec.update(fits=False, incompatible=why)
    record = artifacts.Size(**rec)
    artifacts.write(out_dir / "size.json", record)
    rec = record.to_dict()
    line = _summary(label, rec)
    if not quiet:
        print(line, flush=True)
    if fail_on_overflow and not rec["fits"] and not why:
        raise TinyMLError(f"{line} (fail_if_too_big is set: shrink the model or its arena, or pick a bigger board)")
    return rec


def _cannot_run(variant_dir: Path, runtime: str) -> str | None:
    """Why `runtime` cannot run this variant (from analysis.json or aot.json), or None."""
    if runtime == "aot":
        aot = artifacts.read_dict(variant_dir / "aot.json", artifacts.Aot)
        return None if aot["supported"] else f"the AOT compiler cannot take it ({aot.get('reason')})"
    if runtime != "tflm":
        return None
    a = artifacts.read_dict(variant_dir / "analysis.json", artifacts.Analysis)
    if a["tflm_compatible"]:
        return None
    first = next((p for p in a["problems"] if p.get("severity") == "error"), None) or {}
    what = ": ".join(str(x) for x in (first.get("op") or first.get("tensor"), first.get("message")) if x)
    return f"TFLite Micro cannot run it ({what or 'see analysis.json'})"


def _estimate(board: Board, variant_dir: Path, runtime: str) -> dict:
    base = ESTIMATE_BASELINES.get((board.arch, runtime)) or ESTIMATE_BASELINES.get((board.arch, "tflm"))
    if base is None:
        raise TinyMLError(f"board {board.id}: arch {board.arch!r} cannot be built offline and has no size estimate.")
    model, arena = _model_figures(variant_dir, runtime)
    bd = {"flash": {"model": model, "inference": 0, "application": int(base["flash"])},
          "ram": {"arena": arena, "stack_heap": 0, "application": int(base["ram"])}}
    return _size_record(board, runtime, model + int(base["flash"]), arena + int(base["ram"]), bd, True,
                        estimate_basis=f"model bytes + arena + baseline for {board.arch}/{runtime}: {base['note']}")
