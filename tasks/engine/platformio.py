"""PlatformIO without the internet: an offline core, generated projects, `pio run`, its size lines.

* `ensure_core(core_dir)` makes a PlatformIO core usable offline: a local `tool-scons` package
  (PyPI's SCons), a `toolchain-gccarmnoneeabi` package of links to the system's `arm-none-eabi-*`,
  and the project's own bare-metal Cortex-M platform (`engine/pio_platform`, one board manifest
  per Cortex-M board of the catalogue). See DESIGN.md, "PlatformIO without the internet".
* `build(...)` writes a PlatformIO project for one board (sources, include folders, defines), runs
  `pio run`, and returns PlatformIO's own `RAM:`/`Flash:` figures (parsed in `parse_pio_sizes`, the
  one place), cross-checked against the ELF's sections, with the ELF and linker map.

PlatformIO runs in a subprocess; nothing heavy is imported here.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .boards import CATALOGUE, Board
from . import elf as elfsize
from .errors import TinyMLError
from .io import atomic_path, dumps_json, locked, write_json, write_text

PLATFORM_SRC = Path(__file__).resolve().parent / "pio_platform"
PLATFORM_NAME = "tinyml-arm"
PLATFORM_VERSION = "1.0.0"  # the platform's files are fingerprinted; a plugin release alone changes no firmware
SCONS_PKG_VERSION = "4.41101.0"  # what PlatformIO 6.2 requires (~4.41101.0)

# Linker regions are this many times the board's limits, so a too-big firmware still links and
# is reported against the real limits (with a full breakdown) instead of failing the build.
LINK_REGION_FACTOR = 2

INSTALL_HINT = (
    "install the GNU Arm Embedded toolchain with newlib and libstdc++: "
    "sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib "
    "(scripts/setup.sh does it for you), then make sure arm-none-eabi-gcc is on PATH"
)

_TOOLS = (
    "gcc", "g++", "cpp", "as", "ld", "ar", "ranlib", "gcc-ar", "gcc-ranlib", "gcc-nm",
    "objcopy", "objdump", "size", "nm", "readelf", "strip", "addr2line", "c++filt", "gdb",
)


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


def find_toolchain() -> dict[str, Path]:
    gcc = shutil.which("arm-none-eabi-gcc")
    if not gcc:
        raise TinyMLError(f"arm-none-eabi-gcc was not found on PATH, so firmware cannot be built: {INSTALL_HINT}")
    found = {}
    for tool in _TOOLS:
        p = shutil.which(f"arm-none-eabi-{tool}")
        if p:
            found[tool] = Path(p)
    missing = [t for t in ("g++", "size", "objcopy", "ar") if t not in found]
    if missing:
        raise TinyMLError(
            f"arm-none-eabi-gcc is installed but {', '.join('arm-none-eabi-' + m for m in missing)} "
            f"is not on PATH: {INSTALL_HINT}"
        )
    for lib in ("libc_nano.a", "libstdc++_nano.a"):
        out = subprocess.run([gcc, "-mthumb", "-mcpu=cortex-m4", f"-print-file-name={lib}"],
                             capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(out):
            pkg = "libnewlib-arm-none-eabi" if lib.startswith("libc") else "libstdc++-arm-none-eabi-newlib"
            raise TinyMLError(f"{gcc} cannot find {lib} (package {pkg} is missing): {INSTALL_HINT}")
    return found


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
    h.update(f"{PLATFORM_VERSION}|{SCONS_PKG_VERSION}|{LINK_REGION_FACTOR}|{sys.executable}".encode())
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
    tools = find_toolchain()
    root = core_dir / "tinyml"
    platform_dir = root / "platform"
    toolchain_dir = root / "toolchain-gccarmnoneeabi"
    scons_dir = core_dir / "packages" / "tool-scons"
    stamp = root / "installed.json"
    fingerprint = _platform_fingerprint(tools)

    with locked(core_dir / ".tinyml.lock"):
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
            "version": PLATFORM_VERSION,
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


def _ini_path(p: Path) -> str:
    return str(Path(p).resolve())


def _write_project(proj: Path, board: Board, platform_dir: Path, include_dirs: Iterable[Path],
                   defines: Iterable[str], region_factor: int, link_flags: Iterable[str] = ()) -> None:
    manifest = board_manifest(board)
    manifest["build"]["link_region_factor"] = region_factor
    boards_dir = proj / "boards"
    text = dumps_json(manifest)
    if not (boards_dir / f"{board.id}.json").is_file() or (boards_dir / f"{board.id}.json").read_text() != text:
        write_text(boards_dir / f"{board.id}.json", text)
    flags = ([f'-I"{_ini_path(d)}"' for d in include_dirs] + [f"-D{d}" for d in defines]
             + [f"-L{_ini_path(f[2:])}" if f.startswith("-L") else f for f in link_flags])
    ini = (
        "; generated by doit-tinyml - edits are overwritten\n"
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


def pio_run(proj: Path, core_dir: Path, env_name: str, timeout: float = 900) -> tuple[int, str]:
    """`pio run -d proj -e env_name` against the core in `core_dir`: (exit code, output)."""
    cmd = [sys.executable, "-m", "platformio", "run", "-d", str(proj), "-e", env_name]
    try:
        p = subprocess.run(cmd, env=_pio_env(core_dir), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise TinyMLError(f"`{' '.join(cmd)}` did not finish in {timeout:.0f} s") from e
    return p.returncode, (p.stdout or "") + (p.stderr or "")


@dataclass
class BuildResult:
    """PlatformIO's figures for one build, checked against the ELF's sections."""
    flash_used: int
    ram_used: int
    elf: Path
    map: Path | None
    output: str
    linker_overflow: dict = field(default_factory=dict)
    limits: dict = field(default_factory=dict)  # {flash, ram}: the limits PlatformIO printed (its board manifest)


def build(proj: Path, board: Board, core_dir: Path, sources: dict[str, Path], *,
          include_dirs: Iterable[Path] = (), defines: Iterable[str] = (), link_flags: Iterable[str] = (),
          what: str = "the firmware") -> BuildResult:
    """Build `sources` (project-relative name under src/ -> file) for `board` with the local platform.

    `link_flags` (e.g. `-L<dir> -ltflm` for a prebuilt TFLite Micro) go to build_flags as they are.
    The project lives in `proj` (sources are synced, rewriting only what changed, so PlatformIO's
    incremental build stays incremental). A firmware too big for the board still links (the linker
    regions are LINK_REGION_FACTOR x the limits, relinked bigger if needed) and is reported with
    PlatformIO's own figures against the real limits. A compile or link error is a TinyMLError
    naming `what` with the first compiler error and the end of PlatformIO's output.
    """
    core_dir = Path(core_dir).resolve()  # `pio run -d` changes directory: a relative core dir would move
    platform_dir = ensure_core(core_dir)
    _sync_tree(sources, proj / "src")
    include_dirs, defines, link_flags = list(include_dirs), list(defines), list(link_flags)
    factor = LINK_REGION_FACTOR
    linker_overflow: dict[str, int] = {}
    for _attempt in range(2):
        _write_project(proj, board, platform_dir, include_dirs, defines, factor, link_flags)
        rc, out = pio_run(proj, core_dir, board.id)
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
        raise TinyMLError(f"PlatformIO failed to build {what} for board {board.id} (exit code {rc}): "
                          f"{first_compiler_error(out)}\n(project {proj}; the end of its output:)\n"
                          + "\n".join(out.strip().splitlines()[-25:]))
    flash_used, flash_limit = sizes["flash"]
    ram_used, ram_limit = sizes["ram"] if sizes["ram"] else (None, None)
    if flash_limit != board.flash or (ram_limit is not None and ram_limit != board.ram):
        raise RuntimeError(f"PlatformIO limits {flash_limit}/{ram_limit} differ from board {board}")
    # cross-check PlatformIO's figures with the ELF's own sections
    secs = elfsize.section_sizes(elf)
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
    mapfile = build_dir / "firmware.map"
    return BuildResult(flash_used=flash_used, ram_used=ram_used, elf=elf,
                       map=mapfile if mapfile.is_file() else None, output=out, linker_overflow=linker_overflow)


_COMPILER_ERROR = re.compile(r"^(\S+?:\d+(?::\d+)?: (?:fatal )?error: .*)$", re.M)


_LD_OBJECT = re.compile(r"(\S+?\.o)(?:\s*\([^)]*\))?: in function [`']([^`']*)['`]:")
_LD_MULTIPLE = re.compile(r"multiple definition of [`']([^`']+)['`]; (\S+?\.o)")
_LD_UNDEFINED = re.compile(r"undefined reference to [`']([^`']+)['`]")


def first_compiler_error(output: str) -> str:
    """The first `file:line:col: error: ...` line of a build's output, the linker's real complaint (a symbol
    defined twice or missing, named with its objects), or the first failing step."""
    m = _COMPILER_ERROR.search(output)
    if m:
        return m.group(1).strip()
    m = _LD_OVERFLOW.search(output)
    if m:
        return f"link error: the firmware does not fit the linker's {m.group(1)} region (over by {int(m.group(2)):,} B)"
    for pat, what in ((_LD_MULTIPLE, "multiple"), (_LD_UNDEFINED, "undefined")):
        m = pat.search(output)
        if not m:
            continue
        objs = list(_LD_OBJECT.finditer(output, 0, m.start()))  # the object the linker was reading
        obj = Path(objs[-1].group(1)).name if objs else "?"
        if what == "multiple":
            sym, other = m.group(1), Path(m.group(2)).name
            hint = (" (the sketch defines its own main() and so does another object: keep one)"
                    if sym == "main" else "")
            return f"link error: {sym} is defined twice, in {obj} and in {other}{hint}"
        fn = objs[-1].group(2) if objs else "?"
        return f"link error: undefined reference to {m.group(1)} (from {fn} in {obj})"
    for ln in output.splitlines():
        if "error" in ln.lower() or ln.startswith("*** ["):
            return ln.strip()
    return "no compiler message (see the output below)"


# ------------------------------------------------------------------------------ the sketch's own environments
INJECT_SCRIPT = PLATFORM_SRC / "inject" / "tinyml_inject.py"


def _pio_env_run(sketch_dir: Path, env_name: str, core_dir: Path, build_dir: Path, inject: Path,
                 model_dir: Path | None, extra: list[str], timeout: float) -> subprocess.CompletedProcess:
    """`pio run -e env_name [extra]` on the sketch's own platformio.ini with doit's pre-script (build_env)."""
    core_dir = Path(core_dir).resolve()
    platform_dir = ensure_core(core_dir)
    env = _pio_env(core_dir)
    ws = workspace_dir(core_dir, sketch_dir)
    env.update(PLATFORMIO_BUILD_DIR=str(build_dir), PLATFORMIO_WORKSPACE_DIR=str(ws),
               PLATFORMIO_EXTRA_SCRIPTS=f"pre:{INJECT_SCRIPT}", TINYML_INJECT=str(inject),
               TINYML_LOCAL_PLATFORM=str(platform_dir), TINYML_DOIT="1")
    if model_dir is not None:
        env["TINYML_MODEL_DIR"] = str(Path(model_dir).resolve())
    cmd = [sys.executable, "-m", "platformio", "run", "-d", str(Path(sketch_dir).resolve()), "-e", env_name, *extra]
    with locked(ws.parent / f".{ws.name}.lock"):  # one build of a sketch's workspace at a time (libdeps)
        try:
            return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise TinyMLError(f"`{' '.join(cmd)}` did not finish in {timeout:.0f} s") from e


def _local_limits(sketch_dir: Path, env_name: str, overrides: dict) -> dict[str, int]:
    """{FLASH, RAM}: the limits an environment on doit's local platform links against (its catalogue board,
    after tinyml.toml's overrides); {} for another platform."""
    from .pio_ini import read_envs

    opts = read_envs(Path(sketch_dir) / "platformio.ini").get(env_name, {})
    board = CATALOGUE.get(opts.get("board", "").strip())
    if "TINYML_LOCAL_PLATFORM" not in opts.get("platform", "") or board is None:
        return {}
    return {"FLASH": int(overrides.get("upload.maximum_size", board.flash)),
            "RAM": int(overrides.get("upload.maximum_ram_size", board.ram))}


def upload_env(sketch_dir: Path, env_name: str, core_dir: Path, build_dir: Path, *, upload_port: str | None = None,
               model_dir: Path | None = None, what: str = "the firmware", timeout: float = 600) -> str:
    """`pio run -t upload -e env_name` of what `build_env` built into `build_dir` (same injected files):
    PlatformIO's own upload (the environment's upload_protocol, upload_port or `upload_port`). Returns its
    output; a failed upload is a TinyMLError with PlatformIO's first error line."""
    build_dir = Path(build_dir).resolve()
    inject = build_dir.parent / f"{build_dir.name}.inject.json"
    if not inject.is_file():
        raise TinyMLError(f"{what}: nothing was built in {build_dir} to upload")
    extra = ["-t", "upload"] + (["--upload-port", upload_port] if upload_port else [])
    p = _pio_env_run(sketch_dir, env_name, core_dir, build_dir, inject, model_dir, extra, timeout)
    out = (p.stdout or "") + (p.stderr or "")
    (build_dir.parent / f"{build_dir.name}.upload.txt").write_text(out)
    if p.returncode != 0:
        if "is greater than maximum allowed" in out:
            raise TinyMLError(f"{what} is too big to upload (PlatformIO: {first_compiler_error(out)})")
        raise TinyMLError(f"PlatformIO could not upload {what} with environment {env_name!r} of {sketch_dir} (exit "
                          f"{p.returncode}): {_upload_error(out)} (its output: "
                          f"{build_dir.parent / (build_dir.name + '.upload.txt')})")
    return out


def _upload_error(output: str) -> str:
    """The line of an upload's output that says why it failed."""
    for ln in output.splitlines():
        low = ln.lower()
        if any(w in low for w in ("error", "could not", "cannot", "no such", "not found", "failed", "timed out")):
            return ln.strip()[:300]
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def workspace_dir(core_dir: Path, sketch_dir: Path) -> Path:
    """PlatformIO's workspace (libdeps, caches) for a sketch, inside the build folder, shared by its builds."""
    h = hashlib.sha256(str(Path(sketch_dir).resolve()).encode()).hexdigest()[:10]
    return Path(core_dir).resolve().parent / ".tinyml" / "pio-workspace" / f"{Path(sketch_dir).name}-{h}"


def build_env(sketch_dir: Path, env_name: str, core_dir: Path, build_dir: Path, *,
              include_dirs: Iterable[Path] = (), sources: Iterable[Path] = (), defines: Iterable[str] = (),
              board_overrides: dict | None = None, model_dir: Path | None = None, what: str = "the firmware",
              timeout: float = 3600, link_flags: Iterable[str] = (), replace_sources: bool = False) -> BuildResult:
    """`pio run -e env_name` on the sketch's own platformio.ini, with the variant's files injected.

    Nothing in the sketch is edited: doit's pre-script (PLATFORMIO_EXTRA_SCRIPTS, appended after the
    environment's own extra_scripts) adds the include folders, sources and defines (a source the
    sketch's own scripts already compile is not added twice; TINYML_MODEL_DIR is set to `model_dir`
    for sketches whose script reads it, like the demo's tinyml_model.py); the build goes to
    `build_dir` (PLATFORMIO_BUILD_DIR) and PlatformIO's workspace (library downloads) to the build
    folder. The same call serves an official platform (it downloads what the environment names, once,
    when there is internet) and doit's local platform (`platform = symlink://${sysenv.TINYML_LOCAL_PLATFORM}`).
    Returns PlatformIO's own figures with the limits it printed (`limits`: its board manifest's, after
    any [boards.<id>] override that doit passes as `board_overrides`). `link_flags` (`-L<dir>`, `-l<lib>`)
    link a prebuilt library (the real TFLite Micro on doit's local platform); `replace_sources` builds
    the given sources instead of the sketch's own (the measurement harness, engine.measure).
    """
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    mapfile = build_dir / env_name / "firmware.map"
    libpath = [_ini_path(f[2:]) for f in link_flags if f.startswith("-L")]
    libs = [f[2:] for f in link_flags if f.startswith("-l")]
    cfg = {"include_dirs": [_ini_path(d) for d in include_dirs], "sources": [_ini_path(s) for s in sources],
           "defines": list(defines), "map": str(mapfile), "board": dict(board_overrides or {}),
           "libpath": libpath, "libs": libs, "replace_sources": bool(replace_sources)}
    inject = build_dir.parent / f"{build_dir.name}.inject.json"  # PlatformIO may empty build_dir
    for _attempt in range(2):
        write_json(inject, cfg)
        p = _pio_env_run(sketch_dir, env_name, core_dir, build_dir, inject, model_dir, [], timeout)
        out = (p.stdout or "") + (p.stderr or "")
        sizes = parse_pio_sizes(out)
        if not sizes["overflow"] or "build.link_region_factor" in cfg["board"] or p.returncode == 0:
            break
        # doit's local platform links into regions LINK_REGION_FACTOR x the board's limits: a firmware even bigger
        # is relinked once in regions big enough, so PlatformIO reports it against the limits (as `build`)
        limits = _local_limits(sketch_dir, env_name, cfg["board"])
        if not limits:
            break
        cfg["board"]["build.link_region_factor"] = max(
            math.ceil((LINK_REGION_FACTOR * limits[r] + n) / limits[r]) for r, n in sizes["overflow"].items()
            if r in limits) + 1
    (build_dir.parent / f"{build_dir.name}.output.txt").write_text(out)
    elfs = sorted((build_dir / env_name).glob("*.elf"))
    failed_steps = [ln for ln in out.splitlines() if ln.startswith("*** [") and "[checkprogsize]" not in ln]
    too_big_only = p.returncode != 0 and "is greater than maximum allowed" in out and not failed_steps
    if sizes["flash"] is None or not elfs or (p.returncode != 0 and not too_big_only):
        raise TinyMLError(f"PlatformIO failed to build environment {env_name!r} of {sketch_dir} for {what} (exit "
                          f"code {p.returncode}): {first_compiler_error(out)}\n(the end of its output, also in "
                          f"{build_dir.parent / (build_dir.name + '.output.txt')}:)\n" + "\n".join(out.strip().splitlines()[-25:]))
    (flash_used, flash_limit) = sizes["flash"]
    (ram_used, ram_limit) = sizes["ram"] if sizes["ram"] else (None, None)
    return BuildResult(flash_used=flash_used, ram_used=ram_used if ram_used is not None else 0, elf=elfs[0],
                       map=mapfile if mapfile.is_file() else None, output=out,
                       limits={"flash": flash_limit, "ram": ram_limit})
