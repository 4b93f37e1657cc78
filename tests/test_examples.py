"""The seven example firmware repositories under examples/.

Fast part (no TensorFlow): every example's tinyml.toml loads and `doit list --all` lists exactly the
tasks the example is meant to have. Slow part: reduced copies of two examples (fewer epochs, smaller
data; variants and boards kept) are built end to end with `doit` and `doit report`, as a user would,
and the artifacts and the report are checked.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from doit_tinyml.config import load
from project import EXAMPLES, copy_example, user_env

NAMES = ("sine_sweep", "cancer_mlp", "tapping_anomaly", "waveform_cnn", "digits_cnn", "activity_ts", "measure_qemu")


def doit(root: Path, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "doit", *args], cwd=root, capture_output=True, text=True,
                          timeout=timeout, env=user_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def listed(root: Path) -> set[str]:
    out = doit(root, "list", "--all", "--quiet").stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def chain(model: str, variant: str, boards, *, compress: bool = False, aot: bool = False) -> set[str]:
    names = {f"{s}:{model}/{variant}" for s in ("convert", "evaluate", "analyze", "header")}
    names |= {f"firmware:{model}/{variant}@{b}" for b in boards}
    if compress:
        names.add(f"compress:{model}/{variant}")
    if aot:
        names.add(f"aot:{model}/{variant}")
        names |= {f"firmware:{model}/{variant}@{b}+aot" for b in boards}
    return names


TWO = ("nano33ble", "adafruit_pybadge_m4")
WIDTHS = (16, 32, 64, 128, 256, 512, 768)
CANCER_STEPS = ("qat", "prune", "prune_2of4", "cluster", "prune_cluster", "prune_qat", "cluster_qat",
                "prune_cluster_qat")


def expected_tasks(name: str) -> set[str]:
    """Every subtask the example must have (group tasks like `train` and `report` aside)."""
    exp: set[str] = set()
    if name == "sine_sweep":
        for w in WIDTHS:
            exp |= {f"dataset:sine-units{w}", f"train:sine-units{w}"}
            for v in ("float32", "dynamic", "int8"):
                exp |= chain(f"sine-units{w}", v, TWO, aot=True)
    elif name == "cancer_mlp":
        boards = TWO + ("uno",)
        exp |= {"dataset:cancer", "train:cancer"}
        for v in ("float32", "float16", "dynamic"):
            exp |= chain("cancer", v, boards)
        exp |= chain("cancer", "int8", boards, aot=True)
        for v in CANCER_STEPS:
            exp |= chain("cancer", v, boards, compress=True)
    elif name == "tapping_anomaly":
        for m in ("tap_point", "tap_window"):
            exp |= {f"dataset:{m}", f"train:{m}"}
            for v in ("float32", "int8"):
                exp |= chain(m, v, TWO)
    elif name == "waveform_cnn":
        exp |= {"dataset:waveforms", "train:waveforms"}
        for v in ("float32", "int8"):
            exp |= chain("waveforms", v, TWO)
        for v in ("prune", "remove", "prune_remove"):
            exp |= chain("waveforms", v, TWO, compress=True)
    elif name == "activity_ts":
        exp |= {"dataset:activity", "train:activity"}
        for v in ("float32", "int8"):
            exp |= chain("activity", v, TWO)
        for v in ("pruned", "pruned_removed"):
            exp |= chain("activity", v, TWO, compress=True)
    elif name == "measure_qemu":  # the board is on a port: every firmware is measured on it
        exp |= {"dataset:sine", "train:sine"}
        for v in ("float32", "int8"):
            exp |= chain("sine", v, ("mps2_an386",), aot=True)
            exp |= {f"measure:sine/{v}@mps2_an386", f"measure:sine/{v}@mps2_an386+aot"}
    elif name == "digits_cnn":
        exp |= {"dataset:digits", "train:digits"}
        for v in ("float32", "int8"):
            exp |= chain("digits", v, TWO)
        for v in ("qat", "distilled"):
            exp |= chain("digits", v, TWO, compress=True)
    return exp


# --------------------------------------------------------------------------- fast: configs and task lists
@pytest.mark.parametrize("name", NAMES)
def test_example_config_loads(name, tmp_path):
    p = load(copy_example(name, tmp_path / name) / "tinyml.toml")
    assert p.models, name
    for m in p.models:
        assert m.firmware.sketch is not None and (m.firmware.sketch / "src" / "main.cpp").is_file()
        assert (m.firmware.sketch / "platformio.ini").is_file()
        assert m.firmware.boards
    assert (EXAMPLES / name / "dodo.py").read_text() == (
        'from doit_tinyml import load_project\nglobals().update(load_project("tinyml.toml"))\n')
    assert (EXAMPLES / name / "README.md").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_example_lists_expected_tasks(name, tmp_path):
    root = copy_example(name, tmp_path / name)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "doit", "list", "--all", "--quiet"],
                          cwd=root, capture_output=True, text=True, timeout=120, env=user_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    # listing the tasks must not import TensorFlow, tfmot or PlatformIO
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    assert not imported & {"tensorflow", "tf_keras", "tensorflow_model_optimization", "platformio"}
    subtasks = {line.split()[0] for line in proc.stdout.splitlines() if ":" in line.split()[0]}
    assert subtasks == expected_tasks(name)
    # the sine sweep is the same network at seven widths
    if name == "sine_sweep":
        p = load(root / "tinyml.toml")
        assert [m.model.layers[0]["units"] for m in p.models] == list(WIDTHS)
        assert all(m.model.layers[0]["units"] == m.model.layers[1]["units"] for m in p.models)


# --------------------------------------------------------------------------- slow: two reduced examples, end to end
def shrink(root: Path, replacements: list[tuple[str, str]]) -> None:
    toml = root / "tinyml.toml"
    text = toml.read_text()
    for old, new in replacements:
        assert old in text, f"{old!r} not in {toml}: the example changed, update the test"
        text = text.replace(old, new)
    toml.write_text(text)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def report_rows(output: str, model: str) -> dict[tuple[str, str, str], str]:
    """(variant, board, runtime) -> the report's table line, for one model's table.

    The report shows a runtime column only when some variant has another runtime than tflm."""
    rows, state, has_runtime = {}, "before", False
    for line in output.splitlines():
        if state == "before" and re.match(rf"^{re.escape(model)}\s+\(", line):
            state = "header"
        elif state == "header" and line.split()[:2] == ["variant", "board"]:
            has_runtime = line.split()[2] == "runtime"
        elif state == "header" and line.strip().startswith("---"):
            state = "rows"
        elif state == "rows":
            if not line.strip():
                break
            parts = line.split()
            rows[(parts[0], parts[1], parts[2] if has_runtime else "tflm")] = line
    return rows


def test_cancer_mlp_reduced_end_to_end(tmp_path):
    """A reduced cancer_mlp: float32, dynamic, int8 (+AOT), prune and prune_qat on nano33ble, PyBadge and
    Uno. The dynamic-range (hybrid) variant cannot run on TFLite Micro: it still builds, for size only,
    and the report marks it incompatible."""
    root = copy_example("cancer_mlp", tmp_path / "cancer_mlp")
    text = (root / "tinyml.toml").read_text()
    # keep five of the twelve variants: drop the other variant tables
    blocks = re.split(r"(?m)^(?=\[models\.cancer\.variants\.|\[models\.cancer\.firmware\]|# -{10,})", text)
    keep = [b for b in blocks if not re.match(r"\[models\.cancer\.variants\.(prune_2of4|cluster|prune_cluster|"
                                              r"cluster_qat|prune_cluster_qat|qat|float16)\]", b)]
    (root / "tinyml.toml").write_text("".join(keep))
    shrink(root, [("epochs = 60", "epochs = 8"), ("final_sparsity = 0.75, epochs = 10",
                                                   "final_sparsity = 0.75, epochs = 3"),
                  ("{ method = \"qat\", epochs = 5 }", "{ method = \"qat\", epochs = 1 }"),
                  ('converter = "auto"', 'converter = "keras"')])
    assert {v.name for v in load(root / "tinyml.toml").models[0].variants} == {"float32", "dynamic", "int8",
                                                                               "prune", "prune_qat"}
    doit(root)
    rep = doit(root, "report")
    b = root / "build" / "cancer"

    # int8 is far smaller than float32, and so is its firmware
    f32, i8 = (b / "float32" / "model.tflite").stat().st_size, (b / "int8" / "model.tflite").stat().st_size
    assert i8 < 0.5 * f32
    size = {(v, bd, rt): read_json(b / v / (bd if rt == "tflm" else f"{bd}.aot") / "size.json")
            for v, bd, rt in [("float32", "nano33ble", "tflm"), ("int8", "nano33ble", "tflm"),
                              ("int8", "nano33ble", "aot"), ("float32", "uno", "tflm")]}
    assert size[("int8", "nano33ble", "tflm")]["flash_used"] < size[("float32", "nano33ble", "tflm")]["flash_used"]
    assert size[("float32", "nano33ble", "tflm")]["fits"] is True
    assert size[("float32", "nano33ble", "tflm")]["breakdown"]["flash"]["model"] == f32
    # the Uno cannot hold the float model: an estimate, over by the reported number of bytes
    uno = size[("float32", "uno", "tflm")]
    assert uno["estimate"] is True and uno["fits"] is False
    assert uno["flash_over_by"] == uno["flash_used"] - uno["flash_limit"] > f32 - uno["flash_limit"] > 0
    # the AOT build really links the generated C model: its weight arrays and its own small arena,
    # no flatbuffer and no TFLM arena
    aot = size[("int8", "nano33ble", "aot")]
    aot_json = read_json(b / "int8" / "aot.json")
    assert aot["breakdown"]["flash"]["model"] == aot_json["weights_bytes"] < i8
    assert aot["breakdown"]["ram"]["arena"] < read_json(b / "int8" / "analysis.json")["arena"]["bytes"]
    assert aot["ram_used"] < size[("int8", "nano33ble", "tflm")]["ram_used"]
    assert aot["flash_used"] < size[("int8", "nano33ble", "tflm")]["flash_used"]

    # pruning reached the requested sparsity in every kernel, and it survives QAT
    for v in ("prune", "prune_qat"):
        rec = read_json(b / v / "compress.json")
        kernels = rec["steps"][0]["kernels"]
        assert kernels and all(abs(k["sparsity"] - 0.75) < 0.02 for k in kernels.values()), kernels
    qat_kernels = read_json(b / "prune_qat" / "compress.json")["steps"][1]["kernels"]
    assert qat_kernels and all(k["sparsity"] >= 0.7 for k in qat_kernels.values()), qat_kernels
    # ... which the zip compressor sees even though the .tflite keeps every zero
    gz = {v: read_json(b / v / "compress.json")["final"]["keras_gzip_bytes"] for v in ("prune",)}
    assert gz["prune"] < read_json(b / "prune" / "compress.json")["trained"]["keras_gzip_bytes"] * 0.6

    # accuracy is real: a standardised breast-cancer MLP gets well above chance even in 8 epochs
    for v in ("float32", "int8", "prune", "prune_qat"):
        m = read_json(b / v / "metrics.json")
        assert m["primary"]["name"] == "accuracy" and m["primary"]["value"] > 0.85, (v, m["primary"])

    # the hybrid variant: smaller than float32, its header says TFLM cannot run it (with the reason), and
    # its firmware is still linked so that its flash can be compared
    dyn = b / "dynamic"
    assert (dyn / "model.tflite").stat().st_size < 0.5 * f32
    assert read_json(dyn / "analysis.json")["tflm_compatible"] is False
    header = (dyn / "model_data.h").read_text()
    assert "#define TINYML_TFLM_COMPATIBLE 0" in header and "FULLY_CONNECTED" in header
    assert "#define TINYML_TFLM_COMPATIBLE 1" in (b / "int8" / "model_data.h").read_text()
    dyn_size = read_json(dyn / "nano33ble" / "size.json")
    assert dyn_size["breakdown"]["flash"]["model"] == (dyn / "model.tflite").stat().st_size
    assert read_json(dyn / "metrics.json")["primary"]["value"] > 0.85  # the host runtime does run it

    rows = report_rows(rep.stdout, "cancer")
    for board in TWO + ("uno",):
        assert re.search(r"\sincompatible \(", rows[("dynamic", board, "tflm")]), rows[("dynamic", board, "tflm")]
    assert not re.search(r"Ship: .*cancer/dynamic", rep.stdout)
    assert re.search(r"\sNO \(\+[\d,]+ B flash", rows[("float32", "uno", "tflm")])
    # no TFLM library here: the interpreter is estimated, and the row says so
    assert rows[("float32", "nano33ble", "tflm")].rstrip().endswith("yes (estimate)")
    assert re.search(r"\s~[\d,]+ / 983,040", rows[("float32", "nano33ble", "tflm")])
    assert ("int8", "nano33ble", "aot") in rows and ("prune_qat", "adafruit_pybadge_m4", "tflm") in rows
    assert len(rows) == 5 * 3 + 3  # five variants on three boards, plus int8's AOT builds
    assert (root / "build" / "report.md").is_file() and (root / "build" / "report.json").is_file()
    # a second doit has nothing to do (the Uno estimates and the incompatible variant included)
    again = doit(root)
    assert not [line for line in again.stdout.splitlines() if line.startswith(".  ")], again.stdout


def test_waveform_cnn_reduced_end_to_end(tmp_path):
    """A reduced waveform_cnn: on a 115-parameter Conv1D, int8 buys RAM (not flash); pruning keeps the
    size; filter removal really shrinks the model, its MACs and its arena."""
    root = copy_example("waveform_cnn", tmp_path / "waveform_cnn")
    shrink(root, [("samples = 900", "samples = 300"), ("epochs = 60", "epochs = 15"),
                  ("final_sparsity = 0.5, epochs = 8,", "final_sparsity = 0.5, epochs = 3,"),
                  ('norm = "l1", epochs = 8,', 'norm = "l1", epochs = 3,')])
    doit(root)
    rep = doit(root, "report")
    b = root / "build" / "waveforms"
    variants = ("float32", "int8", "prune", "remove", "prune_remove")
    tfl = {v: (b / v / "model.tflite").stat().st_size for v in variants}
    an = {v: read_json(b / v / "analysis.json") for v in variants}
    # int8 stores a quarter of the weight bytes, but the graph's overhead dominates such a small model;
    # the activations (62 x 16 floats after the convolution) are what int8 really shrinks
    assert an["int8"]["flatbuffer"]["data_bytes"] < 0.5 * an["float32"]["flatbuffer"]["data_bytes"]
    assert an["int8"]["arena"]["bytes"] < 0.5 * an["float32"]["arena"]["bytes"]
    assert abs(tfl["prune"] - tfl["int8"]) < 256  # pruning leaves its zeros in the file
    assert tfl["remove"] < tfl["int8"]            # removal takes the filters out
    removed = read_json(b / "remove" / "compress.json")
    assert removed["final"]["params"] < removed["trained"]["params"]
    assert removed["final"]["macs"] < 0.6 * removed["trained"]["macs"]
    pr = read_json(b / "prune_remove" / "compress.json")
    assert [s["method"] for s in pr["steps"]] == ["remove", "prune"]
    conv = [k for name, k in pr["steps"][1]["kernels"].items() if "conv1d" in name]
    assert conv and conv[0]["shape"][-1] == 8 and conv[0]["sparsity"] >= 0.45
    assert "CONV_2D" in an["int8"]["ops"]         # TFLite lowers Conv1D to EXPAND_DIMS + CONV_2D
    assert an["remove"]["macs"] < an["int8"]["macs"]
    assert an["remove"]["arena"]["bytes"] < an["int8"]["arena"]["bytes"]
    for v in variants:
        m = read_json(b / v / "metrics.json")
        assert m["primary"]["name"] == "accuracy" and 0.0 <= m["primary"]["value"] <= 1.0, (v, m["primary"])
        for board in TWO:
            s = read_json(b / v / board / "size.json")
            # measured build + the interpreter from the table of real links (no TFLM library here)
            assert s["fits"] is True and s["estimate"] is True and s["interpreter_estimate"]["flash"] > 15_000
            assert s["breakdown"]["flash"]["model"] == tfl[v]
            assert s["breakdown"]["ram"]["arena"] == an[v]["arena"]["bytes"]
    # the float model learned (three balanced classes: chance is 1/3)
    assert read_json(b / "float32" / "metrics.json")["primary"]["value"] > 0.8
    rows = report_rows(rep.stdout, "waveforms")
    assert len(rows) == 5 * 2 and all(line.rstrip().endswith("yes (estimate)") for line in rows.values())
    # a second doit has nothing to do
    again = doit(root)
    assert not [line for line in again.stdout.splitlines() if line.startswith(".  ")]
