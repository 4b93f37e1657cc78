"""Compress stage: trained.keras -> compressed.keras + compress.json, by a variant's ordered `steps`.

The methods (distill, remove, prune, cluster, qat) live in engine/compression, one module each;
this stage loads the trained model, applies the steps in order, measures the model after each
(params, MACs, file sizes, test loss, per-kernel sparsity and distinct values) and saves the result
byte-deterministically.
"""
from __future__ import annotations

import json
from pathlib import Path

from .engine import artifacts, compression
from .engine.compression import common, remove
from .engine.compression.settings import validate_steps
from .engine.errors import TinyMLError
from .engine.io import read_npz, sha256_file, sha256_text, write_json
from .engine.keras_io import import_tensorflow, load_model, save_model, seed_everything, weights_sizes


def run(trained_path: Path, dataset_npz: Path, steps: tuple[dict, ...], out_keras: Path, out_json: Path, *,
        seed: int, loss: str, optimizer: str = "adam", cache_dir: Path | None = None, cache_salt: str = "") -> dict:
    """Apply the variant's steps in order to the trained model; write compressed.keras and compress.json.

    With `cache_dir`, the model after each step is kept under the hash of everything it depends on
    (the trained model and dataset bytes, loss, optimizer, seed, the steps so far, and `cache_salt`:
    the stage's code hash). A variant whose steps begin like another's starts from the longest prefix
    already computed, so shared steps run once. Every step starts from a model loaded from disk,
    cached or not, so a variant's bytes never depend on what ran before it.
    """
    import tempfile

    trained_path, dataset_npz, out_keras, out_json = map(Path, (trained_path, dataset_npz, out_keras, out_json))
    steps = validate_steps(list(steps), f"{out_keras.parent} steps")
    data = read_npz(dataset_npz)
    for k in ("x_train", "y_train"):
        if k not in data:
            raise TinyMLError(f"{dataset_npz}: has no {k!r} array; rebuild the dataset stage")
    _, keras = import_tensorflow()
    base = sha256_text(json.dumps({"trained": sha256_file(trained_path), "data": sha256_file(dataset_npz),
                                   "loss": loss, "optimizer": optimizer, "seed": seed, "salt": cache_salt},
                                  sort_keys=True))
    keys = [sha256_text(base + json.dumps(list(steps[:k + 1]), sort_keys=True, default=str)) for k in range(len(steps))]
    with tempfile.TemporaryDirectory(prefix="tinyml-compress-") as td:
        work = Path(cache_dir) if cache_dir is not None else Path(td) / "steps"
        start, records, flags = 0, [], {"pruned": False, "clustered": False}
        for k in range(len(steps), 0, -1):   # the longest prefix already computed
            cached = work / f"{keys[k - 1]}.json"
            if cached.is_file() and (work / f"{keys[k - 1]}.keras").is_file():
                state = json.loads(cached.read_text())
                start, records, flags = k, state["records"], state["flags"]
                break
        keras.backend.clear_session()  # auto-generated layer names restart from 0 for every model loaded
        model = load_model(trained_path)
        before = common.measure(model, td, "trained")
        before["test_loss"] = common.test_loss(model, data, loss)
        ctx = common.Context(data, loss, optimizer, seed, f"{out_keras.parent}")
        ctx.pruned, ctx.clustered = flags["pruned"], flags["clustered"]
        if start:
            print(f"compress: steps[0..{start - 1}] shared with another variant: taken from the step cache",
                  flush=True)
        for i in range(start, len(steps)):
            step = steps[i]
            if i:   # start every step from the previous one's saved model (same bytes, cached or not)
                keras.backend.clear_session()
                model = load_model(work / f"{keys[i - 1]}.keras")
            ctx.label = f"{out_keras.parent} steps[{i}]"
            seed_everything(seed + i)
            prev = records[-1]["_after"] if records else before
            model, extra = compression.apply(step["method"])(model, step, ctx)
            after = common.measure(model, td, f"step{i}")
            after["test_loss"] = common.test_loss(model, data, loss)
            rec = {"method": step["method"], "settings": {k: v for k, v in step.items() if k != "method"},
                   "params_before": prev["params"], "params_after": after["params"],
                   "macs_before": prev["macs"], "macs_after": after["macs"],
                   "keras_bytes": after["keras_bytes"], "keras_gzip_bytes": after["keras_gzip_bytes"],
                   "test_loss": after["test_loss"], "kernels": common.kernel_stats(model), "_after": after}
            rec.update(extra)
            records.append(rec)
            save_model(model, work / f"{keys[i]}.keras")
            write_json(work / f"{keys[i]}.json", {"records": records, "flags": {"pruned": ctx.pruned,
                                                                               "clustered": ctx.clustered}})
        keras.backend.clear_session()
        model = load_model(work / f"{keys[-1]}.keras")
        for rec in records:
            rec.pop("_after", None)
        fmt = save_model(model, out_keras)
    final = {"params": remove.count_params(model), "macs": int(remove.count_macs(model)), "format": fmt,
             **common.file_sizes(out_keras.read_bytes()), **weights_sizes(model)}
    record = artifacts.Compress(steps=records, trained=before, final=final,
                                requires_full_integer=any(s["method"] == "qat" for s in steps))
    artifacts.write(out_json, record)
    return record.to_dict()
