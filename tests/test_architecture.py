"""The house rules, checked: stages over one engine, no import cycles, no stage importing another,
the engine importing no stage and no dag, every module cheap to import, the package name never spelled.

Fast and pure Python: the imports are read with `ast` (lazy imports inside functions included).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import doit_tinyml
from doit_tinyml.dag import codehash

PKG = Path(doit_tinyml.__file__).resolve().parent
STAGES = {"dataset", "train", "compress", "convert", "evaluate", "analyze", "header", "aot.stage", "firmware",
          "report"}
HEAVY = ("numpy", "tensorflow", "tf_keras", "tensorflow_model_optimization", "platformio", "SCons", "elftools",
         "matplotlib", "ai_edge_litert", "tflite_micro", "sklearn")


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        if "pio_platform" in p.parts or "__pycache__" in p.parts:
            continue  # the PlatformIO builder runs inside SCons, not as part of the package
        rel = p.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and parts[-1] == "__main__":
            continue
        out[".".join(parts)] = p
    return out


def imports(name: str, path: Path) -> set[str]:
    """Package modules `name` imports (module names relative to the package)."""
    mods = modules()
    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    pkg = [x for x in pkg if x]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
            mod = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{mod}.{alias.name}" if mod else alias.name
                found.add(sub if sub in mods else mod)
    return {m for m in found if m in mods and m != name}


def graph() -> dict[str, set[str]]:
    return {name: imports(name, path) for name, path in modules().items()}


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if m == "" or n.startswith(m + ".") or m == n:
                continue  # a module's own package __init__ runs first by Python's rules, not a cycle
            if state.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
            if not state.get(m):
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if not state.get(n):
            visit(n)


def test_stages_never_import_each_other_and_the_engine_imports_no_stage():
    g = graph()
    problems = []
    for name, deps in g.items():
        if name in STAGES:
            problems += [f"stage {name} imports stage {d}" for d in deps if d in STAGES and d != name]
        if name.startswith("engine"):
            problems += [f"engine module {name} imports {d}" for d in deps
                         if d in STAGES or d.startswith("dag") or d in ("config",)]
    assert not problems, "\n".join(problems)


def test_the_package_name_is_never_spelled_in_its_code():
    spelled = [f"{p.relative_to(PKG)}:{i}" for p in PKG.rglob("*.py") if "pio_platform" not in p.parts
               for i, line in enumerate(p.read_text().splitlines(), 1)
               if ("doit_tinyml." in line or "import doit_tinyml" in line or "tasks." in line and "import" in line)
               and not line.lstrip().startswith("#")]
    assert not spelled, f"spell the package relatively (from .x import y) or derive it: {spelled}"


def test_every_module_imports_without_heavy_libraries():
    names = [f"{doit_tinyml.__name__}.{m}" if m else doit_tinyml.__name__ for m in modules()]
    code = ("import importlib, sys\n"
            f"for n in {names!r}: importlib.import_module(n)\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]", f"heavy modules imported at import time: {p.stdout}"


def test_code_hash_covers_each_stage_and_its_engine():
    files = codehash.module_files("evaluate")
    assert "evaluate.py" in files and "engine/tflm.py" in files and "engine/metrics.py" in files
    assert "firmware.py" not in files and "train.py" not in files
    assert any(f.startswith("engine/pio_platform/") for f in codehash.module_files("firmware"))
    assert any(f.endswith("tinyml_kernels.c") for f in codehash.module_files("aot"))
    assert "__init__.py" not in codehash.module_files("analyze")  # the version string alone rebuilds nothing


def test_artifacts_doc_is_generated_from_the_records():
    from doit_tinyml.engine import artifacts

    doc = (Path(__file__).resolve().parents[1] / "docs" / "ARTIFACTS.md").read_text()
    assert doc == artifacts.markdown(), "docs/ARTIFACTS.md is stale: python -m doit_tinyml.engine.artifacts > docs/ARTIFACTS.md"


def test_a_record_round_trips_and_a_damaged_one_names_the_fix(tmp_path):
    import pytest

    from doit_tinyml.engine import artifacts
    from doit_tinyml.engine.errors import TinyMLError

    rec = artifacts.Size(board="uno", runtime="aot", estimate=True, flash_used=1, flash_limit=2, ram_used=1,
                         ram_limit=2, flash_over_by=0, ram_over_by=0, fits=True, breakdown={})
    artifacts.write(tmp_path / "size.json", rec)
    assert artifacts.read(tmp_path / "size.json", artifacts.Size) == rec
    (tmp_path / "size.json").write_text((tmp_path / "size.json").read_text().replace('"fits": true', '"fits": "yes"'))
    with pytest.raises(TinyMLError, match=r"fits = 'yes' is not of the recorded type: run `doit firmware`"):
        artifacts.read(tmp_path / "size.json", artifacts.Size)
    with pytest.raises(TypeError):
        artifacts.write(tmp_path / "x.json", artifacts.Size(**{**rec.__dict__, "flash_used": "12"}))
