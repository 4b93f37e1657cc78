"""Firmware stage: the sketch + the variant's model, built per board with PlatformIO; size.json.

Reads the variant's artifacts (model_data.cc and analysis.json for the tflm runtime; the aot/
sources and aot.json for the aot runtime; tflm.json when the real TFLite Micro was measured on the
emulated target) and the sketch; writes `firmware.elf` (+ `firmware.map`) and `size.json`:
PlatformIO's own flash/RAM figures against the board's limits, with the ELF's breakdown of where
every byte goes and the time per inference. Four ways to a firmware, one record:

* the sketch's own platformio.ini environment (`envs`): built as it is, with the variant's files
  injected (engine.platformio.build_env); its platform, framework and lib_deps are the user's;
* a generated project against doit's local platform, with the real TFLite Micro linked from the
  user's library tree (engine.tflm_link) for the tflm runtime when one is configured or found;
* the same without a TFLM library: the model and the arena are measured, the interpreter is added
  from a table of real links (engine.tflm_size), and the record says "estimate";
* boards the local platform cannot build (Xtensa, AVR): a marked estimate.

A tflm firmware whose ELF does not contain the interpreter (whatever built it) gets the interpreter
estimate added and is marked as an estimate: a silent understatement is a bug.
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
from .engine.latency import fmt_ms

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

INTERPRETER_SYMBOL = re.compile(rb"MicroInterpreter")


def _fmt(n: int) -> str:
    return f"{n:,}"


def _size_record(board: Board, runtime: str, flash_used: int | None, ram_used: int | None, breakdown: dict,
                 estimate: bool, *, flash_limit: int | None = None, ram_limit: int | None = None, **extra) -> dict:
    """The size.json record; flash_used/ram_used None when nothing was built (the runtime cannot run it)."""
    built = flash_used is not None and ram_used is not None
    flash_limit = int(flash_limit if flash_limit else board.flash)
    ram_limit = int(ram_limit if ram_limit else board.ram)
    rec = {
        "board": board.id,
        "runtime": runtime,
        "estimate": estimate,
        "flash_used": int(flash_used) if built else None,
        "flash_limit": flash_limit,
        "ram_used": int(ram_used) if built else None,
        "ram_limit": ram_limit,
        "flash_over_by": max(0, int(flash_used) - flash_limit) if built else None,
        "ram_over_by": max(0, int(ram_used) - ram_limit) if built else None,
        "breakdown": breakdown,
    }
    rec["fits"] = built and rec["flash_over_by"] == 0 and rec["ram_over_by"] == 0
    rec.update({k: v for k, v in extra.items() if v is not None})
    return rec


def _summary(label: str, rec: dict) -> str:
    def pct(u, l):
        return f"{100.0 * u / l:.1f} %" if l else "n/a"

    if rec["flash_used"] is None:
        return f"{label} @ {rec['board']}: not built: {rec.get('incompatible') or 'no firmware'}"
    est = "~" if rec.get("estimate") else ""
    line = (f"{label} @ {rec['board']}: flash {est}{_fmt(rec['flash_used'])} / {_fmt(rec['flash_limit'])} B "
            f"({pct(rec['flash_used'], rec['flash_limit'])})  RAM {est}{_fmt(rec['ram_used'])} / "
            f"{_fmt(rec['ram_limit'])} B ({pct(rec['ram_used'], rec['ram_limit'])})  ")
    if rec.get("latency_ms") is not None:
        band = (rec.get("latency_basis") or {}).get("band_ms") or []
        line += f"~{fmt_ms(rec['latency_ms'])} ms/inference" + (f" ({fmt_ms(band[0])}-{fmt_ms(band[1])})" if len(band) == 2 else "") + "  "
    if rec.get("incompatible"):
        line += f"CANNOT RUN: {rec['incompatible']} (built for size only)"
    elif rec["fits"]:
        line += "fits" + (" (estimate)" if rec.get("estimate") else "")
    else:
        over = []
        if rec["flash_over_by"]:
            over.append(f"flash over by {_fmt(rec['flash_over_by'])} B")
        if rec["ram_over_by"]:
            over.append(f"RAM over by {_fmt(rec['ram_over_by'])} B")
        line += "DOES NOT FIT: " + ", ".join(over) + (" (estimate)" if rec.get("estimate") else "")
    where = f"environment {rec['env']['name']}" if rec.get("env") else None
    if rec.get("estimate"):
        line += "  [" + (f"{where}; " if where else "") + _estimate_note(rec) + "]"
    elif where:
        line += f"  [{where}]"
    elif (rec.get("tflm") or {}).get("linked"):
        line += f"  [real TFLite Micro, {rec['tflm']['kernels']}]"
    return line


def _sources(sketch_dir: Path, variant_dir: Path, runtime: str) -> tuple[dict[str, Path], list[Path]]:
    """(files under the project's src/, include folders) for the sketch with this variant's model."""
    src = sketch_dir / "src"
    if not src.is_dir():
        raise TinyMLError(f"sketch {sketch_dir}: no src/ folder (a PlatformIO sketch keeps its sources in src/).")
    files = {str(p.relative_to(src)): p for p in sorted(src.rglob("*")) if p.is_file()}
    extra, includes = model_files(variant_dir, runtime)
    files.update(extra)
    if (sketch_dir / "include").is_dir():
        includes.append(sketch_dir / "include")
    return files, includes


def _estimate_note(rec: dict) -> str:
    """What is estimated, in a few words (size.json's estimate_basis has the whole basis)."""
    ie = rec.get("interpreter_estimate")
    if ie:
        others = ", ".join(f"{g} {_fmt(o['flash'])} B" for g, o in (ie.get("other_generations") or {}).items())
        return (f"estimate: the interpreter's {_fmt(ie['flash'])} B flash, {_fmt(ie['ram'])} B RAM from the table "
                f"of real links ({ie['config']}, never below them, at most +{ie['error_pct']} %"
                + (f"; the other generation: {others}" if others else "") + "); link a TFLM library to measure it")
    basis = " ".join((rec.get("estimate_basis") or "no basis recorded").split())
    return "estimate: " + (basis if len(basis) <= 110 else basis[:110].rsplit(" ", 1)[0] + " ... (size.json)")


def model_files(variant_dir: Path, runtime: str) -> tuple[dict[str, Path], list[Path]]:
    """The variant's generated sources (project-relative name -> file) and include folders."""
    includes: list[Path] = [variant_dir]
    files: dict[str, Path] = {}
    if runtime == "aot":
        aot_dir = variant_dir / "aot"
        model_c = aot_dir / "tinyml_model.c"
        if not model_c.is_file():
            raise TinyMLError(f"{model_c} is missing: the aot stage must run before the firmware stage.")
        files["tinyml_aot/tinyml_model.c"] = model_c
        files.update({f"tinyml_aot/{src.name}": src for src in KERNEL_SOURCES})
        includes += [aot_dir, KERNELS_DIR]
        return files, includes
    cc = variant_dir / "model_data.cc"
    if not cc.is_file():
        raise TinyMLError(f"{cc} is missing: the header stage must write it before the firmware stage runs.")
    files["tinyml_model/model_data.cc"] = cc
    return files, includes


_RECORDS: dict[tuple, dict] = {}


def _variant_record(variant_dir: Path, cls: type[artifacts.Record]) -> dict:
    """The variant's analysis.json or aot.json as a dict, read once per version of the file (the helpers
    below each need it; keyed by size and mtime, so a rebuilt file is read again)."""
    path = Path(variant_dir) / cls.FILE.rsplit("/", 1)[1]
    try:
        st = path.stat()
    except OSError:
        return artifacts.read_dict(path, cls)  # raises the artifact's own "is missing: run doit ..." error
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _RECORDS:
        if len(_RECORDS) > 64:
            _RECORDS.clear()
        _RECORDS[key] = artifacts.read_dict(path, cls)
    return dict(_RECORDS[key])


def _model_figures(variant_dir: Path, runtime: str) -> tuple[int, int]:
    """(model bytes in flash, arena bytes in RAM) from the variant's artifacts (for estimates)."""
    if runtime == "aot":
        aot = _variant_record(variant_dir, artifacts.Aot)
        return int(aot["weights_bytes"]) + int(aot.get("tables_bytes") or 0), int(aot["planned_bytes"])
    a = _variant_record(variant_dir, artifacts.Analysis)
    arena = (a.get("arena") or {}).get("bytes")
    if arena is None:  # TFLM cannot run it: the header sized its arena from the activation peak
        from .engine.tflm import arena_bytes

        arena = arena_bytes(int(a.get("peak_alive_bytes") or 0), float(a.get("arena_margin", 0.10))) or 16
    return int(a["tflite_bytes"]), int(arena)


def run(sketch_dir: Path, variant_dir: Path, board: Board, out_dir: Path, core_dir: Path, *,
        runtime: str = "tflm", fail_on_overflow: bool = False, label: str | None = None,
        quiet: bool = False, env: str | None = None, tflm: dict | None = None,
        tflm_cache: Path | None = None) -> dict:
    """Build `sketch_dir` with the model of `variant_dir` for `board`; write firmware.elf + size.json.

    `env`: build this environment of the sketch's own platformio.ini instead of a generated project.
    `tflm`: {library, kernels, reference_kernels} of a TFLite Micro tree, linked into a generated
    project of the tflm runtime (its tflm.json gives the time per inference); without `library` the
    interpreter is estimated for `kernels`. `tflm_cache`: where prebuilt
    TFLM archives are kept. Returns the size.json record. A firmware that does not fit is reported
    (not raised) unless `fail_on_overflow`.
    """
    sketch_dir, variant_dir, out_dir = Path(sketch_dir), Path(variant_dir), Path(out_dir)
    wrong = None
    # a failed build must not leave the previous size.json for the report to show as current
    for stale in ("size.json", "firmware.elf", "firmware.map"):
        (out_dir / stale).unlink(missing_ok=True)
    label = label or f"{variant_dir.parent.name}/{variant_dir.name}"
    if runtime != "tflm":
        label = f"{label} ({runtime})"
    define = f"TINYML_RUNTIME_{re.sub(r'[^A-Za-z0-9]', '_', runtime).upper()}"
    extra: dict = {}
    lib = None
    no_c = _cannot_run(variant_dir, runtime) if runtime == "aot" else None
    if no_c:   # the AOT compiler wrote no C: nothing to build or estimate
        rec = _size_record(board, runtime, None, None, {}, False)
    elif env is not None:
        files, includes = model_files(variant_dir, runtime)
        sources, defines, link_flags = list(files.values()), [define], []
        overrides = {}
        if board.custom:  # [boards.<id>] flash/ram in tinyml.toml reach PlatformIO's own lines
            overrides = {"upload.maximum_size": board.flash, "upload.maximum_ram_size": board.ram}
        local = None
        if runtime == "tflm":  # an environment on doit's local platform links the configured TFLM, prebuilt
            local = local_tflm(sketch_dir, env, tflm, board, variant_dir,
                               tflm_cache or (Path(core_dir).parent / ".tinyml" / "tflm-lib"))
        if local is not None:
            lib, wrong = local["library"], local["wrong"]
            sources += list(local["sources"].values())
            includes += local["include_dirs"]
            defines += local["defines"]
            link_flags = local["link_flags"]
        res = platformio.build_env(sketch_dir, env, core_dir, out_dir / "env", include_dirs=includes,
                                   sources=sources, defines=defines, board_overrides=overrides,
                                   model_dir=variant_dir, what=f"{label} @ {board.id}", link_flags=link_flags)
        rec = _from_build(res, board, runtime, out_dir, env_build=True)
        if runtime == "tflm" and local is None:  # the environment's own TFLM (lib_deps): the same check
            wrong = _env_tflm_check(sketch_dir, env, core_dir, variant_dir, rec.get("elf"))
        extra["env"] = {"name": env, "platformio_ini": str(sketch_dir / "platformio.ini"),
                        "limits": "PlatformIO's own (the environment's board manifest"
                                  + (", with tinyml.toml's [boards] override)" if overrides else ")")}
    elif not board.buildable_offline:
        rec = _estimate(board, variant_dir, runtime)
    else:
        files, includes = _sources(sketch_dir, variant_dir, runtime)
        defines, link_flags = [define], []
        if runtime == "tflm" and tflm and tflm.get("library"):  # link the real TFLite Micro
            lib, wrong = _tflm_library(tflm, board, variant_dir,
                                       tflm_cache or (Path(core_dir).parent / ".tinyml" / "tflm-lib"))
            from .engine.tflm_link import app_settings

            app = app_settings(lib)
            files.update(app["sources"])
            includes += app["include_dirs"]
            defines += app["defines"]
            link_flags = app["link_flags"]
        res = platformio.build(out_dir / "pio", board, core_dir, files, include_dirs=includes, defines=defines,
                               link_flags=link_flags, what=f"{sketch_dir} with {label}")
        rec = _from_build(res, board, runtime, out_dir, env_build=False)
    if lib is not None:
        from .engine.tflm_link import describe

        extra["tflm"] = {"linked": True, **describe(lib),
                         "framework": "none: bare metal with doit's minimal Arduino API (tflm_port/Arduino.h); an "
                                      "Arduino core is not included (build the sketch's own environment for that)"}
    if runtime == "tflm" and "elf" in rec:
        if not has_interpreter(rec.pop("elf")):
            _add_interpreter_estimate(rec, board, variant_dir, tflm, env)
    rec.pop("elf", None)
    rec.update(extra)
    if not no_c:
        _latency(rec, board, variant_dir, runtime, tflm)
    why = wrong or _cannot_run(variant_dir, runtime, lib, rec)
    if why:  # built for the size comparison, but the runtime cannot run it: never "fits"
        rec.update(fits=False, incompatible=why)
    if board.max_latency_ms is not None:
        rec["max_latency_ms"] = float(board.max_latency_ms)
    record = artifacts.Size(**rec)
    artifacts.write(out_dir / "size.json", record)
    rec = record.to_dict()  # what size.json holds
    line = _summary(label, rec)
    if not quiet:
        print(line, flush=True)
    if fail_on_overflow and not rec["fits"] and not why:
        raise TinyMLError(f"{line} (fail_if_too_big is set: shrink the model or its arena, or pick a bigger board)")
    return rec


def _from_build(res, board: Board, runtime: str, out_dir: Path, *, env_build: bool) -> dict:
    """size record fields of a PlatformIO build (copies the ELF and map beside size.json)."""
    with atomic_path(out_dir / "firmware.elf") as tmp:
        shutil.copyfile(res.elf, tmp)
    if res.map is not None:
        with atomic_path(out_dir / "firmware.map") as tmp:
            shutil.copyfile(res.map, tmp)
    bd = elfsize.breakdown(out_dir / "firmware.elf", board)
    if env_build:  # another platform's sections: keep the parts we can name, the rest is application
        for what, used in (("flash", res.flash_used), ("ram", res.ram_used)):
            parts = bd[what]
            named = sum(v for k, v in parts.items() if k != "application")
            if named > used:
                parts.update({k: 0 for k in parts})
                parts["application"] = used
            else:
                parts["application"] = used - named
    limits = getattr(res, "limits", None) or {}
    rec = _size_record(board, runtime, res.flash_used, res.ram_used, bd, False,
                       flash_limit=limits.get("flash") if env_build else None,
                       ram_limit=limits.get("ram") if env_build else None,
                       linker_overflow=dict(res.linker_overflow) if res.linker_overflow else None,
                       firmware_sha256=elfsize.content_sha256(out_dir / "firmware.elf"))
    rec["elf"] = out_dir / "firmware.elf"
    return rec


def local_tflm(sketch_dir: Path, env: str, tflm: dict | None, board: Board, variant_dir: Path,
               cache: Path) -> dict | None:
    """What an environment of the sketch adds to link the configured TFLite Micro when it builds on doit's own
    local platform (`platform = symlink://${sysenv.TINYML_LOCAL_PLATFORM}`, which has no framework to bring
    one): {library, wrong, include_dirs, defines, link_flags, sources}; None for any other environment (its
    own lib_deps bring TFLM) or when no TFLM library is configured."""
    if not tflm or not tflm.get("library"):
        return None
    from .engine.pio_ini import read_envs

    platform = read_envs(Path(sketch_dir) / "platformio.ini").get(env, {}).get("platform", "")
    if "TINYML_LOCAL_PLATFORM" not in platform:
        return None
    from .engine.tflm_link import app_settings

    lib, wrong = _tflm_library(tflm, board, variant_dir, cache)
    return {"library": lib, "wrong": wrong, **app_settings(lib)}


def _env_tflm_check(sketch_dir: Path, env: str, core_dir: Path, variant_dir: Path, elf: Path | None) -> str | None:
    """The compatibility check of the TFLM tree an environment's own lib_deps linked (PlatformIO's copy in the
    build folder's workspace, or the sketch's .pio/libdeps), as for every other route that links TFLM."""
    if elf is None or not has_interpreter(elf):
        return None
    from .engine import tflm_link

    ws = platformio.workspace_dir(core_dir, sketch_dir)
    for base in (ws / "libdeps" / env, Path(sketch_dir) / ".pio" / "libdeps" / env):
        for cand in sorted(base.glob("*")) if base.is_dir() else []:
            if cand.is_dir() and tflm_link.looks_like_tflm(cand):
                try:
                    tree = tflm_link.find_tree(cand)
                except TinyMLError:
                    continue
                return tflm_link.check_model(tree, (variant_dir / "model.tflite").read_bytes())
    return None


def _tflm_library(tflm: dict, board: Board, variant_dir: Path, cache: Path):
    """(the prebuilt TFLM archive for this board's core (built once), why this tree computes the model wrongly or None)."""
    from .engine import tflm_link

    tree = tflm_link.find_tree(tflm["library"], reference_kernels=tflm.get("reference_kernels"))
    why = tflm_link.check_model(tree, (variant_dir / "model.tflite").read_bytes())
    lib = tflm_link.build_library(tree, tflm.get("kernels") or "cmsis_nn", board.gcc_flags, Path(cache), core=board.core)
    return lib, why


def has_interpreter(elf: Path) -> bool:
    """Does the linked ELF contain TFLite Micro's interpreter (its symbols)?"""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    with open(elf, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        if not isinstance(symtab, SymbolTableSection):
            return False
        return any(INTERPRETER_SYMBOL.search(s.name.encode()) and s["st_info"]["type"] == "STT_FUNC"
                   for s in symtab.iter_symbols())


def _add_interpreter_estimate(rec: dict, board: Board, variant_dir: Path, tflm: dict | None, env: str | None) -> None:
    """The firmware holds the model and the arena but no interpreter: add it from the table, say so."""
    from .engine import tflm_size

    a = _variant_record(variant_dir, artifacts.Analysis)
    kernels = (tflm or {}).get("kernels") or "cmsis_nn"
    est = tflm_size.estimate(board.core, kernels, list(a.get("ops") or []))
    measured = {"flash_used": rec["flash_used"], "ram_used": rec["ram_used"]}
    where = f"environment {env!r}" if env else "the offline build"
    if est is None:
        rec["estimate"] = True
        rec["estimate_basis"] = (f"{where} has no TFLite Micro interpreter and the table has no configuration for "
                                 f"{board.core}: flash and RAM are the model and the arena only, an UNDERSTATEMENT")
        return
    rec["flash_used"] += est["flash"]
    rec["ram_used"] += est["ram"]
    rec["flash_over_by"] = max(0, rec["flash_used"] - rec["flash_limit"])
    rec["ram_over_by"] = max(0, rec["ram_used"] - rec["ram_limit"])
    rec["fits"] = rec["flash_over_by"] == 0 and rec["ram_over_by"] == 0
    rec["breakdown"]["flash"]["inference"] = rec["breakdown"]["flash"].get("inference", 0) + est["flash"]
    rec["breakdown"]["ram"]["application"] = rec["breakdown"]["ram"].get("application", 0) + est["ram"]
    rec["estimate"] = True
    rec["estimate_basis"] = (f"measured {where} (model, arena, sketch: flash {measured['flash_used']:,} B, RAM "
                             f"{measured['ram_used']:,} B) + {est['basis']}. Give a TFLM library (tflm = {{ library = ... }} or "
                             f"TINYML_TFLM_DIR) to measure it")
    rec["interpreter_estimate"] = {"flash": est["flash"], "ram": est["ram"], "config": est["config"],
                                   "generation": est["generation"], "error_pct": est["error_pct"],
                                   "unmeasured_ops": est["unmeasured_ops"], "other_generations": est["other_generations"],
                                   "measured_without": measured}


def _compute_dtype(variant_dir: Path) -> str:
    """int8 unless a compute op works in float32 (QUANTIZE/DEQUANTIZE at the edges do not count)."""
    try:
        a = _variant_record(variant_dir, artifacts.Analysis)
    except TinyMLError:
        return "float32"
    for layer in a.get("layers") or []:
        if layer.get("op") in ("QUANTIZE", "DEQUANTIZE"):
            continue
        for t in layer.get("outputs") or []:
            if str(t.get("dtype", "")).lower() in ("float32", "float16"):
                return "float32"
    return "int8"


def _latency(rec: dict, board: Board, variant_dir: Path, runtime: str, tflm: dict | None) -> None:
    """latency_ms + latency_basis from what the inference executes under QEMU (AOT: aot.json; TFLM: tflm.json):
    its instruction profile where one was recorded, else its instruction count."""
    from .engine import latency

    counts, profiles, source, code = {}, {}, "", "plain_c"
    if runtime == "aot":
        try:
            aot = _variant_record(variant_dir, artifacts.Aot)
        except (OSError, ValueError, TinyMLError):
            aot = None
        counts, profiles = latency.counts_from_aot(aot), latency.profiles_from_aot(aot)
        source = "aot.json: the AOT C model under QEMU (mps2_an386 Cortex-M4, mps2_an385 Cortex-M3; -icount)"
    elif runtime == "tflm" and tflm is not None and tflm.get("library"):
        path = variant_dir / "tflm.json"
        try:
            t = artifacts.read_dict(path, artifacts.TflmTarget) if path.is_file() else None
        except TinyMLError:
            t = None
        if t and t.get("kernels") == tflm.get("kernels") and t.get("instructions_per_inference"):
            counts = {latency.QEMU_CORE: int(t["instructions_per_inference"])}
            if isinstance(t.get("profile"), dict) and isinstance(t["profile"].get("blocks"), list):
                profiles = {latency.QEMU_CORE: t["profile"]}
            source = (f"tflm.json: the real TFLite Micro ({t['kernels']} kernels) under QEMU (mps2_an386, -icount), "
                      f"{t['samples']} test vectors")
            code = "cmsis_nn" if t["kernels"] == "cmsis_nn" else "plain_c"
    if not counts:
        if runtime == "tflm":
            rec["latency_basis"] = {"why_not": "no TFLite Micro instruction count: link a TFLM library (tflm = { library "
                                               "= ... } or TINYML_TFLM_DIR) so the tflm stage counts it on the emulated "
                                               "target", "why_short": "no TFLM library"}
        else:
            rec["latency_basis"] = {"why_not": "aot.json has no instruction count (the QEMU proof did not run)",
                                    "why_short": "no count"}
        return
    ms, basis = latency.estimate(counts, board, dtype=_compute_dtype(variant_dir), code=code, source=source,
                                 profiles=profiles)
    if ms is None and "why_short" not in basis:
        basis["why_short"] = "not estimable for " + board.core
    rec["latency_basis"] = basis
    if ms is not None:
        rec["latency_ms"] = ms


def _cannot_run(variant_dir: Path, runtime: str, lib=None, rec: dict | None = None) -> str | None:
    """Why `runtime` cannot run this variant (aot.json; analysis.json; the target check of the linked TFLM), or None."""
    if runtime == "aot":
        aot = _variant_record(variant_dir, artifacts.Aot)
        return None if aot["supported"] else f"the AOT compiler cannot take it ({aot.get('reason')})"
    if runtime != "tflm":
        return None
    a = _variant_record(variant_dir, artifacts.Analysis)
    if not a["tflm_compatible"]:
        first = next((p for p in a["problems"] if p.get("severity") == "error"), None) or {}
        what = ": ".join(str(x) for x in (first.get("op") or first.get("tensor"), first.get("message")) if x)
        return f"TFLite Micro cannot run it ({what or 'see analysis.json'})"
    if lib is not None and (variant_dir / "tflm.json").is_file():
        try:
            t = artifacts.read_dict(variant_dir / "tflm.json", artifacts.TflmTarget)
        except TinyMLError:
            return None
        if t.get("kernels") == lib.kernels and t.get("outputs_equal") is False:
            return (f"the linked TFLite Micro computes different outputs on the emulated Cortex-M4 than the "
                    f"tflite-micro Python interpreter: {t.get('mismatch')}")
    return None


def _estimate(board: Board, variant_dir: Path, runtime: str) -> dict:
    base = ESTIMATE_BASELINES.get((board.arch, runtime)) or ESTIMATE_BASELINES.get((board.arch, "tflm"))
    if base is None:
        raise TinyMLError(f"board {board.id}: arch {board.arch!r} cannot be built offline and has no size estimate.")
    model, arena = _model_figures(variant_dir, runtime)
    bd = {"flash": {"model": model, "inference": 0, "application": int(base["flash"])},
          "ram": {"arena": arena, "stack_heap": 0, "application": int(base["ram"])}}
    return _size_record(board, runtime, model + int(base["flash"]), arena + int(base["ram"]), bd, True,
                        estimate_basis=f"model bytes + arena + baseline for {board.arch}/{runtime}: {base['note']}")
