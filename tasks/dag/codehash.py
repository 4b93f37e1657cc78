"""Invalidation by code: a hash of the source files each stage's work depends on.

A stage's code is its module plus every module of this package it imports, directly or through
the engine (found by reading the `import` statements with `ast`, lazy imports inside functions
included), plus the non-Python files those modules use (the AOT kernels, the local PlatformIO
platform) and the pinned versions of the libraries the plugin depends on. Each task's
`config_changed` covers its stage's hash, so upgrading the plugin re-runs exactly the stages whose
code changed, and nothing else. The package root (`__init__.py`: version string, `load_project`)
counts only for a module that imports it.

Parsing ~50 modules costs tens of milliseconds, so the hashes are cached in
`build/.tinyml/code.json`, keyed by the size and mtime of every file of the package: a no-op
`doit` reads one small JSON file.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
PACKAGE = __name__.rsplit(".", 2)[0]  # the installed import name, derived, never spelled

# stage -> its module (dotted, relative to the package)
STAGE_MODULES = {
    "dataset": "dataset", "train": "train", "compress": "compress", "convert": "convert",
    "evaluate": "evaluate", "analyze": "analyze", "header": "header", "aot": "aot.stage",
    "tflm": "tflm_check", "firmware": "firmware", "measure": "measure",
}
# non-Python files a module reads at run time (relative to the package folder)
RESOURCES = {
    "engine/platformio.py": ("engine/pio_platform",),
    "aot/__init__.py": ("aot/kernels", "aot/target_sketch"),
    "engine/tflm_link.py": ("engine/tflm_port", "engine/pio_platform"),
    "engine/latency.py": ("engine/data",),
    "engine/tflm_size.py": ("engine/data",),
    "engine/measure.py": ("engine/measure_port",),
    "engine/profile.py": ("engine/qemu_plugin",),
}
_SKIP_DIRS = {"__pycache__"}


def _files() -> list[Path]:
    out = []
    for base, dirs, names in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        out += [Path(base) / n for n in sorted(names) if not n.endswith((".pyc", ".pyo"))]
    return out


def _module_path(dotted: str) -> Path | None:
    base = PACKAGE_DIR.joinpath(*dotted.split(".")) if dotted else PACKAGE_DIR
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _dotted(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Dotted names (relative to the package) of the package modules `path` imports."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    here = _dotted(path)
    pkg_parts = here.split(".") if here else []
    if path.name != "__init__.py":
        pkg_parts = pkg_parts[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - (node.level - 1)] if node.level > 1 else list(pkg_parts)
                mod = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] in (PACKAGE, "tasks"):
                mod = ".".join(node.module.split(".")[1:])
            else:
                continue
            found.add(mod)
            for alias in node.names:  # `from .engine import tflm` imports the module engine.tflm
                sub = f"{mod}.{alias.name}" if mod else alias.name
                if _module_path(sub) is not None:
                    found.add(sub)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in (PACKAGE, "tasks"):
                    found.add(".".join(alias.name.split(".")[1:]))
    return found


def _closure(dotted: str) -> list[Path]:
    seen: set[Path] = set()
    todo = [dotted]
    while todo:
        mod = todo.pop()
        path = _module_path(mod)
        if path is None or path in seen:
            continue
        seen.add(path)
        if mod == "":
            continue  # the package root: its version string counts, not load_project's lazy imports
        for parent in _parents(mod):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            todo.append(parent)
        todo += sorted(_imports(path))
    files = set(seen)
    for path in list(seen):
        for res in RESOURCES.get(path.relative_to(PACKAGE_DIR).as_posix(), ()):
            files |= {p for p in _files() if PACKAGE_DIR / res in p.parents}
    return sorted(files)


def _parents(dotted: str) -> list[str]:
    parts = dotted.split(".") if dotted else []
    # the package root is not a parent here: it counts only when a module imports it by name
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _library_pins() -> str:
    """The plugin's pinned requirements (TensorFlow, tflite-micro, PlatformIO, ...), as installed."""
    from importlib import metadata

    try:
        return "\n".join(sorted(metadata.requires(PACKAGE.replace("_", "-")) or []))
    except metadata.PackageNotFoundError:
        return ""


def compute() -> dict[str, str]:
    """stage -> sha256 of its code (see the module docstring)."""
    pins = _library_pins()
    out = {}
    for stage, module in STAGE_MODULES.items():
        h = hashlib.sha256(pins.encode())
        for path in _closure(module):
            h.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
            h.update(path.read_bytes())
        out[stage] = h.hexdigest()
    return out


def _signature() -> str:
    h = hashlib.sha256()
    for p in _files():
        st = p.stat()
        h.update(f"{p.relative_to(PACKAGE_DIR).as_posix()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


_MEMO: dict[str, dict[str, str]] = {}


def stage_hashes(cache: Path | None = None) -> dict[str, str]:
    """The per-stage code hashes, from `cache` when no file of the package changed since it was written."""
    sig = _signature()
    if sig in _MEMO:  # loaded before in this process (tests, tools that load several projects)
        return _MEMO[sig]
    if cache is not None:
        try:
            data = json.loads(cache.read_text())
            if data.get("signature") == sig and set(data.get("stages", {})) == set(STAGE_MODULES):
                _MEMO[sig] = data["stages"]
                return data["stages"]
        except (OSError, ValueError, AttributeError):
            pass
    hashes = _MEMO[sig] = compute()
    if cache is not None:
        try:
            from ..engine.io import write_json

            write_json(cache, {"signature": sig, "stages": hashes})
        except OSError:
            pass  # a read-only build folder: compute again next time
    return hashes


def module_files(stage: str) -> list[str]:
    """The package files a stage's hash covers (for docs and tests)."""
    return [p.relative_to(PACKAGE_DIR).as_posix() for p in _closure(STAGE_MODULES[stage])]
