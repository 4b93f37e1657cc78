"""AOT kernels for the Cortex-M DSP extension, the memory plan with input/output in the arena, and
exact float math: weight layouts, the requantization shortcut, the overlap-aware planner, random
small models against TFLM (both kernel variants) and against TFLM's RAM, and the Cortex-M3 proof.

Random models are built with the real converter and cached on disk (tasks/aot/testmodels.py); the
first run pays for TensorFlow. The large random sweep is marked slow.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from doit_tinyml.aot import KERNEL_SOURCES, KERNELS_DIR

MODEL_CACHE = Path(tempfile.gettempdir()) / "doit-tinyml-aot-models"
HAVE_QEMU = shutil.which("qemu-system-arm") is not None and shutil.which("arm-none-eabi-gcc") is not None
# the long sweeps run with TINYML_SLOW=1 (and are marked `slow` for -m selection)
SLOW = os.environ.get("TINYML_SLOW") not in (None, "", "0")


# ------------------------------------------------------------------------------ layouts

def test_gemm_layout_round_trips_and_pads_k_with_zeros():
    import numpy as np

    from doit_tinyml.aot.layout import k4_of, pack_gemm, unpack_gemm

    rng = np.random.default_rng(0)
    for n, k, wl in ((1, 1, 2), (2, 3, 2), (5, 8, 2), (7, 13, 4), (12, 40, 4), (3, 4, 4)):
        w = rng.integers(-128, 128, size=(n, k)).astype(np.int8)
        flat = pack_gemm(w, wl)
        assert flat.size == n * k4_of(k)
        assert (unpack_gemm(flat, n, k, wl) == w).all()
    # a pair of channels: 4 bytes of the first, 4 of the second, step after step
    w = np.arange(16, dtype=np.int8).reshape(2, 8)
    assert list(pack_gemm(w, 2)) == [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15]


def test_depthwise_layout_lanes_and_folded_bias():
    import numpy as np

    from doit_tinyml.aot.layout import dw_bias, pack_dw

    w = np.arange(1, 1 + 2 * 5, dtype=np.int8).reshape(1, 1, 2, 5)  # 2 taps, 5 channels
    p = pack_dw(w, double=False)
    # group 0, tap 0: channels (0, 2, 1, 3); tap 1 likewise; group 1: channel 4 then zero padding
    assert list(p[:8]) == [1, 3, 2, 4, 6, 8, 7, 9]
    assert list(p[8:]) == [5, 0, 0, 0, 10, 0, 0, 0]
    assert list(pack_dw(w, double=True)[:4]) == [2, 6, 4, 8]
    b = dw_bias(w, np.array([100, 0, 0, 0, -7]), input_offset=3, double=True)
    assert list(b) == [2 * (100 + 3 * (1 + 6)), 2 * 3 * (2 + 7), 2 * 3 * (3 + 8), 2 * 3 * (4 + 9), 2 * (-7 + 3 * (5 + 10))]


# ------------------------------------------------------------------------------ requantization

_RQ_TEST = r"""
#include <stdio.h>
#include "tinyml_simd.h"
#include "tinyml_kernels.h"
int main(void) {
  long acc, m, shift, zp;
  long bad = 0, n = 0;
  while (scanf("%ld %ld %ld %ld", &acc, &m, &shift, &zp) == 4) {
    const int32_t r = (int32_t)-shift, k = (1 << (r - 1)) + (int32_t)zp * (1 << r), t2 = (int32_t)(2 * acc);
    const int32_t fast = tml_smmlar(t2, (int32_t)m, k + (t2 >> 31)) >> r;
    const int32_t ref = tml_mbqm((int32_t)acc, (int32_t)m, (int32_t)shift) + (int32_t)zp;
    if (fast != ref && bad++ < 5) printf("acc %ld m %ld shift %ld zp %ld: %d vs %d\n", acc, m, shift, zp, fast, ref);
    ++n;
  }
  printf("%ld of %ld differ\n", bad, n);
  return bad != 0;
}
"""


def test_smmlar_requantization_equals_tflm_wherever_the_generator_allows_it(tmp_path):
    """The 4-instruction requantization (exact C model of SMMLAR) against TFLM's
    MultiplyByQuantizedMultiplier on random accumulators, multipliers, shifts and zero points that
    satisfy layout.fast_requant_ok, edge values included."""
    from doit_tinyml.aot.generate import quantize_multiplier
    from doit_tinyml.aot.layout import fast_requant_ok

    rng = random.Random(3)
    lines = []
    while len(lines) < 60000:
        m, s = quantize_multiplier(10 ** rng.uniform(-7, -0.31))
        zp = rng.randint(-128, 127)
        bound = rng.choice([2 ** 10, 2 ** 20, 2 ** 29, 2 ** 30 - 1])
        if not fast_requant_ok([bound], [m], [s], zp):
            continue
        for acc in (rng.randint(-bound, bound), bound, -bound, 0, -1, 1):
            lines.append(f"{acc} {m} {s} {zp}")
    (tmp_path / "cases.txt").write_text("\n".join(lines) + "\n")
    src = tmp_path / "rq.c"
    src.write_text(_RQ_TEST)
    exe = tmp_path / "rq"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Werror", "-DTML_EMULATE_DSP", f"-I{KERNELS_DIR}", str(src),
                    str(KERNELS_DIR / "tinyml_kernels.c"), "-lm", "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], stdin=open(tmp_path / "cases.txt"), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    assert r.stdout.strip().endswith(f"0 of {len(lines)} differ")


def test_fast_requantization_is_refused_where_it_would_not_be_exact():
    from doit_tinyml.aot.layout import constant_channels, fast_requant_ok, rq_records

    m, s = (1 << 30) + 12345, -7
    assert fast_requant_ok([1000], [m], [s], 0)
    assert not fast_requant_ok([1000], [m], [0], 0)          # shift 0: no rounding step to fold
    assert not fast_requant_ok([1000], [1 << 30], [s], 0)    # the accumulator's sign may not be the product's
    assert not fast_requant_ok([1 << 30], [m], [s], 0)       # 2 * acc would overflow int32
    # a dead channel (all weights zero) does not veto the op: its record yields its one output
    const = constant_channels([0, 55], [0, m])
    assert const == [True, False]
    assert fast_requant_ok([2 ** 31, 1000], [0, m], [0, s], -5, const)
    rec = rq_records([0, m], [0, s], -5, True, [-9, None])
    assert rec[0] == (0, 2 * -9 + 1, 1) and rec[1] == (m, (1 << 6) - 5 * (1 << 7), 7)


# ------------------------------------------------------------------------------ float math

def test_kernel_exp_and_tanh_are_accurate(tmp_path):
    src = tmp_path / "f.c"
    src.write_text(r"""
#include <math.h>
#include <stdio.h>
#include "tinyml_kernels.h"
int main(void) {
  double e = 0, t = 0;
  float x;
  for (x = -87.0f; x < 88.0f; x += 0.0137f) {
    const double r = exp((double)x), d = fabs(tml_expf(x) - r) / r;
    if (d > e) e = d;
  }
  for (x = -10.0f; x < 10.0f; x += 0.00113f) {
    const double r = tanh((double)x);
    if (fabs(r) > 1e-30 && fabs(tml_tanhf(x) - r) / fabs(r) > t) t = fabs(tml_tanhf(x) - r) / fabs(r);
  }
  printf("%g %g\n", e, t);
  return !(e < 1.2e-7 && t < 3e-7 && tml_expf(0.0f) == 1.0f && tml_tanhf(0.0f) == 0.0f && tml_expf(-200.0f) == 0.0f);
}
""")
    exe = tmp_path / "f"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Werror", f"-I{KERNELS_DIR}", str(src),
                    str(KERNELS_DIR / "tinyml_kernels.c"), "-lm", "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


# ------------------------------------------------------------------------------ memory plan

def test_plan_overlaps_let_a_chain_fit_in_its_largest_step():
    """conv (input 27648 -> output 18432, lag 94), depthwise (lag -384), pointwise 8->16 (output
    36864, lag 18440): VWW's first three operators fit in the pointwise step, 36880 bytes, where
    a plan without overlaps needs the input and the pointwise output side by side."""
    from doit_tinyml.aot.plan import Buffer, Overlap, check_plan, plan_memory

    bufs = [Buffer("in", 27648, -1, 0), Buffer("c0", 18432, 0, 1), Buffer("d1", 18432, 1, 2),
            Buffer("p2", 36864, 2, 3)]
    ovs = [Overlap("c0", "in", 94), Overlap("d1", "c0", -384), Overlap("p2", "d1", 18440)]
    total = plan_memory(bufs, ovs)
    check_plan(bufs, ovs)
    assert total <= 36880 + 16
    plain = [Buffer(b.name, b.size, b.first, b.last) for b in bufs]
    assert plan_memory(plain) >= 36864 + 18432


def test_plan_never_overlaps_what_no_overlap_allows():
    from doit_tinyml.aot.plan import Buffer, Overlap, check_plan, plan_memory

    rng = random.Random(5)
    for _ in range(60):
        bufs = [Buffer(f"b{i}", rng.randint(1, 600), i - 1, i + rng.randint(0, 2)) for i in range(rng.randint(2, 10))]
        ovs = [Overlap(f"b{i + 1}", f"b{i}", rng.randint(-300, 300)) for i in range(len(bufs) - 1) if rng.random() < 0.6]
        total = plan_memory(bufs, ovs)
        check_plan(bufs, ovs)
        assert all(0 <= b.offset and b.offset + b.size <= total for b in bufs)


# ------------------------------------------------------------------------------ random models

def _random_check(seed: int, tmp: Path) -> dict:
    from doit_tinyml.aot import testmodels
    from doit_tinyml.aot.check import check_generated
    from doit_tinyml.aot.generate import generate

    tfl, npz = testmodels.build_random(seed, MODEL_CACHE)
    info = generate(tfl, tmp / "gen")
    res = check_generated(tfl, npz, tmp / "gen", info, work_dir=tmp / "work")  # portable and DSP code paths
    assert res["passed"] and res["io_in_arena"]
    # RAM: one arena holding the activations, the input and the output, never above TFLM's arena
    assert res["planned_bytes"] <= res["tflm_arena_target32_bytes"], (seed, res["planned_bytes"],
                                                                      res["tflm_arena_target32_bytes"])
    return res


@pytest.mark.parametrize("seed", [0, 1, 2, 5, 7, 9])
def test_random_models_exact_on_both_kernel_variants_and_within_tflm_ram(seed, tmp_path):
    _random_check(seed, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not SLOW, reason="slow sweep of 60 random models: set TINYML_SLOW=1")
@pytest.mark.parametrize("seed", range(10, 70))
def test_random_models_sweep(seed, tmp_path):
    _random_check(seed, tmp_path)


# ------------------------------------------------------------------------------ compile-time choice

def test_the_core_picks_the_kernels_at_compile_time(tmp_path):
    """One generated C serves every core: the DSP inner loops for a core with the DSP extension,
    the portable ones otherwise (and on request)."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    src = tmp_path / "v.c"
    src.write_text('#include "tinyml_simd.h"\nint dsp = TML_DSP + 10;\n')
    for flags, want in ((["-mcpu=cortex-m4"], 1), (["-mcpu=cortex-m7"], 1), (["-mcpu=cortex-m33"], 1),
                        (["-mcpu=cortex-m33+nodsp"], 0), (["-mcpu=cortex-m3"], 0), (["-mcpu=cortex-m0plus"], 0),
                        (["-mcpu=cortex-m4", "-DTML_FORCE_PORTABLE"], 0)):
        out = subprocess.run(["arm-none-eabi-gcc", *flags, "-mthumb", f"-I{KERNELS_DIR}", "-E", "-dM", str(src)],
                             capture_output=True, text=True, check=True).stdout
        r = subprocess.run(["arm-none-eabi-gcc", *flags, "-mthumb", f"-I{KERNELS_DIR}", "-S", "-o", "-", str(src)],
                           capture_output=True, text=True, check=True).stdout
        assert (f"\t.word\t{want + 10}" in r), (flags, r[-300:])
        assert ("__ARM_FEATURE_DSP" in out) == (want == 1 or "-DTML_FORCE_PORTABLE" in flags)
    for flags in (["-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"], ["-mcpu=cortex-m0plus"]):
        for c in KERNEL_SOURCES:
            r = subprocess.run(["arm-none-eabi-gcc", *flags, "-mthumb", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror",
                                f"-I{KERNELS_DIR}", "-c", str(c), "-o", str(tmp_path / "k.o")], capture_output=True,
                               text=True)
            assert r.returncode == 0, r.stderr


@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_cortex_m3_runs_the_portable_kernels_identically(tmp_path):
    """QEMU's mps2-an385 is a Cortex-M3 (no DSP extension, no FPU): the firmware reports the
    portable kernels and gives the host's outputs bit for bit, int8 and float alike."""
    from doit_tinyml.aot import testmodels
    from doit_tinyml.aot.target import target_check

    for name in ("cnn_int8", "zoo_float"):
        tfl, npz = testmodels.build(name, MODEL_CACHE)
        res = target_check(tfl, npz, None, work_dir=tmp_path / name, core_dir=tmp_path / "core", max_samples=8,
                           target="mps2_an385")
        assert res["core"] == "cortex-m3" and res["kernels"] == "portable" and res["identical"] is True


@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_float_fully_connected_on_the_fpu_equals_the_host_and_the_cortex_m3(tmp_path):
    """The Cortex-M4F's float dot products (VLDM/VMUL/VADD, 4 neurons per pass) sum in the plain C
    loop's order without fused multiply-add: the same bits as the host and the soft-float Cortex-M3,
    on sizes that hit every remainder path; and within TFLM's tolerance on the host."""
    from doit_tinyml.aot import testmodels
    from doit_tinyml.aot.check import host_check
    from doit_tinyml.aot.target import target_check

    tfl, npz = testmodels.build("fc_float_odd", MODEL_CACHE)
    res = host_check(tfl, npz, tmp_path / "aot.json", work_dir=tmp_path / "host")
    assert res["passed"] and res["float_max_rel_error"] <= 1e-5
    for target in ("mps2_an386", "mps2_an385"):
        r = target_check(tfl, npz, None, work_dir=tmp_path / target, core_dir=tmp_path / "core", max_samples=16,
                         target=target)
        assert r["identical"] is True and r["max_rel_diff_vs_host"] == 0.0, target


@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_depthwise_tap_pairs_on_the_cortex_m4_equal_tflm_on_odd_shapes(tmp_path):
    """The DSP core's 3x3 depthwise kernel (tap pairs per SMLAD, inline asm) on a partial channel
    group, stride 1 and 2, odd widths and a width of 1, with and without activation clamps: the
    host build (both kernel variants) equals TFLM, the Cortex-M4 equals the host byte for byte."""
    from doit_tinyml.aot import testmodels
    from doit_tinyml.aot.check import host_check
    from doit_tinyml.aot.target import target_check

    tfl, npz = testmodels.build("dw_odd_int8", MODEL_CACHE)
    res = host_check(tfl, npz, tmp_path / "aot.json", work_dir=tmp_path / "host")
    assert res["passed"] and res["int8_identical_fraction"] == 1.0
    assert sum(1 for k in res["kernels"] if k["op"] == "DEPTHWISE_CONV_2D" and k.get("tap_pairs")) >= 4
    r = target_check(tfl, npz, None, work_dir=tmp_path / "m4", core_dir=tmp_path / "core", max_samples=16)
    assert r["kernels"] == "dsp" and r["identical"] is True


@pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-system-arm and arm-none-eabi-gcc")
def test_matrix_product_on_the_cortex_m4_equals_tflm_on_every_loop_entry(tmp_path):
    """The DSP core's convolution block (inline asm, fixed registers, the 4-step loop entered in its
    middle through TBB) on K/4 = 7, 2, 5 and 8, odd channel and pixel counts, clamps narrower than
    int8, a 1x1 output (tml_gemm1_s8) and max pools of 8 channels (4 per word) and 6: the host
    build (both kernel variants) equals TFLM, the Cortex-M4 equals the host byte for byte."""
    from doit_tinyml.aot import testmodels
    from doit_tinyml.aot.check import host_check
    from doit_tinyml.aot.generate import act_range_q, load
    from doit_tinyml.aot.target import target_check

    tfl, npz = testmodels.build("gemm_odd_int8", MODEL_CACHE)
    import numpy as np

    _, _, T, ops = load(tfl)
    convs = [op for name, op in ops if name == "CONV_2D"]
    steps = {(int(np.prod(T[op.inputs[1]].shape[1:])) + 3) // 4 for op in convs}  # K/4, rounded up
    assert {n % 4 for n in steps} == {0, 1, 2, 3}, steps  # every entry point of the 4-step loop
    clamps = [act_range_q(int(op.options.fusedActivationFunction), T[op.outputs[0]].scale, T[op.outputs[0]].zp)
              for op in convs]
    assert any(lo > -128 for lo, _ in clamps) and any(hi < 127 for _, hi in clamps), clamps
    res = host_check(tfl, npz, tmp_path / "aot.json", work_dir=tmp_path / "host")
    assert res["passed"] and res["int8_identical_fraction"] == 1.0
    kernels = [k["kernel"] for k in res["kernels"] if k["op"] == "CONV_2D"]
    assert "tml_gemm1_s8" in kernels and kernels.count("tml_gemm_s8") == 6
    r = target_check(tfl, npz, None, work_dir=tmp_path / "m4", core_dir=tmp_path / "core", max_samples=16)
    assert r["kernels"] == "dsp" and r["identical"] is True


def _small_fc_models():
    """Tiny dense stacks whose every layer the generator writes as code on DSP cores (<= 16 inputs,
    <= 64 outputs): input counts 1, 2, 3, 5, 6, 7, 9 (whole words and tails of 1-3 inputs), per
    tensor and per channel scales, ReLU / ReLU6 / none, int8 and float I/O. Cached on disk."""
    import hashlib

    import numpy as np

    from doit_tinyml.aot import testmodels
    from doit_tinyml.engine.keras_io import import_tensorflow, seed_everything

    tf, keras = import_tensorflow()
    key = hashlib.sha256((tf.__version__ + "small_fc v1").encode()).hexdigest()[:12]
    d = MODEL_CACHE / f"small_fc_{key}"
    d.mkdir(parents=True, exist_ok=True)
    specs = {"small_fc_a": (3, [(7, "relu"), (5, "relu6"), (6, None), (2, None)], False, True),
             "small_fc_b": (2, [(9, "relu"), (16, "relu"), (1, None)], True, False),
             "small_fc_c": (1, [(12, "relu"), (3, None)], True, True)}
    out = []
    for name, (n_in, layers, per_channel, int8_io) in specs.items():
        tfl, npz = d / f"{name}.tflite", d / f"{name}.npz"
        if not (tfl.exists() and npz.exists()):
            seed_everything(7)
            rng = np.random.default_rng(1)
            x = (3 * rng.normal(size=(256, n_in))).astype("float32")
            m = keras.Sequential([keras.Input((n_in,))] + [keras.layers.Dense(u, activation=a) for u, a in layers])
            testmodels._fit(m, x, rng.normal(size=(256, layers[-1][0])).astype("float32"), "mse")
            tfl.write_bytes(testmodels._convert(m, x, int8=True, int8_io=int8_io, per_channel=per_channel))
            np.savez(npz, x_test=x[:64])
        out.append((name, tfl, npz))
    return out


def test_small_fully_connected_layers_generated_as_code_equal_tflm(tmp_path):
    """Small int8 dense layers become generated code on DSP cores (tinyml_model.c): the host build
    (both variants, the DSP one emulated) equals TFLM, and under QEMU the Cortex-M4 (generated
    code) and the Cortex-M3 (tml_fc_packed_s8, portable) equal the host byte for byte."""
    from doit_tinyml.aot.check import host_check
    from doit_tinyml.aot.target import target_check

    for name, tfl, npz in _small_fc_models():
        res = host_check(tfl, npz, tmp_path / f"{name}.json", work_dir=tmp_path / name / "host")
        assert res["passed"], name
        if name == "small_fc_b":  # float I/O: QUANTIZE first, DEQUANTIZE last
            assert res["float_max_rel_error"] == 0.0
        else:
            assert res["int8_identical_fraction"] == 1.0
        fcs = [k for k in res["kernels"] if k["op"] == "FULLY_CONNECTED"]
        assert fcs and all("generated" in k.get("dsp_kernel", "") and k["scratch"] == 0 for k in fcs), (name, fcs)
        if HAVE_QEMU:
            for target in ("mps2_an386", "mps2_an385"):
                r = target_check(tfl, npz, None, work_dir=tmp_path / name / target, core_dir=tmp_path / "core",
                                 max_samples=32, target=target)
                assert r["identical"] is True, (name, target)
