"""Benchmark: the AOT runtime's speed, RAM and flash on QEMU's Cortex-M4, against its targets.

    .venv/bin/python bench/aot_speed.py [--models a,b,...] [--quick] [--mlperf-dir DIR]
                                        [--tflm PATH] [--samples N] [--json out.json]

Models (tasks/aot/testmodels.py BENCH, built here with the real converter, random weights briefly
fitted on random data): replicas of the four MLPerf Tiny v1 reference architectures (keyword
spotting DS-CNN, ResNet-8, visual wake words MobileNetV1-0.25, anomaly detection FC autoencoder),
the examples' architectures (cancer MLP, digits CNN, tapping autoencoder, waveform CNN) and the
sine sweep at widths 16 ... 768 in int8 and float32. `--mlperf-dir` adds the reference .tflite
files of mlcommons/tiny found in DIR (kws_ref_model.tflite, pretrainedResnet_quant.tflite,
vww_96_int8.tflite, ad01_int8.tflite; fetched outside the repository, never committed).

Per model:
* exactness first: the host build (portable and DSP kernel code paths) against the TFLM
  interpreter, then the Cortex-M4 firmware against the host (tasks.aot.check / tasks.aot.target);
* instructions per inference and per MAC under qemu-system-arm -M mps2-an386 -icount (exact
  instruction counts) for the AOT DSP kernels and the AOT portable kernels on the same core;
* with --tflm (or TINYML_TFLM_DIR): TFLM reference kernels and TFLM + CMSIS-NN (`tflm_measure`);
* RAM: the AOT arena, which holds the input and the output, against TFLM's minimum arena on a
  32-bit target (tasks.arena.measure); ST Edge AI's published activation RAM for MLPerf Tiny;
* flash above the weights: text+data of the generated model and the kernel library linked for the
  Cortex-M4 (arm-none-eabi-gcc -Os, --gc-sections, libc/libm as needed) minus the model's data
  (weight tensors as laid out, biases, per-channel requantization records).
The last lines print each target of issue 11 as met or MISSED.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MLPERF = ["mlperf_kws", "mlperf_resnet8", "mlperf_vww", "mlperf_ad"]
EXAMPLES = ["ex_cancer", "ex_digits", "ex_tap_window", "ex_waveforms"]
SINE_WIDTHS = (16, 32, 64, 128, 256, 512, 768)
SINES = [f"sine{w}_{t}" for w in SINE_WIDTHS for t in ("int8", "float")]
MODELS = MLPERF + EXAMPLES + SINES
QUICK = ["mlperf_kws", "mlperf_ad", "ex_digits", "sine16_int8", "sine16_float"]
# reference .tflite files of mlcommons/tiny (benchmark/training/*/trained_models) -> architecture
REFERENCE_FILES = {"kws_ref_model.tflite": "kws", "pretrainedResnet_quant.tflite": "resnet8",
                   "vww_96_int8.tflite": "vww", "ad01_int8.tflite": "ad"}
# published activation RAM (bytes): TFLM / ST Edge AI (issue 11); VWW's TFLM figure is approximate
PUBLISHED_RAM = {"kws": (24164, 18556), "resnet8": (55188, 44712), "vww": (82300, 41456), "ad": (2596, 2048)}
INSTR_PER_MAC_TARGET = 1.5
TFLM_RATIO_TARGET = 0.5
FLASH_OVERHEAD_TARGET = 12 * 1024
ARM = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]


def arch_of(name: str) -> str | None:
    for a in ("kws", "resnet8", "vww", "ad"):
        if name in (f"mlperf_{a}", f"ref_{a}"):
            return a
    return None


def macs(tflite: Path) -> int:
    """Multiply-accumulates of the conv/depthwise/fully connected operators."""
    import numpy as np

    from doit_tinyml.aot.generate import load

    _, _, T, ops = load(tflite)
    total = 0
    for name, op in ops:
        o = T[op.outputs[0]]
        if name == "CONV_2D":
            total += o.elems * int(np.prod(T[op.inputs[1]].shape[1:]))
        elif name == "DEPTHWISE_CONV_2D":
            w = T[op.inputs[1]].shape
            total += o.elems * w[1] * w[2]
        elif name == "FULLY_CONNECTED":
            total += o.elems * T[op.inputs[1]].shape[-1]
    return total


def arm_flash(gen_dir: Path, out: Path) -> int:
    """text+data of the model and kernels linked for the Cortex-M4 (entry tinyml_model_run)."""
    from doit_tinyml.aot import KERNEL_SOURCES, KERNELS_DIR

    elf = out / "aot_cm4.elf"
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["arm-none-eabi-gcc", *ARM, "-std=gnu11", "-Os", "-ffunction-sections", "-fdata-sections",
           f"-I{gen_dir}", f"-I{KERNELS_DIR}", str(gen_dir / "tinyml_model.c"), *map(str, KERNEL_SOURCES),
           "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections",
           "-Wl,-e,tinyml_model_run", "-lm", "-o", str(elf)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    line = subprocess.run(["arm-none-eabi-size", str(elf)], check=True, capture_output=True,
                          text=True).stdout.splitlines()[1].split()
    return int(line[0]) + int(line[1])


# ---------------------------------------------------------------------------------------------- TFLM

def tflm_measure(tflite: Path, npz: Path, tflm: Path, kernels: str, work: Path) -> dict | None:
    """Instructions per inference of the real TFLM interpreter (`kernels`: "reference" or
    "cmsis_nn") on the same QEMU Cortex-M4, or None when no build recipe is available.

    Kept separate on purpose: the project's firmware stage is to offer the TFLM build from a
    user-given library; until then this uses the recipe scripts found in `tflm` (gen_model.py,
    pio_build.py and a prebuilt libcache/<kernels>-cortex-m4f-*/libtflm.a)."""
    gen_py, build_py = tflm / "gen_model.py", tflm / "pio_build.py"
    libs = sorted((tflm / "libcache").glob(f"{kernels}-cortex-m4f-*/libtflm.a")) if (tflm / "libcache").is_dir() else []
    if not (gen_py.is_file() and build_py.is_file() and libs):
        return None
    gen, out = work / f"tflm_gen", work / f"tflm_{kernels}"
    py = sys.executable
    r = subprocess.run([py, str(gen_py), str(tflite), str(npz), str(gen), "--n", "4"], capture_output=True, text=True,
                       cwd=str(tflm))
    if r.returncode != 0:
        return {"error": (r.stderr or r.stdout)[-400:]}
    # the recipe's default arena (64 KiB) is too small for VWW (about 100 KB); QEMU's machine has 4 MiB
    r = subprocess.run([py, str(build_py), "--gen", str(gen), "--board", "mps2_an386", "--mode", "archive",
                        "--lib", str(libs[-1]), "--kernels", kernels, "--out", str(out), "--run",
                        "--arena-max", str(1 << 20)],
                       capture_output=True, text=True, cwd=str(tflm))
    try:
        rec = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
        return {"instructions_per_inference": rec["qemu"]["instr_per_inference"], "flash": rec.get("flash")}
    except (IndexError, KeyError, ValueError):
        return {"error": (r.stderr or r.stdout)[-400:]}


# ---------------------------------------------------------------------------------------------- AOT

def bench_model(name: str, tfl: Path, npz: Path, work: Path, samples: int, tflm: Path | None) -> dict:
    from doit_tinyml.aot.check import check_generated
    from doit_tinyml.aot.generate import generate
    from doit_tinyml.aot.target import target_check

    gen = work / name / "gen"
    info = generate(tfl, gen)
    chk = check_generated(tfl, npz, gen, info, work_dir=work / name / "check", max_samples=samples)
    core = work / "pio_core"
    dsp = target_check(tfl, npz, None, work_dir=work / name / "t_dsp", core_dir=core, max_samples=samples)
    port = target_check(tfl, npz, None, work_dir=work / name / "t_port", core_dir=core, max_samples=samples,
                        kernels="portable")
    n_macs = macs(tfl)
    flash = arm_flash(gen, work / name / "flash")
    row = {
        "model": name, "arch": arch_of(name), "macs": n_macs, "tflite_bytes": tfl.stat().st_size,
        "dsp": dsp["instructions_per_inference"], "portable": port["instructions_per_inference"],
        "identical": bool(dsp["identical"] and port["identical"]),
        "ram": info["planned_bytes"], "io_bytes": info["io_bytes"], "tflm_arena_32": chk["tflm_arena_target32_bytes"],
        "weights_bytes": info["weights_bytes"], "tables_bytes": info["tables_bytes"], "flash": flash,
        "ops_dsp": sum(1 for k in info["kernels"] if k["dsp_core"] == "dsp"), "ops": len(info["ops"]),
    }
    row["flash_above_weights"] = flash - info["weights_bytes"] - info["tables_bytes"]
    row["dsp_per_mac"] = row["dsp"] / n_macs if n_macs else None
    row["portable_per_mac"] = row["portable"] / n_macs if n_macs else None
    if tflm is not None:
        for k in ("reference", "cmsis_nn"):
            t = tflm_measure(tfl, npz, tflm, k, work / name)
            row[f"tflm_{k}"] = (t or {}).get("instructions_per_inference")
            if t and "error" in t:
                row[f"tflm_{k}_error"] = t["error"]
    return row


def reference_models(mlperf_dir: Path, work: Path) -> list[tuple[str, Path, Path]]:
    """The mlcommons/tiny reference .tflite files in `mlperf_dir`, each with random int8 inputs."""
    import numpy as np

    from doit_tinyml.aot.generate import load

    out = []
    for fname, arch in REFERENCE_FILES.items():
        f = mlperf_dir / fname
        if not f.is_file():
            continue
        _, sg, T, _ = load(f)
        t = T[sg.inputs[0]]
        q = np.random.default_rng(0).integers(-128, 128, size=(8, *t.shape[1:]))
        npz = work / f"ref_{arch}.npz"
        npz.parent.mkdir(parents=True, exist_ok=True)
        np.savez(npz, x_test=((q - t.zp) * t.scale).astype(np.float32))
        out.append((f"ref_{arch}", f, npz))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    ap.add_argument("--mlperf-dir", type=Path, help="also the mlcommons/tiny reference .tflite files found here")
    ap.add_argument("--tflm", type=Path, default=os.environ.get("TINYML_TFLM_DIR") or None,
                    help="TFLM build recipe (or env TINYML_TFLM_DIR): also measure TFLM reference and CMSIS-NN")
    ap.add_argument("--samples", type=int, default=4, help="test inputs per model on the host and the target")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "doit-tinyml-aot-speed")
    args = ap.parse_args(argv)

    from doit_tinyml.aot import testmodels

    t0 = time.time()
    tflm = Path(args.tflm) if args.tflm else None
    print("TFLM: not given, measuring AOT only" if tflm is None else f"TFLM: {tflm}", flush=True)
    names = QUICK if args.quick else [m.strip() for m in args.models.split(",") if m.strip()]
    models_dir = Path(tempfile.gettempdir()) / "doit-tinyml-aot-models"
    todo = [(n, *testmodels.build(n, models_dir)) for n in names]
    if args.mlperf_dir:
        todo += reference_models(args.mlperf_dir, args.work / "refs")
    rows = []
    for name, tfl, npz in todo:
        r = bench_model(name, tfl, npz, args.work, args.samples, tflm)
        rows.append(r)
        print(f"  {name}: {r['dsp']} instructions (DSP), {r['portable']} (portable), RAM {r['ram']} B", flush=True)

    def f2(v):
        return f"{v:.2f}" if isinstance(v, (int, float)) else "-"

    hdr = (f"{'model':<16}{'MACs':>10}{'AOT DSP':>11}{'/MAC':>7}{'portable':>11}{'/MAC':>7}{'TFLM ref':>11}"
           f"{'CMSIS-NN':>11}{'DSP/CMSIS':>10}{'RAM':>8}{'TFLM32':>8}{'flash':>9}{'weights':>9}{'tables':>8}"
           f"{'above':>8}")
    print()
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        ratio = r["dsp"] / r["tflm_cmsis_nn"] if r.get("tflm_cmsis_nn") else None
        print(f"{r['model']:<16}{r['macs']:>10}{r['dsp']:>11}{f2(r['dsp_per_mac']):>7}{r['portable']:>11}"
              f"{f2(r['portable_per_mac']):>7}{r.get('tflm_reference') or '-':>11}{r.get('tflm_cmsis_nn') or '-':>11}"
              f"{f2(ratio):>10}{r['ram']:>8}{r['tflm_arena_32']:>8}{r['flash']:>9}{r['weights_bytes']:>9}"
              f"{r['tables_bytes']:>8}{r['flash_above_weights']:>8}")
    print("\nAOT DSP / portable: instructions per inference on qemu-system-arm -M mps2-an386 -icount (Cortex-M4), DSP"
          " kernels and portable kernels; RAM: the AOT arena with the input and output in it; TFLM32: TFLM's minimum"
          " arena on a 32-bit target; flash: model + kernels for the Cortex-M4; above = flash - weights - tables"
          " (per-channel requantization records). Every model bit-exact with TFLM on the host and the target: "
          f"{'yes' if all(r['identical'] for r in rows) else 'NO'}.")

    # ---- targets (issue 11) ----
    def verdict(ok):
        return "met" if ok else "MISSED"

    ml = [r for r in rows if r["arch"]]
    if ml:
        parts = ", ".join(f"{r['model']} {r['dsp_per_mac']:.2f}" for r in ml)
        print(f"target: <= {INSTR_PER_MAC_TARGET} instructions/MAC on each MLPerf Tiny architecture (AOT DSP): "
              f"{parts}: {verdict(all(r['dsp_per_mac'] <= INSTR_PER_MAC_TARGET for r in ml))}")
    with_tflm = [r for r in rows if r.get("tflm_cmsis_nn")]
    if with_tflm:
        worst = max(with_tflm, key=lambda r: r["dsp"] / r["tflm_cmsis_nn"])
        print(f"target: <= {TFLM_RATIO_TARGET}x the instructions of TFLM with CMSIS-NN on every model: worst "
              f"{worst['model']} {worst['dsp'] / worst['tflm_cmsis_nn']:.2f}x ({len(with_tflm)} of {len(rows)} models "
              f"measured): {verdict(all(r['dsp'] <= TFLM_RATIO_TARGET * r['tflm_cmsis_nn'] for r in with_tflm))}")
    else:
        print(f"target: <= {TFLM_RATIO_TARGET}x the instructions of TFLM with CMSIS-NN on every model: not measured "
              "(no TFLM build recipe given: --tflm)")
    pairs = [(w, next((r for r in rows if r["model"] == f"sine{w}_int8"), None),
              next((r for r in rows if r["model"] == f"sine{w}_float"), None)) for w in SINE_WIDTHS]
    pairs = [(w, a, b) for w, a, b in pairs if a and b]
    if pairs:
        parts = ", ".join(f"{w}: {a['dsp'] / b['dsp']:.2f}" for w, a, b in pairs)
        print(f"target: int8 never slower than float32 at any sine width (int8/float32 instructions, DSP build): "
              f"{parts}: {verdict(all(a['dsp'] <= b['dsp'] for _, a, b in pairs))}")
    worst = max(rows, key=lambda r: r["ram"] / r["tflm_arena_32"])
    print(f"target: RAM (arena + input + output) never above TFLM's 32-bit arena: worst {worst['model']} "
          f"{worst['ram']} / {worst['tflm_arena_32']} B: {verdict(all(r['ram'] <= r['tflm_arena_32'] for r in rows))}")
    if ml:
        parts = ", ".join(f"{r['model']} {r['ram']} / {PUBLISHED_RAM[r['arch']][1]}" for r in ml)
        print(f"target: RAM <= ST Edge AI's published figure on each MLPerf Tiny architecture: {parts} B: "
              f"{verdict(all(r['ram'] <= PUBLISHED_RAM[r['arch']][1] for r in ml))}")
    worst = max(rows, key=lambda r: r["flash_above_weights"])
    print(f"target: flash above the weights < {FLASH_OVERHEAD_TARGET} B with the DSP kernels on every model: worst "
          f"{worst['model']} {worst['flash_above_weights']} B: "
          f"{verdict(all(r['flash_above_weights'] < FLASH_OVERHEAD_TARGET for r in rows))}")
    print(f"({len(rows)} models, {time.time() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
