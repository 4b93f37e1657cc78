"""Compress stage: trained.keras -> compressed.keras + compress.json, by a variant's ordered `steps`.

The methods (distill, remove, prune, cluster, qat) live in engine/compression, one module each;
this stage loads the trained model, applies the steps in order, measures the model after each
(params, MACs, file sizes, test loss, per-kernel sparsity and distinct values) and saves the result
byte-deterministically.
"""
from __future__ import annotations

from pathlib import Path

from .engine import compression
from .engine.compression import common, remove
from .engine.compression.settings import validate_steps
from .engine.errors import TinyMLError
from .engine.io import read_npz, write_json
from .engine.keras_io import import_tensorflow, load_model, save_model, seed_everything, weights_sizes


def run(trained_path: Path, dataset_npz: Path, steps: tuple[dict, ...], out_keras: Path, out_json: Path, *,
        seed: int, loss: str, optimizer: str = "adam") -> dict:
    """Apply the variant's steps in order to the trained model; write compressed.keras and compress.json."""
    import tempfile

    trained_path, dataset_npz, out_keras, out_json = map(Path, (trained_path, dataset_npz, out_keras, out_json))
    steps = validate_steps(list(steps), f"{out_keras.parent} steps")
    data = read_npz(dataset_npz)
    for k in ("x_train", "y_train"):
        if k not in data:
            raise TinyMLError(f"{dataset_npz}: has no {k!r} array; rebuild the dataset stage")
    _, keras = import_tensorflow()
    keras.backend.clear_session()  # auto-generated layer names (student, QuantizeLayer) restart from 0:
    seed_everything(seed)          # the same steps give the same bytes whatever ran before in this process
    model = load_model(trained_path)
    label = f"{out_keras.parent}"
    records = []
    with tempfile.TemporaryDirectory(prefix="tinyml-compress-") as td:
        before = common.measure(model, td, "trained")
        before["test_loss"] = common.test_loss(model, data, loss)
        ctx = common.Context(data, loss, optimizer, seed, label)
        for i, step in enumerate(steps):
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
        for rec in records:
            rec.pop("_after")
    fmt = save_model(model, out_keras)
    final = {"params": remove.count_params(model), "macs": int(remove.count_macs(model)), "format": fmt,
             **common.file_sizes(out_keras.read_bytes()), **weights_sizes(model)}
    result = {"steps": records, "trained": before, "final": final,
              "requires_full_integer": any(s["method"] == "qat" for s in steps)}
    write_json(out_json, result)
    return result
