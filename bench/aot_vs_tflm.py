"""Benchmark: ahead-of-time C (tasks/aot) against the TFLite Micro interpreter, per tiny model.

    .venv/bin/python bench/aot_vs_tflm.py [--qemu] [--json out.json] [--models sine_int8,cnn_int8]

For each model (built here with the real converter: sine MLP 16-16-1 int8 and float, MLP
128-64-32-1 int8, Conv1D classifier int8, 2D CNN on 8x8 digits int8, dense 32-8-32 autoencoder
int8) it prints

* RAM: the AOT arena (offline plan; it holds the model's input and output too) vs TFLM's measured
  minimum arena (tasks.arena.measure: real interpreter, bisection; host 64-bit figure and its
  32-bit derivation) -> ratio, target <= 0.75;
* flash: text+data of the generated model + kernels linked for Cortex-M4 (arm-none-eabi-gcc -Os,
  --gc-sections, entry tinyml_model_invoke, newlib-nano libm/libc pulled in as needed), from
  arm-none-eabi-size, vs the .tflite size; the overhead above the raw weights (code, parameter
  structs, multiplier tables, libm), target < 12 KB for the int8 MLPs;
* with --qemu: instructions per inference on QEMU's Cortex-M4 (tasks.aot.target), outputs
  checked identical to the host build.
Every AOT build is first checked bit-exact against TFLM on the host (tasks.aot.check).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ["sine_int8", "sine_float", "mlp128_int8", "conv1d_int8", "cnn_int8", "autoenc_int8"]
ARM = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
RAM_TARGET = 0.75
FLASH_OVERHEAD_TARGET = 12 * 1024


def arm_flash(gen_dir: Path, out: Path) -> dict:
    from doit_tinyml.aot import KERNEL_SOURCES, KERNELS_DIR

    elf = out / "aot_cm4.elf"
    cmd = ["arm-none-eabi-gcc", *ARM, "-std=c99", "-Os", "-Wall", "-Wextra", "-Werror", "-ffunction-sections",
           "-fdata-sections", f"-I{gen_dir}", f"-I{KERNELS_DIR}", str(gen_dir / "tinyml_model.c"),
           *map(str, KERNEL_SOURCES), "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
           "-Wl,--gc-sections", "-Wl,-e,tinyml_model_run", "-lm", "-o", str(elf)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    line = subprocess.run(["arm-none-eabi-size", str(elf)], check=True, capture_output=True,
                          text=True).stdout.splitlines()[1].split()
    text, data, bss = (int(v) for v in line[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data}


def bench_model(name: str, work: Path, models_dir: Path, qemu: bool) -> dict:
    from doit_tinyml.aot import testmodels
    from doit_tinyml.aot.check import check_generated
    from doit_tinyml.aot.generate import generate

    tfl, npz = testmodels.build(name, models_dir)
    gen = work / name / "gen"
    info = generate(tfl, gen)
    chk = check_generated(tfl, npz, gen, info, work_dir=work / name / "check")
    fl = arm_flash(gen, work / name)
    row = {
        "model": name,
        "tflite_bytes": tfl.stat().st_size,
        "aot_arena": info["planned_bytes"],
        "io_bytes": info["io_bytes"],
        "tflm_arena_host": chk["tflm_arena_bytes"],
        "tflm_arena_32": chk["tflm_arena_target32_bytes"],
        "weights_bytes": info["weights_bytes"],
        "aot_flash": fl["flash"],
        "flash_overhead": fl["flash"] - info["weights_bytes"],
        "samples_identical": chk["samples"],
    }
    row["ram_ratio_host"] = row["aot_arena"] / row["tflm_arena_host"]
    row["ram_ratio_32"] = row["aot_arena"] / row["tflm_arena_32"]
    row["ram_ratio_32_with_io"] = row["aot_arena"] / row["tflm_arena_32"]  # the arena holds the I/O
    row["flash_vs_tflite"] = row["aot_flash"] / row["tflite_bytes"]
    if qemu:
        from doit_tinyml.aot.target import target_check

        t = target_check(tfl, npz, None, work_dir=work / name / "target", core_dir=work / "pio_core", max_samples=20)
        row["instructions_per_inference"] = t["instructions_per_inference"]
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--qemu", action="store_true", help="also run on QEMU's Cortex-M4 and count instructions")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "doit-tinyml-aot-bench")
    args = ap.parse_args(argv)
    models_dir = Path(tempfile.gettempdir()) / "doit-tinyml-aot-models"
    rows = []
    t0 = time.time()
    for name in args.models.split(","):
        rows.append(bench_model(name.strip(), args.work, models_dir, args.qemu))
    hdr = (f"{'model':<14}{'tflite':>8}{'AOT arena':>10}{'TFLM host':>10}{'TFLM 32b':>9}{'ratio':>7}"
           f"{'ratio+io':>9}{'weights':>9}{'AOT flash':>10}{'overhead':>9}{'flash/tflite':>13}"
           + (f"{'instr/inf':>11}" if args.qemu else ""))
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['model']:<14}{r['tflite_bytes']:>8}{r['aot_arena']:>10}{r['tflm_arena_host']:>10}"
              f"{r['tflm_arena_32']:>9}{r['ram_ratio_32']:>7.2f}{r['ram_ratio_32_with_io']:>9.2f}"
              f"{r['weights_bytes']:>9}{r['aot_flash']:>10}{r['flash_overhead']:>9}{r['flash_vs_tflite']:>13.2f}"
              + (f"{r['instructions_per_inference']:>11}" if args.qemu else ""))
    ok_ram = all(r["ram_ratio_32"] <= RAM_TARGET for r in rows)
    mlps = [r for r in rows if r["model"] in ("sine_int8", "mlp128_int8", "autoenc_int8")]
    ok_flash = all(r["flash_overhead"] < FLASH_OVERHEAD_TARGET for r in mlps)
    print(f"\nratio = AOT arena / TFLM 32-bit arena (target <= {RAM_TARGET}): {'met' if ok_ram else 'MISSED'}; "
          f"the AOT arena holds the input and output, as TFLM's does (ratio+io = ratio).")
    print(f"overhead = AOT flash - weights (target < {FLASH_OVERHEAD_TARGET} B for the int8 MLPs): "
          f"{'met' if ok_flash else 'MISSED'}.")
    print(f"every model checked bit-exact against TFLM on the host first ({time.time() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if ok_ram and ok_flash else 1


if __name__ == "__main__":
    sys.exit(main())
