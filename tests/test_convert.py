"""Convert stage: each post-training quantization and each conversion method, checked on the
flatbuffer that comes out (dtypes of tensors, I/O, batch signature), not on what we asked for."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from doit_tinyml import convert, dataset, train
from doit_tinyml.engine import tflite as tflite_info
from doit_tinyml.config import DatasetSettings, ModelSettings, TrainingSettings


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("convert")
    ds = DatasetSettings(source="sine", kind="generator", params={"samples": 300}, label=None, features=None,
                         test_split=0.2, normalize="none", class_names=None)
    dataset.run(ds, "regression", 3, d / "dataset.npz", d / "dataset.json")
    # 64x64 hidden weights: above TFLite's 1024-element threshold, so dynamic range really quantizes them
    arch = ModelSettings(layers=({"type": "dense", "units": 64, "activation": "relu"},
                                 {"type": "dense", "units": 64, "activation": "relu"},
                                 {"type": "dense", "units": 1}), builder=None, input_shape=None)
    train.run(arch, TrainingSettings(epochs=3, loss="mse"), 3, d / "dataset.npz", d / "dataset.json",
              d / "trained.keras", d / "history.json")
    return d


def conv(d: Path, name: str, **kw) -> tuple[dict, tflite_info.ModelInfo]:
    kw.setdefault("io", "float32")
    kw.setdefault("converter", "keras")
    rec = convert.run(d / "trained.keras", d / "dataset.npz", d / f"{name}.tflite", d / f"{name}.json",
                      representative_samples=32, **kw)
    assert json.loads((d / f"{name}.json").read_text()) == json.loads(json.dumps(rec))
    return rec, tflite_info.load(d / f"{name}.tflite")


def weight_dtypes(info) -> set[str]:
    return {t.dtype for t in info.main.tensors if t.is_constant and len(t.shape) == 2}


def test_full_integer_int8_with_int8_io(trained):
    _, info = conv(trained, "int8", quantization="int8", io="int8")
    assert info.io_tensor("input").dtype == "INT8" and info.io_tensor("output").dtype == "INT8"
    activations = [t for t in info.main.tensors if not t.is_constant]
    assert activations and all(t.dtype == "INT8" for t in activations)
    assert weight_dtypes(info) == {"INT8"}
    assert "QUANTIZE" not in info.ops()


def test_int8_with_float_io_keeps_float_edges(trained):
    _, info = conv(trained, "int8f", quantization="int8", io="float32")
    assert info.io_tensor("input").dtype == "FLOAT32" and info.io_tensor("output").dtype == "FLOAT32"
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(info.ops()) and weight_dtypes(info) == {"INT8"}


def test_float16_weights_are_float16(trained):
    rec, info = conv(trained, "f16", quantization="float16")
    assert weight_dtypes(info) == {"FLOAT16"} and tflite_info.is_float16(info)
    assert info.io_tensor("input").dtype == "FLOAT32"


def test_dynamic_range_is_hybrid(trained):
    _, info = conv(trained, "dyn", quantization="dynamic")
    assert "INT8" in weight_dtypes(info)
    assert tflite_info.hybrid_ops(info), "a dynamic-range model must be flagged as hybrid"
    assert all(t.dtype == "FLOAT32" for t in info.main.tensors if not t.is_constant)


def test_int16x8_has_int16_activations(trained):
    _, info = conv(trained, "i16", quantization="int16x8", io="int16")
    assert info.io_tensor("input").dtype == "INT16"
    assert weight_dtypes(info) == {"INT8"}


@pytest.mark.parametrize("method", ["saved_model", "concrete"])
def test_saved_model_and_concrete_have_a_fixed_batch_of_one(trained, method):
    rec, info = conv(trained, method, quantization="float32", converter=method)
    assert rec["chosen"] == method
    assert info.io_tensor("input").shape_signature == [1, 1]
    assert rec["methods"][method]["max_abs_error_vs_keras"] < 1e-4


def test_auto_builds_all_three_and_keeps_the_smallest_that_matches(trained):
    rec, _ = conv(trained, "auto", quantization="int8", io="int8", converter="auto")
    sizes = {m: r["bytes"] for m, r in rec["methods"].items()}
    assert set(sizes) == {"keras", "saved_model", "concrete"}
    matching = {m: s for m, s in sizes.items() if rec["methods"][m]["matches"]}
    assert rec["chosen"] == min(matching, key=matching.get)
    assert rec["tflite_bytes"] == sizes[rec["chosen"]] == (trained / "auto.tflite").stat().st_size


def test_conversion_is_byte_deterministic(trained):
    conv(trained, "det1", quantization="int8", io="int8", converter="concrete")
    conv(trained, "det2", quantization="int8", io="int8", converter="concrete")
    assert (trained / "det1.tflite").read_bytes() == (trained / "det2.tflite").read_bytes()
