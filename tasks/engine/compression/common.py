"""What every compression method shares: the training context, model measurements, graph checks.

TensorFlow is imported inside the functions only.
"""
from __future__ import annotations

import gzip
import math
from pathlib import Path

from ..errors import TinyMLError
from ..keras_io import import_tensorflow, make_optimizer, save_model, weights_sizes
from .remove import count_macs, count_params

KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")


def kernel_stats(model) -> dict:
    """Per weight kernel, keyed "<layer>/<kernel>": shape, size, fraction of zeros, distinct values."""
    import numpy as np

    out = {}
    for layer in model.layers:
        for w in layer.weights:
            short = w.name.split("/")[-1].split(":")[0]
            if short not in KERNEL_NAMES:
                continue
            a = w.numpy()
            out[f"{layer.name}/{short}"] = {"shape": list(a.shape), "size": int(a.size),
                                            "sparsity": float(np.mean(a == 0)), "distinct": int(np.unique(a).size)}
    return out


def file_sizes(data: bytes) -> dict:
    return {"keras_bytes": len(data), "keras_gzip_bytes": len(gzip.compress(data, compresslevel=9, mtime=0))}


def measure(model, tmpdir: Path, tag: str) -> dict:
    p = Path(tmpdir) / f"{tag}.keras"
    fmt = save_model(model, p)
    rec = {"params": count_params(model), "macs": int(count_macs(model)), "format": fmt}
    rec.update(file_sizes(p.read_bytes()))
    rec.update(weights_sizes(model))
    return rec


class Context:
    """What every step needs: data, loss, optimizer factory, where to name errors, what ran before."""

    def __init__(self, data: dict, loss: str, optimizer: str, seed: int, label: str):
        self.data = data
        self.loss = loss
        self.optimizer_name = optimizer
        self.seed = seed
        self.label = label
        self.pruned = False
        self.clustered = False

    def optimizer(self, learning_rate: float):
        return make_optimizer(self.optimizer_name, learning_rate)

    def fit(self, model, step: dict, callbacks=None, y=None, loss=None):
        model.compile(optimizer=self.optimizer(step["learning_rate"]), loss=loss or self.loss)
        if step["epochs"] > 0:
            model.fit(self.data["x_train"], self.data["y_train"] if y is None else y, epochs=step["epochs"],
                      batch_size=step["batch_size"], shuffle=True, verbose=0, callbacks=callbacks or [])
        return model

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(len(self.data["x_train"]) / batch_size)

    def layer_error(self, method: str, layer, why: str, fix: str) -> TinyMLError:
        return TinyMLError(f"{self.label} ({method}): layer {layer.name!r} ({type(layer).__name__}) {why}; {fix}")


def layers(model):
    return [l for l in model.layers if type(l).__name__ != "InputLayer"]


def check_graph(model, ctx: Context, method: str):
    _, keras = import_tensorflow()
    for l in layers(model):
        if isinstance(l, keras.Model):
            raise ctx.layer_error(method, l, "is a nested model", "flatten it into one Sequential/functional model")


def predict(model, x, batch_size: int = 1024):
    """Inference without tracing a tf.function (fast for the small models this stage handles)."""
    import numpy as np

    return np.concatenate([model(x[i:i + batch_size], training=False).numpy()
                           for i in range(0, len(x), batch_size)], axis=0)


def test_loss(model, data, loss) -> float | None:
    if "x_test" not in data or len(data["x_test"]) == 0:
        return None
    _, keras = import_tensorflow()
    pred = predict(model, data["x_test"])
    return float(keras.losses.get(loss)(data["y_test"], pred).numpy().mean())


