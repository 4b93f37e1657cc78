"""The `aot` stage: .tflite -> tinyml_model.c/.h, proven against TFLM; `aot.json`.

Called by tasks/dag.py for every variant whose runtimes include "aot":

* `run(tflite, dataset_npz, out_dir, aot_json, *, core_dir)` generates the C sources into
  `out_dir`, compiles them on the host and compares the whole test split with the real TFLM
  interpreter (int8 identical, float within 1e-5), then, when qemu-system-arm and the offline
  PlatformIO core are available, runs the same code on QEMU's Cortex-M4 (`mps2_an386`) and
  records the instruction count per inference. Writes aot.json last.
* `firmware_sources(aot_dir)` gives the firmware stage the extra sources and include folders.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from . import KERNELS_DIR
from ..util import TinyMLError, write_json

TARGET_SAMPLES = 50


def firmware_sources(aot_dir: Path) -> tuple[list[Path], list[Path]]:
    """(extra C sources, extra include dirs) a firmware needs to link the AOT model."""
    aot_dir = Path(aot_dir)
    src = aot_dir / "tinyml_model.c"
    if not src.is_file():
        raise TinyMLError(f"{src} is missing: the aot stage must run before the firmware stage (runtime = \"aot\").")
    return [src, KERNELS_DIR / "tinyml_kernels.c"], [aot_dir, KERNELS_DIR]


def run(tflite_path: Path, dataset_npz: Path, out_dir: Path, aot_json: Path, *, core_dir: Path | None = None,
        target: bool = True, target_samples: int = TARGET_SAMPLES) -> dict:
    from .check import check_generated
    from .generate import generate

    out_dir = Path(out_dir)
    work = out_dir.parent / "aot_check"
    info = generate(tflite_path, out_dir)
    result = check_generated(tflite_path, dataset_npz, out_dir, info, work_dir=work)
    result["weights_bytes"] = info["weights_bytes"]
    if target and core_dir is not None:
        missing = [t for t in ("qemu-system-arm", "arm-none-eabi-gcc") if shutil.which(t) is None]
        if missing:
            result["target"] = {"skipped": f"{', '.join(missing)} not installed"}
        else:
            from .target import target_check

            t = target_check(tflite_path, dataset_npz, None, work_dir=work / "target", core_dir=Path(core_dir),
                             max_samples=target_samples)
            result["target"] = t
            result["instructions_per_inference"] = t["instructions_per_inference"]
    write_json(aot_json, result)
    print(f"aot: {Path(tflite_path).name}: {result['samples']} samples identical to TFLM; arena "
          f"{result['planned_bytes']} B (TFLM {result['tflm_arena_bytes']} B)"
          + (f"; {result['instructions_per_inference']} instructions/inference on Cortex-M4"
             if "instructions_per_inference" in result else ""), flush=True)
    return result
