"""Helpers for tests that build a tiny doit-tinyml project in a temporary folder and run doit on it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DODO = 'from doit_tinyml import load_project\nglobals().update(load_project("tinyml.toml"))\n'

TINY_SINE = """
[project]
build_dir = "build"
seed = 7

[models.sine]
task = "regression"

[models.sine.dataset]
source = "sine"
params = { samples = 400, noise = 0.05 }

[models.sine.model]
layers = [
  { type = "dense", units = 8, activation = "relu" },
  { type = "dense", units = 8, activation = "relu" },
  { type = "dense", units = 1 },
]

[models.sine.training]
epochs = {epochs}
batch_size = 32
learning_rate = 0.01

[models.sine.variants.float32]
quantization = "float32"

[models.sine.variants.int8]
quantization = "int8"
io = "int8"
converter = "concrete"
representative_samples = 50

[models.sine.firmware]
sketch = "sketches/sine"
boards = ["nano33ble", "adafruit_pybadge_m4"]
"""


def make_project(root: Path, toml: str | None = None, *, epochs: int = 3, sketch: str = "sine") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dodo.py").write_text(DODO)
    (root / "tinyml.toml").write_text(toml if toml is not None else TINY_SINE.replace("{epochs}", str(epochs)))
    if sketch:
        shutil.copytree(REPO / "sketches" / sketch, root / "sketches" / sketch, dirs_exist_ok=True)
    return root


def user_env(env: dict | None = None) -> dict:
    """The environment a test's `doit` runs in: this process's, without the TFLite Micro tree CI hands to the
    test run (TINYML_TFLM_DIR), which a test passes on purpose (env={"TINYML_TFLM_DIR": ...}) when it is about
    the real TFLM; the others build as a user without a library does, and the suite keeps its time."""
    base = {k: v for k, v in os.environ.items() if k != "TINYML_TFLM_DIR"}
    return {**base, **(env or {})}


def doit(root: Path, *args: str, importtime: bool = False, check: bool = True, env: dict | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable] + (["-X", "importtime"] if importtime else []) + ["-m", "doit", *args]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout, env=user_env(env))
    if check and proc.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


def executed(output: str) -> set[str]:
    """Tasks doit ran (lines '.  name'), not those it found up to date ('-- name')."""
    return {line[3:].strip() for line in output.splitlines() if line.startswith(".  ")}


def up_to_date(output: str) -> set[str]:
    return {line[3:].strip() for line in output.splitlines() if line.startswith("-- ")}


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def copy_example(name: str, dest: Path) -> Path:
    """The example folder without build outputs, with its generated data (as its README says to run)."""
    shutil.copytree(EXAMPLES / name, dest, ignore=shutil.ignore_patterns("build", ".pio", "__pycache__", "*.ts"))
    if (dest / "data" / "make_archive.py").is_file():
        subprocess.run([sys.executable, str(dest / "data" / "make_archive.py")], check=True)
    return dest


def copy_project(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def write_dataset_record(path: Path, **fields) -> Path:
    """A dataset.json as the dataset stage writes it (engine.artifacts.Dataset), from the given fields
    over plausible defaults (a regression on one feature, no normalisation)."""
    from doit_tinyml.engine import artifacts

    base = {"task": "regression", "n_classes": None, "class_names": None, "input_shape": [1], "output_shape": [1],
            "normalize": "none", "norm_a": [0.0], "norm_b": [1.0], "counts": {"train": 1, "test": 1},
            "source": "test"}
    artifacts.write(path, artifacts.Dataset(**{**base, **fields}))
    return path
