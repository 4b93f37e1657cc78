"""analyze stage: real .tflite files from the TFLite converter, real TFLite Micro interpreter."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import conftest_models  # noqa: E402

from doit_tinyml import analyze
from doit_tinyml.engine import compat
from doit_tinyml.engine import tflite as tflite_info  # noqa: E402
from doit_tinyml.engine.errors import TinyMLError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def model():
    return conftest_models.model_path


@pytest.fixture(scope="session")
def analysed(tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis")
    cache = {}

    def get(name: str) -> dict:
        if name not in cache:
            cache[name] = analyze.run(conftest_models.model_path(name), out / f"{name}.json")
            assert json.loads((out / f"{name}.json").read_text()) == json.loads(json.dumps(cache[name]))
        return cache[name]

    return get


def test_analysis_json_follows_the_contract(analysed, model):
    a = analysed("float32")
    for key in ("tflite_bytes", "flatbuffer", "ops", "n_subgraphs", "input", "output", "params", "macs",
                "hybrid", "arena", "tflm_compatible", "problems", "layers", "peak_layer"):
        assert key in a, key
    assert a["tflite_bytes"] == model("float32").stat().st_size
    fb = a["flatbuffer"]
    assert fb["data_bytes"] + fb["non_data_bytes"] == a["tflite_bytes"]
    assert fb["data_bytes"] >= a["params"] * 4  # float32 weights live in data buffers
    assert set(a["arena"]) >= {"host_bytes", "target32_bytes", "margin", "bytes", "split"}
    assert set(a["arena"]["split"]) == {"activations", "persistent", "scratch"}
    # the header reserves the larger kernel set's exact 32-bit arena (reference or CMSIS-NN) plus the margin
    largest = max([a["arena"]["target32_bytes"]] + [k["target32_bytes"] for k in (a["arena"]["by_kernels"] or {}).values()])
    assert a["arena"]["bytes"] == math.ceil(largest * 1.10 / 16) * 16 and largest >= a["arena"]["target32_bytes"]
    assert a["arena"]["bytes"] % 16 == 0
    assert sum(a["arena"]["split"].values()) == a["arena"]["target32_bytes"]
    assert a["tflm_compatible"] is True and a["problems"] == []
    assert a["ops"] == ["FULLY_CONNECTED", "SOFTMAX"] and a["n_subgraphs"] == 1


def test_the_header_arena_covers_every_kernel_set_and_tflm_generation(analysed):
    """arena.by_kernels.<set>.by_tflm holds the exact figure of each TFLM generation the rules describe (the Python
    interpreter's upstream tflite-micro and the 2023 Arduino library); arena.bytes (what model_data.h reserves) is
    the largest of them plus the margin, and bytes_for says which one it is."""
    from doit_tinyml.engine import arena32

    a = analysed("conv_int8")["arena"]
    figures = {(k, g): v for k, fig in a["by_kernels"].items() for g, v in fig["by_tflm"].items()}
    assert set(figures) == {(k, g) for k in ("reference", "cmsis_nn") for g in arena32.GENERATIONS}
    assert all(v["exact"] for v in figures.values()), figures
    assert figures[("reference", "upstream")]["target32_bytes"] == a["target32_bytes"]
    largest = max(v["target32_bytes"] for v in figures.values())
    assert a["bytes"] == math.ceil(largest * 1.10 / 16) * 16
    b = a["bytes_for"]
    assert figures[(b["kernels"], b["tflm"])]["target32_bytes"] == b["target32_bytes"] == largest
    # the CMSIS-NN kernels of the Arduino library request an im2col buffer for the 3x3 convolution and one for
    # the 3x3 depthwise convolution: more than the 2026 kernels, which need none for the depthwise one
    assert figures[("cmsis_nn", "arduino")]["target32_bytes"] > figures[("reference", "arduino")]["target32_bytes"]


def test_params_and_macs_match_the_layer_sizes(analysed):
    n = conftest_models.N_FEATURES_SMALL
    a = analysed("float32")  # Dense(16) -> Dense(4) softmax, biases kept
    assert a["params"] == (n * 16 + 16) + (16 * 4 + 4)
    assert a["macs"] == n * 16 + 16 * 4 + 4  # two matmuls + one per softmax output
    c = analysed("conv_int8")  # 8x8x1 -> conv3x3x4 (6x6) -> dw3x3 (4x4) -> pool2 (2x2x4) -> dense 3
    assert c["params"] == (9 * 4 + 4) + (9 * 4 + 4) + (16 * 3 + 3)
    assert c["macs"] == 6 * 6 * 4 * 9 + 4 * 4 * 4 * 9 + 2 * 2 * 4 * 4 + 16 * 3 + 3
    by_op = {row["op"]: row for row in c["layers"]}
    assert by_op["CONV_2D"]["macs"] == 6 * 6 * 4 * 9 and by_op["CONV_2D"]["params"] == 40
    assert by_op["DEPTHWISE_CONV_2D"]["outputs"][0]["shape"] == [1, 4, 4, 4]


def test_int8_model_is_int8_inside_and_io_is_what_was_asked(analysed, model):
    info = tflite_info.load(model("int8"))
    acts = [t for t in info.main.tensors if not t.is_constant]
    assert acts and all(t.dtype == "INT8" for t in acts)
    a = analysed("int8")
    assert a["input"]["dtype"] == "int8" and a["output"]["dtype"] == "int8"
    assert a["input"]["scale"] > 0 and isinstance(a["input"]["zero_point"], int)
    assert a["hybrid"] is False and a["float16"] is False and a["tflm_compatible"]

    f = analysed("int8_floatio")
    assert f["input"]["dtype"] == "float32" and f["output"]["dtype"] == "float32"
    assert f["ops"][0] == "QUANTIZE" and f["ops"][-1] == "DEQUANTIZE"
    inner = tflite_info.load(model("int8_floatio"))
    fc = [op for op in inner.main.operators if op.builtin == "FULLY_CONNECTED"]
    assert all(inner.main.tensors[op.inputs[0]].dtype == "INT8" for op in fc)
    # no float compute op left inside: QUANTIZE/DEQUANTIZE at the edges are fine
    assert not [p for p in f["problems"] if "float32 inside an int8 model" in p["message"]]


def test_float16_weights_detected_and_reported(analysed, model):
    a = analysed("float16")
    assert a["float16"] is True and a["hybrid"] is False
    info = tflite_info.load(model("float16"))
    assert any(t.is_constant and t.dtype == "FLOAT16" for t in info.main.tensors)
    assert a["tflm_compatible"] is False and a["arena"] is None
    p = a["problems"][0]
    assert p["op"] == "DEQUANTIZE" and "float16" in p["message"] and 'quantization = "int8"' in p["fix"]


def test_hybrid_model_flagged_with_its_fix(analysed):
    a = analysed("hybrid")
    assert a["hybrid"] is True
    assert a["tflm_compatible"] is False and a["arena"] is None
    p = a["problems"][0]
    assert p["op"] == "FULLY_CONNECTED" and p["severity"] == "error"
    assert "dynamic-range" in p["message"]
    assert "not supported" in p["message"]  # TFLM's own words from the real interpreter
    assert p["fix"] == 'use full-integer quantization with a representative dataset (quantization = "int8")'


def test_op_tflm_lacks_is_named_not_crashed(analysed):
    a = analysed("tile")  # tf.tile converts to the TFLite builtin TILE; TFLM has no kernel for it
    assert "TILE" in a["ops"] and "TILE" not in compat.TFLM_KERNELS
    assert a["tflm_compatible"] is False and a["arena"] is None
    p = a["problems"][0]
    assert p["op"] == "TILE"
    assert "Didn't find op for builtin opcode 'TILE'" in p["message"]
    assert a["layers"] and a["params"] > 0  # the rest of the analysis is still there


def test_uint8_io_and_several_subgraphs_are_warnings_tflm_runs(analysed):
    u = analysed("uint8io")
    assert u["input"]["dtype"] == "uint8" and u["output"]["dtype"] == "uint8"
    assert u["tflm_compatible"] is True and u["arena"] is not None  # TFLM ran it
    warn = [p for p in u["problems"] if p.get("tensor")]
    assert len(warn) == 2 and all(p["severity"] == "warning" and 'io = "int8"' in p["fix"] for p in warn)

    w = analysed("while")
    assert w["n_subgraphs"] == 3 and "WHILE" in w["ops"]
    assert w["tflm_compatible"] is True and w["arena"]["target32_bytes"] > 0
    assert [p["op"] for p in w["problems"]] == ["WHILE"] and w["problems"][0]["severity"] == "warning"


def test_float_op_left_inside_an_int8_model_is_named(analysed):
    a = analysed("mixed")  # int8 dense layers around a SIN the quantizer leaves in float
    assert "SIN" in a["ops"] and "QUANTIZE" in a["ops"] and "DEQUANTIZE" in a["ops"]
    assert a["tflm_compatible"] is True and a["arena"] is not None  # TFLM runs float SIN
    p = [p for p in a["problems"] if "inside an int8 model" in p["message"]]
    assert len(p) == 1 and p[0]["op"] == "SIN" and p[0]["severity"] == "warning"


def test_select_tf_ops_custom_op_is_named(analysed):
    a = analysed("flex")
    assert "CUSTOM:FlexCumprod" in a["ops"]
    assert a["tflm_compatible"] is False and a["arena"] is None
    assert [p["op"] for p in a["problems"]] == ["CUSTOM:FlexCumprod"]
    p = a["problems"][0]
    assert "FlexCumprod" in p["message"] and "Failed to get registration from op code CUSTOM" in p["message"]
    assert "SELECT_TF_OPS" in p["fix"]


def test_per_layer_peak_is_the_true_maximum_and_tflm_agrees(analysed, model):
    for name in ("float32", "conv_int8", "conv_float32", "float16"):
        a = analysed(name)
        alive = [row["alive_bytes"] for row in a["layers"]]
        assert alive[a["peak_layer"]] == max(alive)
        assert [row["peak"] for row in a["layers"]].count(True) == 1 and a["layers"][a["peak_layer"]]["peak"]
    c = analysed("conv_int8")
    # step 0 (CONV_2D): the 8x8x1 int8 input and the 6x6x4 int8 output are alive
    assert c["layers"][0]["alive_bytes"] == 8 * 8 * 1 + 6 * 6 * 4 == c["peak_alive_bytes"]
    # the real TFLM planner cannot place the live set in less than the live set
    for name in ("float32", "int8", "conv_int8", "conv_float32"):
        a = analysed(name)
        assert a["arena"]["split"]["activations"] >= a["peak_alive_bytes"]


def test_static_kernel_list_is_the_pinned_wheel(tmp_path):
    """TFLM_KERNELS names exactly the builtin kernels compiled into the pinned tflite-micro wheel."""
    if not shutil.which("nm"):
        pytest.skip("binutils nm not installed")
    import tflite_micro

    so = next(Path(tflite_micro.__file__).parent.glob("python/tflite_micro/_runtime*.so"))
    syms = subprocess.run(["nm", "-C", str(so)], capture_output=True, text=True, check=True).stdout
    import re

    registered = set(re.findall(r"Register_([A-Z0-9_]+)\(", syms))
    builtins = set(tflite_info.builtin_op_names().values())
    assert set(compat.TFLM_KERNELS) | compat.TFLM_KERNELS_NO_METHOD == registered & builtins


def test_user_mistakes_are_tinymlerrors(tmp_path, model):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(TinyMLError, match="not a TFLite flatbuffer"):
        analyze.run(bad, tmp_path / "a.json")
    with pytest.raises(TinyMLError, match="does not exist"):
        analyze.run(tmp_path / "missing.tflite", tmp_path / "a.json")
    with pytest.raises(TinyMLError, match="arena_margin"):
        analyze.run(model("int8"), tmp_path / "a.json", arena_margin=-1)
    assert not (tmp_path / "a.json").exists()


def test_importing_the_stage_modules_stays_light():
    code = ("import sys; import doit_tinyml.analyze, doit_tinyml.header, doit_tinyml.engine.tflm, doit_tinyml.engine.compat, doit_tinyml.engine.tflite; "
            "heavy = [m for m in ('tensorflow', 'numpy', 'tflite_micro', 'ai_edge_litert') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
