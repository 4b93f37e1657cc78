"""The `tflm` stage: the real TFLite Micro on the emulated Cortex-M4; `tflm.json`.

Runs for a variant whose runtimes include tflm when a TFLite Micro library tree is configured or
found (`[models.<m>.firmware] tflm`, TINYML_TFLM_DIR, or the sketch's .pio/libdeps). It links the
user's tree (prebuilt once per core flags and kernel set, engine.tflm_link) into our target runner
with the variant's model_data.h op resolver and test vectors from the test split, runs it under
qemu-system-arm (engine.tflm_target) and records: outputs against the tflite-micro Python
interpreter, arena_used_bytes(), the minimal arena bisected on the target, instructions per
inference, and beside them the analyze stage's 32-bit arena (its error in percent) and the AOT
figures of the same variant. The firmware stage reads the instruction count for the time per
inference of the tflm rows.
"""
from __future__ import annotations

import re
from pathlib import Path

from .engine import artifacts
from .engine.errors import TinyMLError
from .engine.io import read_json

MAX_VECTORS = 32
_ARENA_DEFINE = re.compile(r"^#define TINYML_ARENA_SIZE (\d+)\s*$", re.M)


def header_arena(header: Path) -> int | None:
    """TINYML_ARENA_SIZE of a model_data.h (what the firmware reserves), None when the file does not say."""
    try:
        m = _ARENA_DEFINE.search(Path(header).read_text())
    except OSError:
        return None
    return int(m.group(1)) if m else None


def run(variant_dir: Path, dataset_npz: Path, out_json: Path, *, tflm: dict, core_dir: Path, cache: Path,
        label: str = "", max_vectors: int = MAX_VECTORS) -> dict:
    import numpy as np

    from .engine import tflm_link, tflm_target
    from .engine.boards import CATALOGUE

    variant_dir, out_json = Path(variant_dir), Path(out_json)
    out_json.unlink(missing_ok=True)
    label = label or f"{variant_dir.parent.name}/{variant_dir.name}"
    a = artifacts.read_dict(variant_dir / "analysis.json", artifacts.Analysis)
    tree = tflm_link.find_tree(tflm["library"], reference_kernels=tflm.get("reference_kernels"))
    board = CATALOGUE[tflm_target.BOARD_ID]
    kernels = tflm.get("kernels") or "cmsis_nn"
    if not a["tflm_compatible"]:
        first = next((p for p in a["problems"] if p.get("severity") == "error"), None) or {}
        why = f"TFLite Micro cannot run this variant ({first.get('message') or 'see analysis.json'})"
        artifacts.write(out_json, artifacts.TflmTarget(board=board.id, core=board.core, kernels=kernels,
                                                       library=tflm_link.describe_tree(tree, kernels), skipped=why))
        print(f"tflm: {label}: nothing to measure: {why}", flush=True)
        return {"skipped": why}
    model = (variant_dir / "model.tflite").read_bytes()
    wrong = tflm_link.check_model(tree, model)  # measured anyway: the outputs will show it
    lib = tflm_link.build_library(tree, kernels, board.gcc_flags, Path(cache), core=board.core)
    try:
        with np.load(dataset_npz) as d:
            x = d["x_test"]
    except (OSError, KeyError) as e:
        raise TinyMLError(f"{dataset_npz}: cannot read x_test ({e}); run `doit dataset`") from None
    res = tflm_target.measure(model, variant_dir, x, a["input"], a["output"], lib, variant_dir / "tflm",
                              Path(core_dir), max_vectors=max_vectors, what=label)
    arena = a.get("arena") or {}
    if arena.get("target32_bytes"):
        by_k = (arena.get("by_kernels") or {}).get(kernels) or {}
        t32 = int(by_k.get("target32_bytes") or arena["target32_bytes"])
        # the analyze stage's figure for this tree's TFLM generation (exact where its rules cover the model)
        mine = (by_k.get("by_tflm") or {}).get(tree.layout) or by_k or arena
        tree_t32 = int(mine.get("target32_bytes") or t32)
        res["analyze_arena"] = {"target32_bytes": t32, "bytes_with_margin": arena.get("bytes"),
                                "tree_layout": tree.layout, "tree_target32_bytes": tree_t32,
                                "error_pct": round(100.0 * (tree_t32 - res["arena_min_bytes"]) / res["arena_min_bytes"], 2),
                                "kernels": kernels, "exact": bool(mine.get("exact"))}
    reserved = header_arena(variant_dir / "model_data.h")
    if reserved is not None and res["arena_min_bytes"] > reserved:
        fig = res.get("analyze_arena", {}).get("tree_target32_bytes")
        raise TinyMLError(
            f"the real TFLite Micro ({res['kernels']} kernels, {tree.describe()}) needs a tensor arena of "
            f"{res['arena_min_bytes']:,} B on the target, and model_data.h reserves {reserved:,} B "
            f"(TINYML_ARENA_SIZE): this firmware could not allocate its tensors. Raise arena_margin in "
            f"[models.{variant_dir.parent.name}.firmware] so the header reserves at least {res['arena_min_bytes']:,} B"
            + (f" (the analyze stage's figure for this TFLM is {fig:,} B)" if fig else ""))
    aot_json = variant_dir / "aot.json"
    if aot_json.is_file():
        try:
            aot = read_json(aot_json)
        except (OSError, ValueError):
            aot = {}
        n = aot.get("instructions_per_inference")
        if n:
            res["aot"] = {"instructions_per_inference": int(n), "planned_bytes": aot.get("planned_bytes"),
                          "instructions_ratio_tflm_over_aot": round(res["instructions_per_inference"] / n, 3)
                          if res.get("instructions_per_inference") else None}
    if wrong and not res["outputs_equal"]:
        res["mismatch"] = f"{res.get('mismatch')}: {wrong}"
    artifacts.write(out_json, artifacts.TflmTarget(**res))
    eq = "outputs equal the Python interpreter's" if res["outputs_equal"] else f"OUTPUTS DIFFER: {res.get('mismatch')}"
    err = res.get("analyze_arena", {}).get("error_pct")
    print(f"tflm: {label} on {res['board']} ({res['kernels']}): {res['samples']} vectors, {eq}; arena used "
          f"{res['arena_used_bytes']:,} B, minimum {res['arena_min_bytes']:,} B"
          + (f" (analyze: {err:+.1f} %)" if err is not None else "")
          + (f"; {res['instructions_per_inference']:,} instructions/inference" if res.get("instructions_per_inference")
             else ""), flush=True)
    return res
