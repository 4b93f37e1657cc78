"""The `aot` stage: .tflite -> tinyml_model.c/.h, proven against TFLM; `aot.json`.

Called by tasks/dag.py for every variant whose runtimes include "aot":

* `run(tflite, dataset_npz, out_dir, aot_json, *, core_dir)` generates the C sources into
  `out_dir`, compiles them on the host and compares the whole test split with the real TFLM
  interpreter (int8 identical, float within 1e-5), then runs the same C on QEMU's Cortex-M4 (`mps2_an386`, DSP kernels)
  and Cortex-M3 (`mps2_an385`, portable kernels), requires both identical to the host, and records
  the instruction count per inference. Writes aot.json last (engine.artifacts.Aot).
  A model the compiler cannot take is not a failure: aot.json says `supported: false` and why.
* `firmware_sources(aot_dir)` gives the firmware stage the extra sources and include folders.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from . import KERNEL_SOURCES, KERNELS_DIR
from ..engine.errors import TinyMLError
from ..engine import artifacts
from ..engine.io import sha256_file

TARGET_SAMPLES = 50
# the proof on the target: a core with the DSP extension and one without (tasks.aot.qemu)
TARGETS = ("mps2_an386", "mps2_an385")


def firmware_sources(aot_dir: Path) -> tuple[list[Path], list[Path]]:
    """(extra C sources, extra include dirs) a firmware needs to link the AOT model."""
    aot_dir = Path(aot_dir)
    src = aot_dir / "tinyml_model.c"
    if not src.is_file():
        raise TinyMLError(f"{src} is missing: the aot stage must run before the firmware stage (runtime = \"aot\").")
    return [src, *KERNEL_SOURCES], [aot_dir, KERNELS_DIR]


def run(tflite_path: Path, dataset_npz: Path, out_dir: Path, aot_json: Path, *, core_dir: Path | None = None,
        target: bool = True, target_samples: int = TARGET_SAMPLES) -> dict:
    from .check import check_generated
    from .generate import generate

    out_dir, aot_json = Path(out_dir), Path(aot_json)
    work = out_dir.parent / "aot_check"
    try:
        info = generate(tflite_path, out_dir)
    except TinyMLError as e:
        # A model the compiler cannot take (dynamic-range, float16, an op it lacks): not a failure of the
        # build. aot.json says why; the variant's aot firmware rows say so; every other runtime goes on.
        for stale in ("tinyml_model.c", "tinyml_model.h"):
            (out_dir / stale).unlink(missing_ok=True)
        record = artifacts.Aot(supported=False, reason=" ".join(str(e).split()))
        artifacts.write(aot_json, record)
        print(f"aot: {Path(tflite_path).name}: not compiled ({record.reason})", flush=True)
        return record.to_dict()
    result = check_generated(tflite_path, dataset_npz, out_dir, info, work_dir=work)
    result["weights_bytes"] = info["weights_bytes"]
    if target and core_dir is not None:
        missing = [t for t in ("qemu-system-arm", "arm-none-eabi-gcc") if shutil.which(t) is None]
        if missing:
            raise TinyMLError(f"{', '.join(missing)} not found on PATH: the aot stage proves the generated C on "
                              "QEMU's Cortex-M4 and Cortex-M3; install them (sudo apt-get install qemu-system-arm "
                              "gcc-arm-none-eabi) or remove runtime \"aot\"")
        from .target import target_check

        targets = {}
        for tgt in TARGETS:
            targets[tgt] = target_check(tflite_path, dataset_npz, None, work_dir=work / f"target_{tgt}",
                                        core_dir=Path(core_dir), max_samples=target_samples, target=tgt)
        result["target"] = {k: v for k, v in targets[TARGETS[0]].items() if k != "profile"}  # targets has it
        result["targets"] = targets
        result["instructions_per_inference"] = targets[TARGETS[0]]["instructions_per_inference"]
    result["sources_sha256"] = {p.name: sha256_file(p) for p in sorted(out_dir.glob("tinyml_model.*"))}
    record = artifacts.Aot(supported=True, **result)
    artifacts.write(aot_json, record)
    print(f"aot: {Path(tflite_path).name}: {result['samples']} samples identical to TFLM; RAM (arena with input "
          f"and output) {result['planned_bytes']} B (TFLM arena {result['tflm_arena_target32_bytes']} B on 32-bit)"
          + (f"; {result['instructions_per_inference']} instructions/inference on Cortex-M4"
             if "instructions_per_inference" in result else ""), flush=True)
    return record.to_dict()
