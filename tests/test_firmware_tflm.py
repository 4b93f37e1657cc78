"""The real TFLite Micro, linked from the user's tree with doit's local platform, and measured on QEMU.

A TFLM tree is the user's (never in this repository): the tests that link one need TINYML_TFLM_DIR (an
Arduino_TensorFlowLite library or a tflite-micro checkout with its downloads) and skip without it, even
under CI. TINYML_TFLM_CACHE shares the prebuilt archive between runs (a first compile takes minutes).
The failure paths run everywhere: a fake tree with one broken source stands in for a TFLM that does not
compile.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from doit_tinyml import firmware
from doit_tinyml.engine.latency import fmt_ms
from doit_tinyml.engine import boards, platformio, tflm_link, tflm_size
from doit_tinyml.engine.errors import TinyMLError

from project import write_dataset_record
from test_firmware_config import fake_arduino_tree

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None and os.environ.get("CI", "").lower() not in ("1", "true", "yes"),
    reason="needs arm-none-eabi-gcc (not installed here)")]

TFLM_DIR = os.environ.get("TINYML_TFLM_DIR", "").strip()
needs_tflm = pytest.mark.skipif(not TFLM_DIR, reason="needs a TFLite Micro tree: set TINYML_TFLM_DIR (an "
                                "Arduino_TensorFlowLite library or a tflite-micro checkout); none is in this repository")
ROOT = Path(__file__).resolve().parent.parent


def test_a_tflm_that_does_not_compile_names_the_file_and_the_first_error(tmp_path):
    tree = fake_arduino_tree(tmp_path / "tflm")
    bad = tree / "src" / "tensorflow" / "lite" / "micro" / "broken_kernel.cpp"
    bad.write_text("int ok(void) { return 1; }\nint broken(void) { return undeclared_thing; }\n")
    (tree / "src" / "tensorflow" / "lite" / "micro" / "fine.cpp").write_text("int fine(void) { return 2; }\n")
    t = tflm_link.find_tree(tree)
    machine = boards.CATALOGUE["nano33ble"].gcc_flags
    with pytest.raises(TinyMLError) as e:
        tflm_link.build_library(t, "cmsis_nn", machine, tmp_path / "cache", quiet=True)
    msg = str(e.value)
    assert f"failed to compile {bad}" in msg and "broken_kernel.cpp:2" in msg and "undeclared_thing" in msg
    # remembered: the next variant fails at once with the same message instead of compiling again
    with pytest.raises(TinyMLError, match="remembered from an earlier attempt"):
        tflm_link.build_library(t, "cmsis_nn", machine, tmp_path / "cache", quiet=True)


def test_a_fake_tree_that_compiles_is_archived_once(tmp_path):
    tree = fake_arduino_tree(tmp_path / "tflm")
    (tree / "src" / "tensorflow" / "lite" / "micro" / "micro_interpreter.cpp").write_text("int interp(void) { return 3; }\n")
    t = tflm_link.find_tree(tree)
    machine = boards.CATALOGUE["pico"].gcc_flags
    lib = tflm_link.build_library(t, "cmsis_nn", machine, tmp_path / "cache", core="cortex-m0+", quiet=True)
    assert lib.archive.is_file() and not lib.cached and lib.n_sources == 1
    manifest = json.loads((lib.archive.parent / "manifest.json").read_text())
    assert "-mcpu=cortex-m0plus" in manifest["flags"]["common"] and "-DARDUINO" in manifest["flags"]["common"]
    again = tflm_link.build_library(t, "cmsis_nn", machine, tmp_path / "cache", core="cortex-m0+", quiet=True)
    assert again.cached and again.archive == lib.archive
    # the flags are the local platform's own (one file, read by its builder too)
    assert "-Os" in manifest["flags"]["common"] and "-ffunction-sections" in manifest["flags"]["common"]


# ------------------------------------------------------------------------------------- with a real TFLM tree
@pytest.fixture(scope="module")
def tree():
    ref = os.environ.get("TINYML_TFLM_REFERENCE_KERNELS") or None
    return tflm_link.find_tree(TFLM_DIR, reference_kernels=ref)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    c = os.environ.get("TINYML_TFLM_CACHE")
    return Path(c) if c else tmp_path_factory.mktemp("tflm-cache")


@pytest.fixture(scope="module")
def core_dir(tmp_path_factory) -> Path:
    core = tmp_path_factory.mktemp("pio") / ".platformio"
    platformio.ensure_core(core)
    return core


@pytest.fixture(scope="module")
def variant(tmp_path_factory, tree):
    """A real int8 model (per-tensor Dense weights, which every TFLM generation computes right) with its
    analysis.json and model_data.h/.cc, as the analyze and header stages write them."""
    from doit_tinyml import analyze, header
    from doit_tinyml.aot import testmodels

    d = tmp_path_factory.mktemp("variant") / "sine" / "int8"
    d.mkdir(parents=True)
    # a tree that predates per-channel Dense weights gets the per-tensor model (per_channel = false)
    name = "autoenc_int8" if tree.per_channel_fc else "autoenc_int8_per_tensor"
    tfl, npz = testmodels.build(name, tmp_path_factory.mktemp("models"))
    assert not tflm_link.check_model(tree, tfl.read_bytes())
    shutil.copyfile(tfl, d / "model.tflite")
    analyze.run(d / "model.tflite", d / "analysis.json")
    write_dataset_record(d.parent / "dataset.json", task="autoencoder", input_shape=[32], output_shape=[32])
    header.run(d / "model.tflite", d / "analysis.json", d.parent / "dataset.json", d / "model_data.h",
               d / "model_data.cc", provenance={"model": "sine", "variant": "int8", "settings_hash": "t"})
    import numpy as np

    with np.load(npz) as z:
        np.savez(d.parent / "dataset.npz", x_test=z["x_test"])
    return d


@needs_tflm
def test_the_sketch_links_the_real_interpreter(variant, tree, cache, core_dir, tmp_path, capsys):
    kernels = tree.kernel_sets[0]
    tflm = {"library": str(tree.root), "kernels": kernels,
            "reference_kernels": str(tree.reference_kernels) if tree.reference_kernels else None}
    rec = firmware.run(ROOT / "sketches" / "sine", variant, boards.CATALOGUE["nano33ble"], tmp_path / "nano33ble",
                       core_dir, runtime="tflm", tflm=tflm, tflm_cache=cache)
    assert rec["estimate"] is False and rec.get("interpreter_estimate") is None
    assert rec["tflm"]["linked"] and rec["tflm"]["kernels"] == kernels and rec["tflm"]["library"] == str(tree.root)
    assert rec["breakdown"]["flash"]["inference"] > 15_000  # TFLM's own code, from the map
    assert "real TFLite Micro" in capsys.readouterr().out
    # the same variant without the library: the estimate assumes the larger TFLM generation, so it is never below
    # this real link; for this tree's own generation it is within the error the table states
    est = firmware.run(ROOT / "sketches" / "sine", variant, boards.CATALOGUE["nano33ble"], tmp_path / "est", core_dir,
                       runtime="tflm", tflm={"kernels": kernels}, quiet=True)
    ie = est["interpreter_estimate"]
    real_interp = rec["flash_used"] - ie["measured_without"]["flash_used"]
    print(f"estimate {est['flash_used']} [{ie['config']}] vs real link {rec['flash_used']}")
    assert est["estimate"] and est["flash_used"] >= rec["flash_used"] and est["ram_used"] >= rec["ram_used"]
    assert ie["generation"] in ie["config"] and "assumes" in est["estimate_basis"]
    generation, _ = tflm_size.generation_of(tree)
    if generation is not None:
        mine = tflm_size.estimate("cortex-m4f", kernels, json.loads((variant / "analysis.json").read_text())["ops"],
                                  tree=tree)
        assert real_interp <= mine["flash"] <= real_interp * (1 + mine["error_pct"] / 100), mine["basis"]


@needs_tflm
def test_target_check_on_qemu(variant, tree, cache, core_dir):
    from doit_tinyml import tflm_check
    from doit_tinyml.engine import artifacts

    kernels = "reference" if "reference" in tree.kernel_sets else tree.kernel_sets[0]
    tflm = {"library": str(tree.root), "kernels": kernels,
            "reference_kernels": str(tree.reference_kernels) if tree.reference_kernels else None}
    rec = tflm_check.run(variant, variant.parent / "dataset.npz", variant / "tflm.json", tflm=tflm,
                         core_dir=core_dir, cache=cache)
    on_disk = artifacts.read_dict(variant / "tflm.json", artifacts.TflmTarget)
    assert on_disk["arena_min_bytes"] == rec["arena_min_bytes"] and rec["samples"] > 0
    assert rec["instructions_per_inference"] > 1000
    assert rec["arena_used_bytes"] <= rec["arena_min_bytes"]
    analysis = json.loads((variant / "analysis.json").read_text())
    # the analyze stage's exact 32-bit arena for the same kernel set: never below the target, on any tree
    t32 = (analysis["arena"]["target32_bytes"] if kernels == "reference"
           else analysis["arena"]["by_kernels"][kernels]["target32_bytes"])
    assert t32 >= rec["arena_min_bytes"]
    assert rec["analyze_arena"]["target32_bytes"] == t32
    if tree.layout == "upstream" and kernels == "reference":  # the generation of the Python interpreter
        assert rec["outputs_equal"] and t32 == rec["arena_min_bytes"]
        assert analysis["arena"]["final32_bytes"] == rec["arena_used_bytes"]


@needs_tflm
def test_per_channel_dense_on_an_old_tree_never_fits(tmp_path, tree, cache, core_dir, variant):
    """The Arduino export of 2023 reads one scale of a per-channel Dense layer: built for its size, never "fits"."""
    if tree.per_channel_fc:
        pytest.skip("this tree computes per-channel FULLY_CONNECTED")
    from doit_tinyml.aot import testmodels

    tfl, _ = testmodels.build("sine_int8", tmp_path / "models")
    why = tflm_link.check_model(tree, tfl.read_bytes())
    assert why and "per_channel = false" in why and "is_per_channel" in why
    vd = tmp_path / "v"
    shutil.copytree(variant, vd)
    shutil.copyfile(tfl, vd / "model.tflite")  # the header's model stays: only the check reads model.tflite
    rec = firmware.run(ROOT / "sketches" / "sine", vd, boards.CATALOGUE["nano33ble"], tmp_path / "o", core_dir,
                       tflm={"library": str(tree.root), "kernels": tree.kernel_sets[0]}, tflm_cache=cache, quiet=True)
    assert rec["fits"] is False and "per_channel = false" in rec["incompatible"]


@needs_tflm
def test_per_channel_dense_through_the_sketchs_own_environment_never_fits(tmp_path, tree, cache, core_dir, variant):
    """The same check on the route through the sketch's own PlatformIO environment (here one on doit's local
    platform, which links the configured TFLM): built for its size, never "fits", and says why."""
    if tree.per_channel_fc:
        pytest.skip("this tree computes per-channel FULLY_CONNECTED")
    from doit_tinyml.aot import testmodels

    tfl, _ = testmodels.build("sine_int8", tmp_path / "models")
    vd = tmp_path / "v"
    shutil.copytree(variant, vd)
    shutil.copyfile(tfl, vd / "model.tflite")
    sketch = tmp_path / "sketch"
    shutil.copytree(ROOT / "examples" / "measure_qemu" / "sketches" / "sine_qemu", sketch)
    rec = firmware.run(sketch, vd, boards.CATALOGUE["mps2_an386"], tmp_path / "o", core_dir, env="qemu",
                       tflm={"library": str(tree.root), "kernels": tree.kernel_sets[0]}, tflm_cache=cache, quiet=True)
    assert rec["env"]["name"] == "qemu" and rec["tflm"]["linked"] and not rec["estimate"]
    assert rec["fits"] is False and "per_channel = false" in rec["incompatible"]


@needs_tflm
def test_a_sketch_with_its_own_main_links_with_the_real_tflm(tmp_path, tree, cache, core_dir, variant):
    """doit's Arduino-style shim (setup()/loop() sketches) must not collide with a sketch's own main()."""
    sketch = tmp_path / "sketch"
    (sketch / "src").mkdir(parents=True)
    (sketch / "src" / "main.cpp").write_text(
        '#include "model_data.h"\n#include "tensorflow/lite/micro/micro_interpreter.h"\n'
        "alignas(16) static uint8_t arena[TINYML_ARENA_SIZE];\n"
        "int main(void) {\n  static TinyMLOpResolver r;\n  tinyml_register_ops(r);\n"
        "  tflite::MicroInterpreter it(tflite::GetModel(g_model), r, arena, sizeof arena);\n"
        "  return it.AllocateTensors() == kTfLiteOk && it.Invoke() == kTfLiteOk ? 0 : 1;\n}\n")
    rec = firmware.run(sketch, variant, boards.CATALOGUE["nano33ble"], tmp_path / "o", core_dir,
                       tflm={"library": str(tree.root), "kernels": tree.kernel_sets[0]}, tflm_cache=cache, quiet=True)
    assert rec["tflm"]["linked"] and not rec["estimate"] and rec["fits"]


@needs_tflm
def test_doit_links_and_measures_the_real_tflm(tmp_path, tree, cache):
    """Through doit with TINYML_TFLM_DIR: the tflm stage writes tflm.json, the firmware links the interpreter,
    the tflm rows have a time per inference from its instruction count, and the report shows them."""
    from project import TINY_SINE, doit, make_project

    toml = TINY_SINE.replace("{epochs}", "2").replace('boards = ["nano33ble", "adafruit_pybadge_m4"]',
                                                      'boards = ["nano33ble"]\nruntime = ["tflm", "aot"]')
    toml = toml.replace('[models.sine.variants.int8]\nquantization = "int8"',
                        '[models.sine.variants.int8]\nquantization = "int8"\nper_channel = false')
    root = make_project(tmp_path / "proj", toml)
    env = {"TINYML_TFLM_DIR": str(tree.root), "TINYML_TFLM_CACHE": str(cache)}
    if tree.reference_kernels:
        env["TINYML_TFLM_REFERENCE_KERNELS"] = str(tree.reference_kernels)
    proc = doit(root, env=env, timeout=3600)
    assert "tflm:sine/int8" in proc.stdout
    b = root / "build" / "sine" / "int8"
    t = json.loads((b / "tflm.json").read_text())
    assert t["outputs_equal"] and t["instructions_per_inference"] > 0 and t["arena_min_bytes"] > 0
    assert t["analyze_arena"]["target32_bytes"] >= t["arena_min_bytes"]
    size = json.loads((b / "nano33ble" / "size.json").read_text())
    assert size["estimate"] is False and size["tflm"]["linked"] and size["latency_ms"] > 0
    assert size["latency_basis"]["instructions"] == t["instructions_per_inference"]
    assert size["latency_basis"]["model"] == "instruction mix" and size["latency_basis"]["kind"] == "estimate"
    assert t["profile"]["inferences"] == t["samples"] and t["profile"]["blocks"]
    rep = doit(root, "report", env=env, check=False)
    assert "ms/inf" in rep.stdout and "- (no TFLM library)" not in rep.stdout
    assert f"~{fmt_ms(size['latency_ms'])} (" in rep.stdout
