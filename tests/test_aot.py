"""AOT C inference: generated code compiles clean, is bit-exact with the real TFLM interpreter on
the host and on QEMU's Cortex-M4, plans less RAM than TFLM, and fails loudly when it should.

Models are real (TFLite converter, 1-2 epochs on random / sklearn data), cached on disk per
builder source (tasks/aot/testmodels.py), so only the first run pays for TensorFlow.
"""
from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from doit_tinyml.aot import KERNEL_SOURCES, KERNELS_DIR
from doit_tinyml.engine.errors import TinyMLError

MODEL_CACHE = Path(tempfile.gettempdir()) / "doit-tinyml-aot-models"
ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
STRICT = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
CHECKED = ["sine_float", "sine_int8", "conv1d_int8", "cnn_int8", "zoo_int8", "zoo_float"]


@pytest.fixture(scope="session")
def models():
    from doit_tinyml.aot import testmodels

    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = testmodels.build(name, MODEL_CACHE)
        return cache[name]

    return get


# ------------------------------------------------------------------------------ host arithmetic

def test_quantize_multiplier_matches_tflite_definition():
    from doit_tinyml.aot.generate import quantize_multiplier

    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.75) == (3 << 29, 0)
    # q rounds up to 2^31: TFLite halves it and bumps the exponent
    assert quantize_multiplier(1.0 - 2.0 ** -40) == (1 << 30, 1)
    rng = random.Random(0)
    for _ in range(200):
        d = 10 ** rng.uniform(-8, 2)
        q, s = quantize_multiplier(d)
        assert (1 << 30) <= q < (1 << 31)
        assert abs(q * 2.0 ** (s - 31) - d) <= d * 2.0 ** -31


def test_plan_packs_without_overlap_and_beats_naive_sum():
    from doit_tinyml.aot.plan import Buffer, check_plan, plan_memory

    rng = random.Random(1)
    for _ in range(50):
        bufs = []
        for i in range(rng.randint(1, 12)):
            a = rng.randint(0, 10)
            bufs.append(Buffer(f"b{i}", rng.randint(1, 500), a, a + rng.randint(0, 3)))
        total = plan_memory(bufs)
        check_plan(bufs)
        assert total % 16 == 0
        assert total <= sum((b.size + 15) // 16 * 16 for b in bufs)
        assert all(b.offset + b.size <= total for b in bufs)
    # a chain a->b->c: a and c can share memory, b cannot share with either
    chain = [Buffer("a", 100, 0, 1), Buffer("b", 64, 1, 2), Buffer("c", 100, 2, 3)]
    assert plan_memory(chain) == 112 + 64
    assert chain[0].offset == chain[2].offset


# ------------------------------------------------------------------------------ generated code

@pytest.mark.parametrize("name", CHECKED)
def test_generated_code_compiles_clean_for_host_and_cortex_m4(name, models, tmp_path):
    from doit_tinyml.aot.generate import generate

    tfl, _ = models(name)
    info = generate(tfl, tmp_path, prefix="tinyml")
    src = tmp_path / "tinyml_model.c"
    assert src.is_file() and (tmp_path / "tinyml_model.h").is_file()
    text = src.read_text()
    assert "malloc" not in text and f"tinyml_arena[{max(info['planned_bytes'], 16)}]" in text
    assert "__attribute__((aligned(16)))" in text
    for cc, extra in (("gcc", []), ("arm-none-eabi-gcc", ARM_FLAGS)):
        if shutil.which(cc) is None:
            pytest.skip(f"{cc} not installed")
        for c in (src, *KERNEL_SOURCES):
            r = subprocess.run([cc, *STRICT, *extra, f"-I{tmp_path}", f"-I{KERNELS_DIR}", "-c", str(c), "-o",
                                str(tmp_path / f"{c.stem}.{cc}.o")], capture_output=True, text=True)
            assert r.returncode == 0, f"{cc} {c.name}:\n{r.stderr}"


@pytest.mark.parametrize("name", CHECKED)
def test_host_outputs_identical_to_tflm_and_arena_smaller(name, models, tmp_path):
    import numpy as np

    from doit_tinyml.aot.check import host_check

    tfl, npz = models(name)
    res = host_check(tfl, npz, tmp_path / "aot.json", work_dir=tmp_path / "work")
    on_disk = json.loads((tmp_path / "aot.json").read_text())
    assert on_disk == res and res["passed"] is True
    assert res["samples"] == len(np.load(npz)["x_test"]) > 0
    if name.endswith("float"):
        assert res["float_max_rel_error"] <= 1e-5
    elif name in ("conv1d_int8", "zoo_int8"):  # int8 models with float I/O (QUANTIZE ... DEQUANTIZE inside)
        assert "QUANTIZE" in res["ops"] and "DEQUANTIZE" in res["ops"] and "MEAN" in res["ops"]
        assert res["float_max_rel_error"] == 0.0
    else:
        assert res["int8_identical_fraction"] == 1.0
    # every operator the compiler supports; EXPAND_DIMS comes with conv1d_int8; the converter turns
    # tf.squeeze into RESHAPE, and SQUEEZE takes the same alias path
    if name.startswith("zoo"):
        from doit_tinyml.aot.generate import SUPPORTED_OPS

        missing = set(SUPPORTED_OPS) - set(res["ops"]) - {"EXPAND_DIMS", "SQUEEZE"}
        if name == "zoo_float":
            missing -= {"QUANTIZE", "DEQUANTIZE"}
        assert not missing, missing
    # the offline plan never needs more than TFLM: not even with the caller's I/O buffers added,
    # against TFLM's 32-bit figure
    assert 0 < res["planned_bytes"] <= res["tflm_arena_bytes"]
    assert res["planned_bytes"] + res["io_bytes"] <= res["tflm_arena_target32_bytes"]


def test_unsupported_op_names_the_op_and_keeps_tflm(models, tmp_path):
    from doit_tinyml.aot.generate import generate, unsupported_ops

    tfl, _ = models("tile_float")
    assert [p["op"] for p in unsupported_ops(tfl)] == ["TILE"]
    with pytest.raises(TinyMLError, match=r"operator #1 TILE is not supported.*keep runtime = \"tflm\""):
        generate(tfl, tmp_path)
    assert not (tmp_path / "tinyml_model.c").exists()


def test_dynamic_shape_is_refused(models, tmp_path):
    from doit_tinyml.aot.generate import generate

    tfl, _ = models("dynamic_float")
    with pytest.raises(TinyMLError, match=r"dynamic shape \[-1, -1, 4\].*keep runtime = \"tflm\""):
        generate(tfl, tmp_path)


def test_generation_is_deterministic(models, tmp_path):
    from doit_tinyml.aot.generate import generate

    tfl, _ = models("cnn_int8")
    generate(tfl, tmp_path / "a")
    generate(tfl, tmp_path / "b")
    for f in ("tinyml_model.c", "tinyml_model.h"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_corrupted_weight_fails_naming_first_differing_sample(models, tmp_path):
    import numpy as np

    from doit_tinyml.aot.check import check_generated, compile_host, load_inputs, run_host, tflm_outputs
    from doit_tinyml.aot.generate import generate

    tfl, npz = models("sine_int8")
    gen = tmp_path / "gen"
    info = generate(tfl, gen)
    src = gen / "tinyml_model.c"
    text = src.read_text()
    # the output layer's weights: the last int8 weights array; flip the top bits of its first byte
    arrays = list(re.finditer(r"static const int8_t tinyml_w_p?\d+\[\d+\](?: __attribute__\(\(aligned\(\d+\)\)\))? = \{\n  (-?\d+)", text))
    m = arrays[-1]
    v = int(m.group(1))
    flipped = ((v & 0xFF) ^ 0xC0) - 256 if ((v & 0xFF) ^ 0xC0) > 127 else (v & 0xFF) ^ 0xC0
    src.write_text(text[:m.start(1)] + str(flipped) + text[m.end(1):])

    # the truth: where do the corrupted build and TFLM first differ?
    xq = load_inputs(npz, info["input"])
    aot = run_host(compile_host(gen, tmp_path / "exe"), xq, info["output"], tmp_path)
    ref = tflm_outputs(tfl.read_bytes(), xq)
    bad = np.nonzero(np.any(aot != ref, axis=1))[0]
    assert len(bad) > 0, "corrupting the weight changed no output"
    # ... and the message names the sample, the first differing tensor and the operator producing it
    # (the output layer, operator #2: the first two layers are intact)
    with pytest.raises(TinyMLError, match=rf"differs from TFLM at sample {bad[0]}, output element 0: "
                                          rf"AOT {aot[bad[0], 0]} vs TFLM {ref[bad[0], 0]}.*"
                                          rf"first differing tensor is '[^']+' \(tensor #\d+, output of operator "
                                          rf"#2 FULLY_CONNECTED\), element 0: AOT -?\d+ vs TFLM -?\d+"):
        check_generated(tfl, npz, gen, info, work_dir=tmp_path / "w")


def test_stage_writes_sources_and_aot_json(models, tmp_path):
    from doit_tinyml.aot import stage

    tfl, npz = models("sine_int8")
    res = stage.run(tfl, npz, tmp_path / "aot", tmp_path / "aot.json", core_dir=None)
    assert json.loads((tmp_path / "aot.json").read_text())["passed"] is True
    srcs, incs = stage.firmware_sources(tmp_path / "aot")
    assert all(p.is_file() for p in srcs) and all(d.is_dir() for d in incs)
    assert res["ops"] == ["FULLY_CONNECTED"] * 3


# ------------------------------------------------------------------------------ on the target

@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="needs qemu-system-arm and arm-none-eabi-gcc")
@pytest.mark.parametrize("name", ["cnn_int8", "zoo_float"])
def test_cortex_m4_under_qemu_matches_host(name, models, tmp_path_factory):
    from doit_tinyml.aot.target import target_check

    tfl, npz = models(name)
    work = tmp_path_factory.mktemp("aot_target")
    res = target_check(tfl, npz, work / "target.json", work_dir=work / "w", core_dir=work / "core", max_samples=20)
    assert res["samples"] == 20
    # float too: no fused multiply-add, and exp/tanh come from the kernel library, not libm
    assert res["identical"] is True and res["max_rel_diff_vs_host"] == 0.0
    # these tiny CNNs cost a few hundred thousand instructions; deterministic under -icount
    assert 10_000 < res["instructions_min"] <= res["instructions_per_inference"] <= res["instructions_max"] < 5_000_000
    assert res["flash_used"] > 0 and json.loads((work / "target.json").read_text()) == res
    # the instruction profile of the same inferences (the time model's input): every instruction of them
    prof = res["profile"]
    assert prof["inferences"] == 20 and prof["blocks"] and prof["block_fields"][-1] == "classes"
    assert abs(prof["instructions"] / 20 - res["instructions_per_inference"]) <= 0.01 * res["instructions_per_inference"]
    totals = {}
    for b in prof["blocks"]:
        for k, v in b[-1].items():
            totals[k] = totals.get(k, 0) + v * b[0]
    assert totals.get("load", 0) > 0 and totals.get("branch", 0) > 0
    if name == "cnn_int8":
        assert totals.get("dsp", 0) > 0  # the DSP kernels' SMLAD and friends


def test_command_line(models, tmp_path):
    tfl, npz = models("sine_int8")
    r = subprocess.run([sys.executable, "-m", "doit_tinyml.aot", str(tfl), str(tmp_path / "out"), "--check", str(npz)],
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "out" / "aot.json").read_text())["int8_identical_fraction"] == 1.0
    bad, _ = models("tile_float")
    r = subprocess.run([sys.executable, "-m", "doit_tinyml.aot", str(bad), str(tmp_path / "bad")],
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 1 and "TILE is not supported" in r.stderr and "Traceback" not in r.stderr
