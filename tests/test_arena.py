"""Arena: real TFLM bisection on the host, and the 32-bit figure checked against a 32-bit TFLM build.

The 32-bit reference is mcufit's bundled wasm32 build of TFLite Micro (`mcufit/wasm/tflm.js`, run
with node, offline). It runs TFLM's generic_model_benchmark, which prints RecordingMicroAllocator's
table after AllocateTensors. That harness also creates `MicroResourceVariables::Create(allocator, 100)`
which our firmware does not: 100 x sizeof(MicroResourceVariable) (20 bytes on 32-bit: three pointers,
a size_t and an int8_t, padded) + sizeof(MicroResourceVariables) (12) = 2012 bytes of its
'Persistent buffer data', subtracted below.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import conftest_models  # noqa: E402

from doit_tinyml.engine import tflm as arena  # noqa: E402
from doit_tinyml.engine.errors import TinyMLError  # noqa: E402

BENCH_RESOURCE_VARIABLES_32 = 100 * 20 + 12
TOLERANCE = 0.20  # our 32-bit figure may read up to 20 % high (kernel op data kept at 64-bit size), never low


@pytest.fixture(scope="session")
def measured():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = arena.measure(conftest_models.model_path(name).read_bytes())
        return cache[name]

    return get


def _mcufit_wasm32(model_path: Path) -> tuple[int, dict[str, dict[str, int]]]:
    import mcufit.wasm
    from mcufit.estimation.measured import parse_arena_table

    shim = Path(mcufit.wasm.__file__).parent / "run_benchmark.mjs"
    out = subprocess.run(["node", str(shim), str(model_path)], capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    activations, overhead = parse_arena_table(text)
    rows = {}
    for name, used, requested, count in re.findall(r"^\s*([A-Za-z ]+?)\s*\|\s*\d+\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)",
                                                   text.split("[[ Table ]]: Allocations", 1)[-1], re.M):
        rows[name] = {"used": int(used), "requested": int(requested), "count": int(count)}
    return activations + overhead, rows


def test_bisection_finds_the_smallest_arena_that_runs(measured):
    model = conftest_models.model_path("int8").read_bytes()
    m = measured("int8")
    host = m["host_bytes"]
    assert host % 16 == 0
    ok, msg = arena.probe(model, host)
    assert ok, msg
    ok, msg = arena.probe(model, host - 16)
    assert not ok
    assert msg.strip()  # TFLM said why (or the crash was recorded)
    # the allocation report is the real one: head + tail = total, and it fits in the minimum
    alloc = m["allocations"]
    assert alloc["head"] + alloc["tail"] == alloc["total"] <= host


def test_32bit_struct_sizes_match_a_32bit_tflm_build(measured):
    if not shutil.which("node"):
        pytest.skip("node is not installed: mcufit's wasm32 TFLM needs it")
    for name in ("float32", "int8", "conv_int8"):
        cats = measured(name)["allocations"]["categories"]
        _, rows = _mcufit_wasm32(conftest_models.model_path(name))
        ev, nodes = cats["TfLiteEvalTensor data"], cats["NodeAndRegistration struct"]
        tens = cats["Persistent TfLiteTensor data"]
        assert rows["Eval tensor data"]["count"] == ev["count"]
        assert rows["Eval tensor data"]["used"] == ev["count"] * arena.EVAL_TENSOR[1]
        assert rows["Node and registration array"]["used"] == nodes["count"] * arena.NODE_AND_REGISTRATION[1]
        assert rows["Persistent tensor data"]["used"] == tens["count"] * arena.TFLITE_TENSOR[1]
        # and the host really is 64-bit
        assert ev["used"] == ev["count"] * arena.EVAL_TENSOR[0]


def test_target32_is_within_tolerance_of_mcufit_wasm32(measured):
    if not shutil.which("node"):
        pytest.skip("node is not installed: mcufit's wasm32 TFLM needs it")
    for name in ("float32", "int8", "conv_int8"):
        m = measured(name)
        d = arena.derive_target32(m["host_bytes"], m["allocations"])
        total32, _ = _mcufit_wasm32(conftest_models.model_path(name))
        reference = total32 - BENCH_RESOURCE_VARIABLES_32
        # mcufit reports the state after AllocateTensors; compare the same state (no planning scratch)
        final32 = d["final32_bytes"]
        assert reference <= final32 <= reference * (1 + TOLERANCE), (name, final32, reference)
        # the conservative derivation is an upper bound of the exact replay, and both stay below the host
        assert m["final32_bytes"] <= final32 and m["target32_bytes"] <= d["target32_bytes"] < m["host_bytes"]
        assert m["split"]["activations"] == m["host_split"]["activations"]  # data sizes do not change


def test_incompatible_model_reports_tflm_message_instead_of_raising_from_tflm():
    res = arena.run_child(conftest_models.model_path("tile").read_bytes())
    assert res["ok"] is False and "Didn't find op for builtin opcode 'TILE'" in res["message"]
    with pytest.raises(TinyMLError, match="TILE"):
        arena.measure(conftest_models.model_path("tile").read_bytes())


def test_parse_allocations_reads_the_report(measured):
    alloc = measured("conv_int8")["allocations"]
    assert alloc["categories"]["NodeAndRegistration struct"]["count"] == 6  # six ops
    assert alloc["head"] >= 8 * 8 + 6 * 6 * 4  # conv input + output are alive together
    with pytest.raises(RuntimeError):
        arena.parse_allocations("nothing here")


# ------------------------------------------------------------------------------------------------- exact 32-bit arena
DATA = Path(__file__).resolve().parent / "data" / "arena32"
TARGETS = json.loads((DATA / "targets.json").read_text())


# Bisected the same way with the Arduino library (Arduino_TensorFlowLite 2.4.0-ALPHA, TFLM of 2023): (arena_min_bytes,
# arena_used_bytes) with its CMSIS-NN kernels, and with the reference kernels of its tflite-micro commit (4e62ea7b8)
# completed into it (reference_kernels). Its CMSIS-NN kernels request other scratch buffers (im2col for every
# convolution but a 1x1 stride-1 one, a buffer for a 3x3 depthwise one too) and no per-channel FULLY_CONNECTED data;
# its structs differ (builtin data of CONV_2D and FULLY_CONNECTED, OpData of FULLY_CONNECTED, MEAN and RELU6,
# CONCATENATION's Prepare, MEAN's scratch buffers).
ARDUINO = {
    "cmsis_nn": {
        "autoenc_int8": (1088, 692), "autoenc_int8_pt": (992, 692), "cnn2d_int8": (2144, 2132),
        "cnn_int8": (2448, 2388), "conv1d_int8": (3264, 2224), "fc_logistic_int8": (992, 644),
        "mlp128_int8": (2128, 1076), "sine_float": (1120, 784), "sine_int8": (1120, 724), "sine_int8_pt": (1120, 724),
        "squeeze_float": (1248, 928), "squeeze_int8": (1360, 916), "zoo_float": (7600, 7600), "zoo_int8": (5200, 4544),
        "zoo_int8_pt": (5200, 4288)},
    "reference": {
        "autoenc_int8": (1040, 644), "autoenc_int8_pt": (944, 644), "cnn2d_int8": (1968, 1956),
        "cnn_int8": (2224, 2212), "conv1d_int8": (3088, 2192), "fc_logistic_int8": (944, 596),
        "mlp128_int8": (2048, 996), "sine_float": (1056, 720), "sine_int8": (1056, 660), "sine_int8_pt": (1056, 660),
        "squeeze_float": (1264, 944), "squeeze_int8": (1264, 852), "zoo_float": (7728, 7728), "zoo_int8": (4976, 4480),
        "zoo_int8_pt": (4976, 4224)},
}


@pytest.mark.parametrize("name", sorted(TARGETS["models"]))
def test_exact_32bit_arena_equals_the_target_bisection(name):
    """analyze's target32_bytes (host run + the replay of TFLM's allocator) against the minimum bisected on
    QEMU's Cortex-M4 with the real TFLM of the Python interpreter's generation (recorded: targets.json), and
    per kernel set and TFLM generation (by_kernels.<set>.by_tflm) against the minimum bisected with each."""
    model = (DATA / f"{name}.tflite").read_bytes()
    rec = TARGETS["models"][name]
    assert hashlib.sha256(model).hexdigest() == rec["sha256"]
    m = arena.measure(model)
    target = rec["upstream/reference"]
    assert m["exact"], m.get("why_not_exact")
    assert m["target32_bytes"] == target["arena_min_bytes"], (name, m["target32_bytes"], target)
    assert m["final32_bytes"] == target["arena_used_bytes"]
    ref = m["by_kernels"]["reference"]["by_tflm"]["upstream"]
    assert (ref["target32_bytes"], ref["final32_bytes"]) == (target["arena_min_bytes"], target["arena_used_bytes"])
    # CMSIS-NN kernels: their own OpData, persistent data and scratch buffers (the head planned again)
    by_tflm = m["by_kernels"]["cmsis_nn"]["by_tflm"]
    cmsis = rec.get("upstream/cmsis_nn")
    if cmsis:
        k = by_tflm["upstream"]
        assert k["exact"] and (k["target32_bytes"], k["final32_bytes"]) == (cmsis["arena_min_bytes"],
                                                                           cmsis["arena_used_bytes"])
    for kernels, figures in ARDUINO.items():
        k = m["by_kernels"][kernels]["by_tflm"]["arduino"]
        assert k["exact"] and (k["target32_bytes"], k["final32_bytes"]) == figures[name], (name, kernels, k)
    # the kernel set's figure (what a header reserves for it without knowing the tree) never understates a tree
    for kernels, fig in m["by_kernels"].items():
        assert fig["target32_bytes"] == max(v["target32_bytes"] for v in fig["by_tflm"].values()), kernels


# The public MLPerf Tiny reference models (github.com/mlcommons/tiny_results_v0.5 closed/reference/code/training/
# */trained_models/; not in this repository): bisected on QEMU's Cortex-M4 like the models above.
MLPERF = {
    "kws_ref_model.tflite": ("aeea436800704fce17b17292e4412630ad856e9d777c044c64ef748a880bd0ae",
                             {"arduino/cmsis_nn": (23952, 23940), "upstream/cmsis_nn": (22832, 22820),
                              "upstream/reference": (22784, 22772), "arduino/reference": (22752, 22740)}),
    "pretrainedResnet_quant.tflite": ("3c002613d1b2475eb51dd78dfb85a546c8ae658dee71cf6ade43b022fe205415",
                                      {"arduino/cmsis_nn": (54944, 54932), "upstream/cmsis_nn": (55008, 54996),
                                       "upstream/reference": (54352, 54340), "arduino/reference": (54304, 54292)}),
    "vww_96_int8.tflite": ("597a384c8c2c8a1276f04702f25013b7838f2f814f1ca7c174d295b73e3d6b7b",
                           {"arduino/cmsis_nn": (100688, 100676), "upstream/cmsis_nn": (100720, 100708),
                            "upstream/reference": (100672, 100660),
                            "arduino/reference": (100608, 100596)}),
    "ad01_int8.tflite": ("87cf24194ef93d1d9b11a591d805526b98008e351655d29883c825c9c106ba24",
                         {"arduino/cmsis_nn": (2848, 2404), "upstream/cmsis_nn": (3024, 2580),
                          "upstream/reference": (2704, 2260), "arduino/reference": (2688, 2244)}),
}
MLPERF_DIR = os.environ.get("TINYML_MLPERF_DIR", "").strip()


@pytest.mark.skipif(not MLPERF_DIR, reason="needs the MLPerf Tiny reference .tflite files, which this repository does "
                    "not ship: set TINYML_MLPERF_DIR to a folder holding " + ", ".join(sorted(MLPERF)))
@pytest.mark.parametrize("name", sorted(MLPERF))
def test_exact_arena_of_the_mlperf_tiny_models(name):
    path = Path(MLPERF_DIR) / name
    if not path.is_file():
        pytest.skip(f"{path} is missing (TINYML_MLPERF_DIR)")
    model = path.read_bytes()
    sha, figures = MLPERF[name]
    assert hashlib.sha256(model).hexdigest() == sha
    m = arena.measure(model)
    for key, (arena_min, used) in figures.items():
        tree, kernels = key.split("/")
        k = m["by_kernels"][kernels]["by_tflm"][tree]
        assert k["exact"] and (k["target32_bytes"], k["final32_bytes"]) == (arena_min, used), (key, k)
        assert m["by_kernels"][kernels]["target32_bytes"] >= arena_min


def test_the_planner_replay_reproduces_the_host_head():
    """TFLM's GreedyMemoryPlanner replayed (engine.arena32.plan) gives the host's planned head from the reference
    kernels' scratch requests, for every recorded model: what lets the CMSIS-NN head be planned again."""
    from doit_tinyml.engine import arena32
    from doit_tinyml.engine import tflite as tflite_info

    for name in sorted(TARGETS["models"]):
        model = (DATA / f"{name}.tflite").read_bytes()
        host = arena.run_child(model)
        head = arena.parse_allocations(host["report"])["head"]
        info = tflite_info.parse(model)
        assert arena32.plan(info, arena32.scratch_requests(info, "reference")) == head, name


def test_cmsis_nn_scratch_buffers_of_a_ds_cnn():
    """The scratch buffers CMSIS-NN's Prepare requests on a Cortex-M4 (DSP) for the convolutions of a DS-CNN
    (MLPerf Tiny KWS: conv 10x4 stride 2, 3x3 depthwise, 1x1 convolutions, average pool), per TFLM generation."""
    import math
    from types import SimpleNamespace as NS

    from doit_tinyml.engine import arena32

    def t(shape, const=False):
        return NS(shape=shape, dtype="INT8", is_constant=const, is_variable=False, scales=[0.1], zero_points=[0],
                  nbytes=math.prod(shape), elements=math.prod(shape))

    tensors = [t([1, 49, 10, 1]), t([64, 10, 4, 1], True), t([64], True), t([1, 25, 5, 64]),       # conv 10x4 /2
               t([1, 3, 3, 64], True), t([64], True), t([1, 25, 5, 64]),                           # depthwise 3x3
               t([64, 1, 1, 64], True), t([64], True), t([1, 25, 5, 64]),                          # conv 1x1
               t([1, 1, 1, 64])]                                                                  # average pool
    for i, x in enumerate(tensors):
        x.index = i
    conv = NS(strideH=2, strideW=2, dilationHFactor=1, dilationWFactor=1)
    one = NS(strideH=1, strideW=1, dilationHFactor=1, dilationWFactor=1)
    ops = [NS(index=0, op="CONV_2D", inputs=[0, 1, 2], outputs=[3], options=conv),
           NS(index=1, op="DEPTHWISE_CONV_2D", inputs=[3, 4, 5], outputs=[6], options=one),
           NS(index=2, op="CONV_2D", inputs=[6, 7, 8], outputs=[9], options=one),
           NS(index=3, op="AVERAGE_POOL_2D", inputs=[9], outputs=[10], options=None)]
    info = NS(main=NS(tensors=tensors, operators=ops, inputs=[0], outputs=[10]), subgraphs=[None])
    assert arena32.scratch_requests(info, "reference") == []
    # 2026 CMSIS-NN: im2col of 2 columns x 40 int16 (40 rounded up to 4); no buffer for a 3x3 depthwise with
    # padding <= 1 (arm_depthwise_conv_3x3_s8) nor for a 1x1 convolution; an int32 per channel for the pool
    assert arena32.scratch_requests(info, "cmsis_nn", "upstream") == [(0, 160), (3, 256)]
    # the 2023 Arduino library: the 3x3 depthwise takes the generic path, 64 channels x 9 taps of int16
    assert arena32.scratch_requests(info, "cmsis_nn", "arduino") == [(0, 160), (1, 1152), (3, 256)]
    # the planner: the depthwise buffer is alive with both 8,000 B activations, so the head grows by its size
    base = arena32.plan(info, [])
    assert base == 2 * 8000
    assert arena32.plan(info, [(1, 1152)]) == base + 1152


def test_replay_of_the_allocator():
    from doit_tinyml.engine import arena32

    # 100 B persistent, a temporary tensor with quantization, a persistent buffer during Prepare, the head
    ev = [("P", 100, 4, "x"), ("T", 32, 4, "tensor"), ("T", 12, 4, "quant"), ("T", 8, 4, "zero_points"),
          ("P", 16, 16, "opdata"), ("R", 48, 4, "head")]
    # a persistent buffer during Prepare may reuse the last zero-point array (8 B), not the tensor or its
    # quantization struct (freeing the temporaries reads its pointers): 160 B would put it 12 B into the struct
    assert arena32.minimum(ev) == 176
    assert not arena32.fits(ev, 160) and arena32.fits(ev, 176)
    # the planner needs its 40 B per buffer from what is left
    assert arena32.minimum([("P", 64, 4, "x"), ("PLAN", 400, 16, "plan")]) == 464


def test_a_model_outside_the_rules_keeps_the_upper_bound(monkeypatch):
    from doit_tinyml.engine import arena32

    model = (DATA / "sine_int8.tflite").read_bytes()
    rules = json.loads(arena32.DATA.read_text())
    del rules["ops"]["FULLY_CONNECTED"]
    monkeypatch.setattr(arena32, "rules", lambda: rules)
    m = arena.measure(model)
    assert m["exact"] is False and "FULLY_CONNECTED" in m["why_not_exact"]
    assert m["target32_bytes"] >= TARGETS["models"]["sine_int8"]["upstream/reference"]["arena_min_bytes"]
    assert "upper bound" in m["method"]


def test_the_target_runner_arena_fits_the_emulated_board():
    """The tflm stage's runner reserves more than 256 KiB (VWW float needs about 330 KB) and stays within the 4 MiB
    of data RAM of QEMU's mps2-an386, with room for the rest of the firmware."""
    from doit_tinyml.engine import tflm_target
    from doit_tinyml.engine.boards import CATALOGUE

    board = CATALOGUE[tflm_target.BOARD_ID]
    assert 1024 * 1024 < tflm_target.ARENA_MAX <= board.ram - 512 * 1024 and tflm_target.ARENA_MAX % 16 == 0


def test_a_tflm_failure_marks_only_the_tflm_rows(tmp_path):
    """A variant with both runtimes: the aot rows' chain does not hold the tflm task, so a tflm stage that fails
    (an arena the target cannot allocate, a model TFLM cannot run) marks the tflm rows only."""
    from project import TINY_SINE, make_project
    from test_firmware_config import fake_arduino_tree

    from doit_tinyml.config import load
    from doit_tinyml.dag import Tasks, record_failure
    from doit_tinyml.engine.reporting.collect import failure

    tree = fake_arduino_tree(tmp_path / "tflm")
    toml = TINY_SINE.replace("{epochs}", "1").replace(
        'boards = ["nano33ble", "adafruit_pybadge_m4"]',
        f'boards = ["nano33ble", "adafruit_pybadge_m4"]\nruntime = ["tflm", "aot"]\ntflm = {{ library = "{tree}" }}')
    root = make_project(tmp_path / "proj", toml)
    t = Tasks(load(root / "tinyml.toml"))
    entries = [e for e in t.report_entries() if e["variant"] == "int8" and e["board"]]
    assert {e["runtime"] for e in entries} == {"tflm", "aot"}
    record_failure(t.failed, "tflm:sine/int8", "the real TFLite Micro needs a tensor arena of ...")
    for e in entries:
        f = failure(e, t.failed)
        if e["runtime"] == "aot":
            assert f is None and "tflm:sine/int8" not in e["chain"], e["chain"]
        else:
            assert f is not None and f["task"] == "tflm:sine/int8"
    # an aot failure still explains the tflm rows: their tflm task reads aot.json and runs after it
    record_failure(t.failed, "aot:sine/int8", "the AOT compiler ...")
    assert all(failure(e, t.failed)["task"] == "aot:sine/int8" for e in entries)


# ------------------------------------------------------------------------------------------------- live, on QEMU
TFLM_DIR = os.environ.get("TINYML_TFLM_DIR", "").strip()
needs_tflm = pytest.mark.skipif(not TFLM_DIR, reason="re-measuring on the target needs a TFLite Micro tree (none is "
                                "in this repository): set TINYML_TFLM_DIR to an Arduino_TensorFlowLite library or a "
                                "tflite-micro checkout with its downloads")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from types import SimpleNamespace

    from doit_tinyml.engine import platformio, tflm_link

    tree = tflm_link.find_tree(TFLM_DIR, reference_kernels=os.environ.get("TINYML_TFLM_REFERENCE_KERNELS") or None)
    cache = Path(os.environ.get("TINYML_TFLM_CACHE") or tmp_path_factory.mktemp("tflm-cache"))
    core = tmp_path_factory.mktemp("pio") / ".platformio"
    platformio.ensure_core(core)
    return SimpleNamespace(tree=tree, cache=cache, core=core)


def _kernels_or_skip(live, kernels: str) -> None:
    if kernels not in live.tree.kernel_sets:
        pytest.skip(f"needs TFLM's {kernels} kernels, which {live.tree.describe()} lacks: "
                    f"{live.tree.missing.get(kernels)} (or TINYML_TFLM_REFERENCE_KERNELS, or an upstream tflite-micro "
                    f"tree in TINYML_TFLM_DIR)")


def _variant(root: Path, model: bytes, *, margin: float = 0.10) -> tuple[Path, dict]:
    """model.tflite, analysis.json, model_data.h/.cc and a dataset (zeros) in root/m/v, as the stages write them."""
    import numpy as np
    from project import write_dataset_record

    from doit_tinyml import analyze, header

    vd = root / "m" / "v"
    vd.mkdir(parents=True)
    (vd / "model.tflite").write_bytes(model)
    a = analyze.run(vd / "model.tflite", vd / "analysis.json", arena_margin=margin)
    write_dataset_record(vd.parent / "dataset.json")
    header.run(vd / "model.tflite", vd / "analysis.json", vd.parent / "dataset.json", vd / "model_data.h",
               vd / "model_data.cc", provenance={"model": "m", "variant": "v", "settings_hash": "t"})
    np.savez(vd.parent / "dataset.npz", x_test=np.zeros([2] + a["input"]["shape"][1:], dtype=np.float32))
    return vd, a


def _on_target(live, kernels: str, vd: Path, a: dict, work: Path) -> dict:
    import numpy as np

    from doit_tinyml.engine import tflm_link, tflm_target
    from doit_tinyml.engine.boards import CATALOGUE

    lib = tflm_link.build_library(live.tree, kernels, CATALOGUE[tflm_target.BOARD_ID].gcc_flags, live.cache,
                                  core="cortex-m4f")
    x = np.zeros([2] + a["input"]["shape"][1:], dtype=np.float32)
    return tflm_target.measure((vd / "model.tflite").read_bytes(), vd, x, a["input"], a["output"], lib, work, live.core)


def _assert_exact(a: dict, kernels: str, layout: str, r: dict) -> None:
    fig = a["arena"]["by_kernels"][kernels]
    mine = fig["by_tflm"][layout]
    assert mine["exact"] and (mine["target32_bytes"], mine["final32_bytes"]) == (r["arena_min_bytes"],
                                                                               r["arena_used_bytes"]), (mine, r)
    assert fig["target32_bytes"] >= r["arena_min_bytes"] and a["arena"]["bytes"] >= r["arena_min_bytes"]


def _model(name: str, directory: Path) -> bytes:
    if (DATA / f"{name}.tflite").is_file():
        return (DATA / f"{name}.tflite").read_bytes()
    from doit_tinyml.aot import testmodels

    return testmodels.build(name, directory)[0].read_bytes()  # mlperf_kws: the MLPerf Tiny KWS DS-CNN architecture


@needs_tflm
@pytest.mark.parametrize("kernels", ["reference", "cmsis_nn"])
@pytest.mark.parametrize("name", ["sine_int8", "zoo_int8", "conv1d_int8", "mlperf_kws"])
def test_live_target_bisection(name, kernels, live, tmp_path):
    """With a TFLM tree: build the target check and bisect on QEMU now. The analyze stage's figure for the tree's
    kernel set and TFLM generation (by_kernels.<set>.by_tflm.<layout>) equals the minimum and arena_used_bytes()."""
    _kernels_or_skip(live, kernels)
    vd, a = _variant(tmp_path, _model(name, tmp_path / "models"))
    r = _on_target(live, kernels, vd, a, tmp_path / "t")
    _assert_exact(a, kernels, live.tree.layout, r)
    if kernels == "reference" and live.tree.layout == "upstream":  # the generation of the Python interpreter
        assert (a["arena"]["target32_bytes"], a["arena"]["final32_bytes"]) == (r["arena_min_bytes"],
                                                                               r["arena_used_bytes"])


@needs_tflm
def test_live_arena_over_256_kib(live, tmp_path):
    """A float model whose arena is over 256 KiB (like VWW float) is measured by the target check, exactly."""
    import numpy as np

    from doit_tinyml.aot import testmodels
    from doit_tinyml.engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(5)
    L = keras.layers
    inp = keras.Input((64, 64, 3))
    x = L.MaxPooling2D(4)(L.Conv2D(16, 3, padding="same", activation="relu")(inp))
    m = keras.Model(inp, L.Dense(2)(L.Flatten()(x)))
    model = testmodels._convert(m, np.random.default_rng(0).random((4, 64, 64, 3), dtype=np.float32),
                                int8=False, int8_io=False)
    kernels = live.tree.kernel_sets[0]
    vd, a = _variant(tmp_path, model)
    r = _on_target(live, kernels, vd, a, tmp_path / "t")
    assert r["arena_min_bytes"] > 256 * 1024
    _assert_exact(a, kernels, live.tree.layout, r)


@needs_tflm
def test_live_tflm_stage_fails_when_the_header_reserves_less_than_the_target_needs(live, tmp_path):
    """The tflm stage compares its bisected minimum with the header's TINYML_ARENA_SIZE: a header that reserves
    less fails the stage in one line naming both figures and the fix (and writes no tflm.json)."""
    import re

    from doit_tinyml import tflm_check
    from doit_tinyml.engine.artifacts import TflmTarget, read_dict

    kernels = live.tree.kernel_sets[0]
    vd, a = _variant(tmp_path, (DATA / "sine_int8.tflite").read_bytes(), margin=0.0)
    tflm = {"library": str(live.tree.root), "kernels": kernels,
            "reference_kernels": str(live.tree.reference_kernels) if live.tree.reference_kernels else None}
    # with the header as written (the exact figure, margin 0): it fits, and the figure is the tree's, exact
    rec = tflm_check.run(vd, vd.parent / "dataset.npz", vd / "tflm.json", tflm=tflm, core_dir=live.core,
                         cache=live.cache)
    fig = a["arena"]["by_kernels"][kernels]["by_tflm"][live.tree.layout]["target32_bytes"]
    assert rec["analyze_arena"]["tree_target32_bytes"] == fig == rec["arena_min_bytes"]
    assert rec["analyze_arena"]["error_pct"] == 0 and rec["analyze_arena"]["exact"]
    assert read_dict(vd / "tflm.json", TflmTarget)["arena_min_bytes"] == fig
    # a header reserving 16 B less than the target's minimum
    h = vd / "model_data.h"
    h.write_text(re.sub(r"#define TINYML_ARENA_SIZE \d+", f"#define TINYML_ARENA_SIZE {fig - 16}", h.read_text()))
    with pytest.raises(TinyMLError) as e:
        tflm_check.run(vd, vd.parent / "dataset.npz", vd / "tflm.json", tflm=tflm, core_dir=live.core,
                       cache=live.cache)
    msg = str(e.value)
    assert "\n" not in msg and f"{fig:,} B" in msg and f"{fig - 16:,} B" in msg and "arena_margin" in msg, msg
    assert not (vd / "tflm.json").exists()
