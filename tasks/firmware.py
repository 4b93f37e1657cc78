"""Firmware stage: build a sketch + model header per board with PlatformIO, offline; record sizes.

* `ensure_core(core_dir)` makes a PlatformIO core usable without the internet: a local
  `tool-scons` package (PyPI's SCons), a `toolchain-gccarmnoneeabi` package of links to the
  system's `arm-none-eabi-*`, and the project's own platform (`tasks/pio_platform`, with one
  board manifest per Cortex-M board of the catalogue).
* `run(...)` generates a PlatformIO project, runs `pio run`, parses PlatformIO's `RAM:`/`Flash:`
  lines (in `parse_pio_sizes`, the one place), cross-checks them with the ELF's sections and
  writes `firmware.elf` and `size.json` (docs/ARTIFACTS.md).
* `run_qemu(elf)` runs an `mps2_an386` firmware under `qemu-system-arm` with semihosting.

Nothing heavy is imported at module level (PlatformIO runs in a subprocess; pyelftools inside).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Iterator

from tasks.boards import CATALOGUE, Board
from tasks.util import PLUGIN_VERSION, TinyMLError, atomic_path, dumps_json, write_json, write_text

PLATFORM_SRC = Path(__file__).resolve().parent / "pio_platform"
PLATFORM_NAME = "tinyml-arm"
SCONS_PKG_VERSION = "4.41101.0"  # what PlatformIO 6.2 requires (~4.41101.0)

# Linker regions are this many times the board's limits, so a too-big firmware still links and
# is reported against the real limits (with a full breakdown) instead of failing the build.
LINK_REGION_FACTOR = 2

INSTALL_HINT = (
    "Install the GNU Arm Embedded toolchain with newlib and libstdc++:\n"
    "    sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib\n"
    "(the project's setup script, scripts/setup_platformio.py, runs this for you), "
    "then make sure arm-none-eabi-gcc is on PATH."
)

_TOOLS = (
    "gcc", "g++", "cpp", "as", "ld", "ar", "ranlib", "gcc-ar", "gcc-ranlib", "gcc-nm",
    "objcopy", "objdump", "size", "nm", "readelf", "strip", "addr2line", "c++filt", "gdb",
)

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


# ----------------------------------------------------------------------------- core set-up


def _pio_env(core_dir: Path) -> dict[str, str]:
    """Environment for a PlatformIO subprocess that never waits on the network."""
    env = dict(os.environ)
    env.update(
        PLATFORMIO_CORE_DIR=str(core_dir),
        PLATFORMIO_SETTING_ENABLE_TELEMETRY="No",
        PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL="3650",
        PLATFORMIO_DISABLE_UPGRADE_CHECK="true",
        PLATFORMIO_NO_ANSI="true",
        PLATFORMIO_DISABLE_PROGRESSBAR="true",
        PLATFORMIO_SETTING_ENABLE_CACHE="No",
        PYTHONIOENCODING="utf-8",
    )
    return env


def _find_toolchain() -> dict[str, Path]:
    gcc = shutil.which("arm-none-eabi-gcc")
    if not gcc:
        raise TinyMLError(f"arm-none-eabi-gcc was not found on PATH, so firmware cannot be built.\n{INSTALL_HINT}")
    found = {}
    for tool in _TOOLS:
        p = shutil.which(f"arm-none-eabi-{tool}")
        if p:
            found[tool] = Path(p)
    missing = [t for t in ("g++", "size", "objcopy", "ar") if t not in found]
    if missing:
        raise TinyMLError(
            f"arm-none-eabi-gcc is installed but {', '.join('arm-none-eabi-' + m for m in missing)} "
            f"is not on PATH.\n{INSTALL_HINT}"
        )
    for lib in ("libc_nano.a", "libstdc++_nano.a"):
        out = subprocess.run([gcc, "-mthumb", "-mcpu=cortex-m4", f"-print-file-name={lib}"],
                             capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(out):
            pkg = "libnewlib-arm-none-eabi" if lib.startswith("libc") else "libstdc++-arm-none-eabi-newlib"
            raise TinyMLError(f"{gcc} cannot find {lib} (package {pkg} is missing).\n{INSTALL_HINT}")
    return found


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written folder into place; a run killed here leaves `final` or `.old-*`."""
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    if final.exists() or final.is_symlink():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _fresh_tmp(final: Path) -> Path:
    tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def board_manifest(board: Board) -> dict:
    """The PlatformIO board manifest for `board` as the local platform reads it."""
    m = board.manifest()
    m["build"]["link_region_factor"] = LINK_REGION_FACTOR
    return m


def _platform_fingerprint(tools: dict[str, Path]) -> str:
    h = hashlib.sha256()
    h.update(f"{PLUGIN_VERSION}|{SCONS_PKG_VERSION}|{LINK_REGION_FACTOR}|{sys.executable}".encode())
    for p in sorted(PLATFORM_SRC.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(PLATFORM_SRC)).encode())
            h.update(p.read_bytes())
    for bid, b in sorted(CATALOGUE.items()):
        if b.buildable_offline:
            h.update(dumps_json(board_manifest(b)).encode())
    for name, p in sorted(tools.items()):
        h.update(f"{name}={p.resolve()}".encode())
    return h.hexdigest()


def ensure_core(core_dir: Path) -> Path:
    """Make `core_dir` a PlatformIO core that builds offline; return the local platform's folder.

    Idempotent (a fingerprint file says what is installed) and safe to interrupt: each package is
    written into a temporary folder and renamed into place; the fingerprint is written last.
    """
    core_dir = Path(core_dir).resolve()
    tools = _find_toolchain()
    root = core_dir / "tinyml"
    platform_dir = root / "platform"
    toolchain_dir = root / "toolchain-gccarmnoneeabi"
    scons_dir = core_dir / "packages" / "tool-scons"
    stamp = root / "installed.json"
    fingerprint = _platform_fingerprint(tools)

    with _locked(core_dir / ".tinyml.lock"):
        try:
            if json.loads(stamp.read_text())["fingerprint"] == fingerprint and all(
                (d / "package.json").is_file() for d in (scons_dir, toolchain_dir)
            ) and (platform_dir / "platform.json").is_file():
                return platform_dir
        except (OSError, ValueError, KeyError):
            pass
        # leftovers of a killed run
        for parent in (root, scons_dir.parent):
            if parent.is_dir():
                for p in parent.glob(".*-*-*"):
                    if p.name.startswith((".tmp-", ".old-")):
                        shutil.rmtree(p, ignore_errors=True)

        # tool-scons: PlatformIO's core package, here backed by the scons from PyPI
        import SCons  # noqa: F401  (fails loudly if the dependency is missing)

        tmp = _fresh_tmp(scons_dir)
        (tmp / "package.json").write_text(json.dumps({
            "name": "tool-scons", "version": SCONS_PKG_VERSION,
            "description": "SCons from PyPI, installed offline by doit-tinyml", "system": "*",
        }, indent=2))
        (tmp / ".piopm").write_text(json.dumps({
            "type": "tool", "name": "tool-scons", "version": SCONS_PKG_VERSION,
            "spec": {"owner": "platformio", "id": None, "name": "tool-scons", "requirements": None, "uri": None},
        }))
        (tmp / "scons.py").write_text(
            "# PlatformIO runs this file with its own Python; SCons comes from the PyPI package.\n"
            "import sys\n"
            "import SCons.Script.Main\n\n"
            "if __name__ == '__main__':\n"
            "    sys.exit(SCons.Script.Main.main())\n"
        )
        _replace_dir(tmp, scons_dir)

        # the toolchain: links to the system's arm-none-eabi-*
        tmp = _fresh_tmp(toolchain_dir)
        (tmp / "bin").mkdir()
        for name, path in tools.items():
            os.symlink(path.resolve(), tmp / "bin" / f"arm-none-eabi-{name}")
        ver = subprocess.run([str(tools["gcc"]), "-dumpversion"], capture_output=True, text=True).stdout.strip()
        (tmp / "package.json").write_text(json.dumps({
            "name": "toolchain-gccarmnoneeabi", "version": f"1.{''.join(p.zfill(2) for p in (ver.split('.') + ['0', '0'])[:3])}.0",
            "description": f"system arm-none-eabi-gcc {ver} ({tools['gcc'].resolve()})", "system": "*",
        }, indent=2))
        _replace_dir(tmp, toolchain_dir)

        # the platform: a copy of tasks/pio_platform + platform.json + board manifests
        tmp = _fresh_tmp(platform_dir)
        shutil.copytree(PLATFORM_SRC, tmp, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (tmp / "platform.json").write_text(json.dumps({
            "name": PLATFORM_NAME,
            "title": "doit-tinyml bare-metal Cortex-M (offline)",
            "description": "Builds bare-metal Cortex-M firmware with the system's arm-none-eabi-gcc, no network.",
            "version": PLUGIN_VERSION,
            "engines": {"platformio": "^6"},
            "frameworks": {},
            "packages": {
                "toolchain-gccarmnoneeabi": {"type": "toolchain", "version": f"symlink://{toolchain_dir}"},
            },
        }, indent=2))
        (tmp / "boards").mkdir(exist_ok=True)
        for bid, b in CATALOGUE.items():
            if b.buildable_offline:
                (tmp / "boards" / f"{bid}.json").write_text(dumps_json(board_manifest(b)))
        _replace_dir(tmp, platform_dir)

        write_json(stamp, {"fingerprint": fingerprint, "platform": str(platform_dir),
                           "toolchain": str(toolchain_dir), "scons": str(scons_dir)})
    return platform_dir


# ----------------------------------------------------------------------------- size parsing

_PIO_LINE = re.compile(r"^(RAM|Flash):\s+\[[^\]]*\]\s+-?[\d.]+%\s+\(used (\d+) bytes from (\d+) bytes\)", re.M)
_LD_OVERFLOW = re.compile(r"region `(\w+)' overflowed by (\d+) bytes")


def parse_pio_sizes(output: str) -> dict:
    """PlatformIO's `RAM:`/`Flash:` lines and any linker region overflow, parsed (the one place).

    Returns {"flash": (used, limit) | None, "ram": (used, limit) | None, "overflow": {region: bytes}}.
    """
    res: dict = {"flash": None, "ram": None, "overflow": {}}
    for kind, used, limit in _PIO_LINE.findall(output):
        res["flash" if kind == "Flash" else "ram"] = (int(used), int(limit))
    for region, n in _LD_OVERFLOW.findall(output):
        res["overflow"][region] = max(res["overflow"].get(region, 0), int(n))
    return res


def elf_section_sizes(elf: Path) -> dict[str, int]:
    from elftools.elf.elffile import ELFFile

    with open(elf, "rb") as f:
        return {s.name: s["sh_size"] for s in ELFFile(f).iter_sections() if s.name}


# ----------------------------------------------------------------------------- the stage


def _fmt(n: int) -> str:
    return f"{n:,}"


def _read_header_define(model_dir: Path, name: str) -> int | None:
    h = model_dir / "model_data.h"
    if not h.is_file():
        return None
    m = re.search(rf"#define\s+{name}\s+\(?(\d+)", h.read_text(errors="replace"))
    return int(m.group(1)) if m else None


def _model_bytes(model_dir: Path) -> int:
    tfl = model_dir / "model.tflite"
    if tfl.is_file():
        return tfl.stat().st_size
    cc = model_dir / "model_data.cc"
    if not cc.is_file():
        raise TinyMLError(f"{cc} is missing: the header stage must run before the firmware stage.")
    text = cc.read_text(errors="replace")
    m = re.search(r"g_model_len\s*=\s*(\d+)", text)
    if m:
        return int(m.group(1))
    return len(re.findall(r"0x[0-9a-fA-F]{2}", text))


def _size_record(board: Board, runtime: str, flash_used: int, ram_used: int, breakdown: dict,
                 estimate: bool, **extra) -> dict:
    rec = {
        "board": board.id,
        "runtime": runtime,
        "estimate": estimate,
        "flash_used": int(flash_used),
        "flash_limit": int(board.flash),
        "ram_used": int(ram_used),
        "ram_limit": int(board.ram),
        "flash_over_by": max(0, int(flash_used) - board.flash),
        "ram_over_by": max(0, int(ram_used) - board.ram),
        "breakdown": breakdown,
    }
    rec["fits"] = rec["flash_over_by"] == 0 and rec["ram_over_by"] == 0
    rec.update(extra)
    return rec


def _summary(label: str, rec: dict) -> str:
    def pct(u, l):
        return f"{100.0 * u / l:.1f} %" if l else "n/a"

    line = (f"{label} @ {rec['board']}: flash {_fmt(rec['flash_used'])} / {_fmt(rec['flash_limit'])} B "
            f"({pct(rec['flash_used'], rec['flash_limit'])})  RAM {_fmt(rec['ram_used'])} / "
            f"{_fmt(rec['ram_limit'])} B ({pct(rec['ram_used'], rec['ram_limit'])})  ")
    if rec["fits"]:
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


def _sync_tree(files: dict[str, Path], dest: Path) -> None:
    """Make `dest` hold exactly `files` (relative name -> source), rewriting only what changed."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel, src in files.items():
        target = dest / rel
        data = src.read_bytes()
        if not target.is_file() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
    wanted = {dest / rel for rel in files}
    for p in sorted(dest.rglob("*"), reverse=True):
        if p.is_file() and p not in wanted:
            p.unlink()
        elif p.is_dir() and not any(p.iterdir()):
            p.rmdir()


def _project_files(sketch_dir: Path, model_dir: Path, extra_sources: Iterable[Path]) -> dict[str, Path]:
    src = sketch_dir / "src"
    if not src.is_dir():
        raise TinyMLError(f"sketch {sketch_dir}: no src/ folder (a PlatformIO sketch keeps its sources in src/).")
    files = {str(p.relative_to(src)): p for p in sorted(src.rglob("*")) if p.is_file()}
    cc = model_dir / "model_data.cc"
    if not cc.is_file():
        raise TinyMLError(f"{cc} is missing: the header stage must write it before the firmware stage runs.")
    files["tinyml_model/model_data.cc"] = cc
    for i, extra in enumerate(extra_sources):
        extra = Path(extra)
        files[f"tinyml_extra/{i:02d}_{extra.name}"] = extra
    return files


def _ini_path(p: Path) -> str:
    return str(Path(p).resolve())


def _write_project(proj: Path, board: Board, platform_dir: Path, model_dir: Path, runtime: str,
                   include_dirs: Iterable[Path], region_factor: int) -> None:
    manifest = board_manifest(board)
    manifest["build"]["link_region_factor"] = region_factor
    boards_dir = proj / "boards"
    text = dumps_json(manifest)
    if not (boards_dir / f"{board.id}.json").is_file() or (boards_dir / f"{board.id}.json").read_text() != text:
        write_text(boards_dir / f"{board.id}.json", text)
    flags = [f'-I"{_ini_path(model_dir)}"'] + [f'-I"{_ini_path(d)}"' for d in include_dirs]
    flags.append(f"-DTINYML_RUNTIME_{re.sub(r'[^A-Za-z0-9]', '_', runtime).upper()}")
    ini = (
        "; generated by doit-tinyml (tasks/firmware.py) - edits are overwritten\n"
        "[platformio]\n"
        "boards_dir = boards\n"
        "\n"
        f"[env:{board.id}]\n"
        f"platform = symlink://{platform_dir}\n"
        f"board = {board.id}\n"
        "build_flags =\n" + "".join(f"    {f}\n" for f in flags)
    )
    ini_path = proj / "platformio.ini"
    if not ini_path.is_file() or ini_path.read_text() != ini:
        write_text(ini_path, ini)


def _pio_run(proj: Path, core_dir: Path, env_name: str, timeout: float = 900) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "platformio", "run", "-d", str(proj), "-e", env_name]
    try:
        p = subprocess.run(cmd, env=_pio_env(core_dir), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise TinyMLError(f"`{' '.join(cmd)}` did not finish in {timeout:.0f} s") from e
    return p.returncode, (p.stdout or "") + (p.stderr or "")


def run(
    sketch_dir: Path,
    model_dir: Path,
    board: Board,
    out_dir: Path,
    core_dir: Path,
    *,
    runtime: str = "tflm",
    fail_on_overflow: bool = False,
    extra_sources: Iterable[Path] = (),
    extra_include_dirs: Iterable[Path] = (),
    label: str | None = None,
    quiet: bool = False,
) -> dict:
    """Build `sketch_dir` with the model in `model_dir` for `board`; write firmware.elf + size.json.

    Returns the size.json record. A firmware that does not fit is reported (not raised) unless
    `fail_on_overflow`. Boards the local platform cannot build get an estimate ("estimate": true).
    """
    sketch_dir, model_dir, out_dir = Path(sketch_dir), Path(model_dir), Path(out_dir)
    # a failed build must not leave the previous size.json for the report to show as current
    for stale in ("size.json", "firmware.elf", "firmware.map"):
        (out_dir / stale).unlink(missing_ok=True)
    label = label or f"{model_dir.parent.name}/{model_dir.name}"
    if runtime != "tflm":
        label = f"{label} ({runtime})"
    if not board.buildable_offline:
        rec = _estimate(board, model_dir, runtime)
    else:
        rec = _build(sketch_dir, model_dir, board, out_dir, Path(core_dir), runtime,
                     list(extra_sources), list(extra_include_dirs))
    write_json(out_dir / "size.json", rec)
    line = _summary(label, rec)
    if not quiet:
        print(line, flush=True)
    if fail_on_overflow and not rec["fits"]:
        raise TinyMLError(f"{line}\n(fail_on_overflow is set for board {board.id}; "
                          f"shrink the model or its arena, or pick a bigger board.)")
    return rec


def _estimate(board: Board, model_dir: Path, runtime: str) -> dict:
    base = ESTIMATE_BASELINES.get((board.arch, runtime)) or ESTIMATE_BASELINES.get((board.arch, "tflm"))
    if base is None:
        raise TinyMLError(f"board {board.id}: arch {board.arch!r} cannot be built offline and has no size estimate.")
    aot_json = model_dir / "aot.json"
    if runtime == "aot" and aot_json.is_file():
        # the plain-C model: its const weights and its planned activation buffer, not the flatbuffer and TFLM arena
        aot = json.loads(aot_json.read_text())
        model, arena = int(aot["weights_bytes"]), int(aot["planned_bytes"])
    else:
        model = _model_bytes(model_dir)
        arena = _read_header_define(model_dir, "TINYML_ARENA_SIZE")
        if arena is None:
            raise TinyMLError(f"{model_dir / 'model_data.h'}: no TINYML_ARENA_SIZE define (the header stage writes it).")
    bd = {"flash": {"model": model, "inference": 0, "application": int(base["flash"])},
          "ram": {"arena": arena, "stack_heap": 0, "application": int(base["ram"])}}
    return _size_record(board, runtime, model + int(base["flash"]), arena + int(base["ram"]), bd, True,
                        estimate_basis=f"model bytes + arena + baseline for {board.arch}/{runtime}: {base['note']}")


def _build(sketch_dir: Path, model_dir: Path, board: Board, out_dir: Path, core_dir: Path, runtime: str,
           extra_sources: list[Path], extra_include_dirs: list[Path]) -> dict:
    from tasks import elfsize

    core_dir = core_dir.resolve()  # `pio run -d` changes directory: a relative core dir would move
    platform_dir = ensure_core(core_dir)
    proj = out_dir / "pio"
    _sync_tree(_project_files(sketch_dir, model_dir, extra_sources), proj / "src")
    include_dirs = list(extra_include_dirs) + ([sketch_dir / "include"] if (sketch_dir / "include").is_dir() else [])

    factor = LINK_REGION_FACTOR
    linker_overflow: dict[str, int] = {}
    for _attempt in range(2):
        _write_project(proj, board, platform_dir, model_dir, runtime, include_dirs, factor)
        rc, out = _pio_run(proj, core_dir, board.id)
        sizes = parse_pio_sizes(out)
        if sizes["overflow"] and not linker_overflow:
            # the linker's own regions were too small even at LINK_REGION_FACTOR x the limits:
            # relink once with regions big enough, so the ELF (and its breakdown) exist.
            linker_overflow = dict(sizes["overflow"])
            need = max(
                (factor * (board.flash if r == "FLASH" else board.ram) + n) / (board.flash if r == "FLASH" else board.ram)
                for r, n in linker_overflow.items()
            )
            factor = int(math.ceil(need)) + 1
            continue
        break
    build_dir = proj / ".pio" / "build" / board.id
    elf = build_dir / "program.elf"
    # PlatformIO exits 1 when the program exceeds upload.maximum_size: that is a result, not a failure
    failed_steps = [ln for ln in out.splitlines() if ln.startswith("*** [") and "[checkprogsize]" not in ln]
    too_big_only = rc != 0 and "is greater than maximum allowed" in out and not failed_steps
    if sizes["flash"] is None or not elf.is_file() or (rc != 0 and not too_big_only):
        tail = "\n".join(out.strip().splitlines()[-40:])
        raise TinyMLError(f"PlatformIO failed to build {sketch_dir} for board {board.id} "
                          f"(project {proj}, exit code {rc}):\n{tail}")
    flash_used, flash_limit = sizes["flash"]
    ram_used, ram_limit = sizes["ram"] if sizes["ram"] else (None, None)
    if flash_limit != board.flash or (ram_limit is not None and ram_limit != board.ram):
        raise RuntimeError(f"PlatformIO limits {flash_limit}/{ram_limit} differ from board {board}")

    # cross-check PlatformIO's figures with the ELF's own sections
    secs = elf_section_sizes(elf)
    elf_flash = sum(secs.get(s, 0) for s in elfsize.FLASH_SECTIONS)
    elf_ram = sum(secs.get(s, 0) for s in elfsize.RAM_SECTIONS)
    if elf_flash != flash_used or elf_ram != ram_used:
        raise RuntimeError(f"size mismatch for {elf}: PlatformIO flash {flash_used} RAM {ram_used}, "
                           f"ELF sections flash {elf_flash} RAM {elf_ram}")
    for region, n in linker_overflow.items():
        # the first link said `region ... overflowed by n`: the relinked figure must agree
        used = flash_used if region == "FLASH" else ram_used
        limit = board.flash if region == "FLASH" else board.ram
        if used != LINK_REGION_FACTOR * limit + n:
            raise RuntimeError(f"linker overflow of {region} by {n} B disagrees with relinked size {used}")

    with atomic_path(out_dir / "firmware.elf") as tmp:
        shutil.copyfile(elf, tmp)
    mapfile = build_dir / "firmware.map"
    if mapfile.is_file():
        with atomic_path(out_dir / "firmware.map") as tmp:
            shutil.copyfile(mapfile, tmp)
    bd = elfsize.breakdown(out_dir / "firmware.elf", board)
    extra = {}
    if linker_overflow:
        extra["linker_overflow"] = {r: n for r, n in linker_overflow.items()}
    return _size_record(board, runtime, flash_used, ram_used, bd, False, **extra)


# ----------------------------------------------------------------------------- QEMU

_TICKS = re.compile(r"^\[tinyml\] timer_ticks=(\d+)\s*$", re.M)
QEMU_ICOUNT_SHIFT = 6  # 1 instruction = 2**6 ns of virtual time; the 25 MHz timer ticks every 40 ns


def run_qemu(elf: Path, timeout: float = 60) -> dict:
    """Run an `mps2_an386` firmware under qemu-system-arm with semihosting; deterministic timing.

    Returns {"stdout", "exit_code", "timed_out", "timer_ticks", "instructions"}. With
    `-icount shift=6` every instruction advances virtual time by 64 ns and the CMSDK timer
    (25 MHz) that the start-up code reads ticks every 40 ns, so instructions = ticks * 40 / 64
    (exact to one instruction) and identical runs give identical counts.
    """
    qemu = shutil.which("qemu-system-arm")
    if not qemu:
        raise TinyMLError("qemu-system-arm was not found on PATH: sudo apt-get install qemu-system-arm")
    cmd = [qemu, "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native",
           "-icount", f"shift={QEMU_ICOUNT_SHIFT},align=off,sleep=off",
           "-kernel", str(elf)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        stdout, code, timed_out = p.stdout, p.returncode, False
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        code, timed_out = None, True
    m = _TICKS.search(stdout)
    ticks = int(m.group(1)) if m else None
    instructions = round(ticks * 40 / (1 << QEMU_ICOUNT_SHIFT)) if ticks is not None else None
    return {"stdout": stdout, "exit_code": code, "timed_out": timed_out,
            "timer_ticks": ticks, "instructions": instructions, "command": cmd}
