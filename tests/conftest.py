"""Shared fixtures: one full build of the tiny sine project, copied for each test that changes it."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# One prebuilt TFLite Micro library per (tree, core flags, kernel set) for the whole run: every test project that
# links the real TFLM (TINYML_TFLM_DIR) reuses it instead of compiling the tree again (minutes each). Keyed by
# content (engine.tflm_link), so sharing it between projects and runs is safe.
os.environ.setdefault("TINYML_TFLM_CACHE", str(Path(tempfile.gettempdir()) / f"tinyml-tests-tflm-{os.getuid()}"))

from project import copy_project, doit, executed, make_project


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """The tiny sine project (two variants, two boards), built once with `doit` as a user would."""
    root = make_project(tmp_path_factory.mktemp("base") / "proj")
    proc = doit(root)
    ran = executed(proc.stdout)
    assert {"dataset:sine", "train:sine", "convert:sine/int8", "firmware:sine/int8@nano33ble"} <= ran
    return root


@pytest.fixture
def proj(built, tmp_path) -> Path:
    """A private copy of the built project, free to change."""
    return copy_project(built, tmp_path / "proj")


# ---------------------------------------------------------------------------------------------- markers
# What each test module needs beyond pure Python. Modules listed here are `slow` (they train, convert,
# compile or emulate); `pytest -m "not slow"` runs the rest in seconds. On a machine that lacks one of
# the parts, those tests skip with the reason, except under CI (CI=true), where a missing part is a
# failure: CI runs everything.
NEEDS = {
    "test_aot": ("tensorflow", "tflite_micro", "gcc", "arm-none-eabi-gcc", "qemu-system-arm"),
    "test_aot_kernels": ("tensorflow", "tflite_micro", "gcc", "arm-none-eabi-gcc"),
    "test_analyze": ("tensorflow", "tflite_micro"),
    "test_arena": ("tensorflow", "tflite_micro"),
    "test_compress": ("tensorflow", "tensorflow_model_optimization"),
    "test_convert": ("tensorflow",),
    "test_evaluate": ("tensorflow", "tflite_micro"),
    "test_examples": ("tensorflow", "arm-none-eabi-gcc"),
    "test_firmware": ("platformio", "arm-none-eabi-gcc", "qemu-system-arm"),
    "test_measure": ("tensorflow", "platformio", "arm-none-eabi-gcc", "qemu-system-arm", "gcc"),
    "test_header": ("tensorflow", "tflite_micro", "arm-none-eabi-gcc"),
    "test_pipeline": ("tensorflow", "platformio", "arm-none-eabi-gcc", "qemu-system-arm"),
    "test_regression_data": ("tensorflow", "platformio", "arm-none-eabi-gcc"),
    "test_reliability": ("tensorflow", "platformio", "arm-none-eabi-gcc", "qemu-system-arm"),
}


def _missing(part: str) -> bool:
    import importlib.util
    import shutil

    if part.startswith(("arm-", "qemu-")) or part == "gcc":
        return shutil.which(part) is None
    return importlib.util.find_spec(part) is None


def pytest_collection_modifyitems(config, items):
    import os

    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    missing_cache: dict[str, bool] = {}
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        needs = NEEDS.get(module)
        if not needs:
            continue
        item.add_marker(pytest.mark.slow)
        lacking = [p for p in needs if missing_cache.setdefault(p, _missing(p))]
        if lacking and not in_ci:
            item.add_marker(pytest.mark.skip(reason=f"needs {', '.join(lacking)} (not installed here)"))
