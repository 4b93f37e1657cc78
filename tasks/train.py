"""Train stage: dataset.npz -> trained.keras (+ history.json), seeded and byte-deterministic."""
from __future__ import annotations

import importlib
from pathlib import Path

from .engine.errors import TinyMLError
from .engine import artifacts
from .engine.io import read_npz
from .engine.keras_io import (build_model, import_tensorflow, make_optimizer, save_model, seed_everything,
                              weights_sizes)

def _from_builder(ref: str, input_shape, meta: dict):
    mod, fn = ref.split(":")
    try:
        func = getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as e:
        raise TinyMLError(f"[model] builder {ref!r} cannot be imported: {e}") from None
    return func(input_shape=tuple(input_shape), n_classes=meta.get("n_classes"), task=meta["task"])


def _metrics_for(task: str):
    return {"binary": ["accuracy"], "multiclass": ["accuracy"]}.get(task, ["mae"])


def run(arch, training, seed: int, dataset_npz: Path, dataset_json: Path,
        out_model: Path, out_history: Path) -> dict:
    meta = artifacts.read_dict(dataset_json, artifacts.Dataset)
    data = read_npz(dataset_npz)
    _, keras = import_tensorflow()
    # Layer names are numbered per process ("dense_3"): start from zero so a model trained after others
    # in the same doit run gets the same bytes as when it is trained alone.
    keras.backend.clear_session()
    seed_everything(seed)
    name = Path(out_model).parent.name
    data_shape = tuple(meta["input_shape"])
    if arch.input_shape and tuple(arch.input_shape) != data_shape:
        raise TinyMLError(f"train {name}: [model] input_shape = {list(arch.input_shape)} but each sample of the "
                          f"dataset has shape {list(data_shape)}; set input_shape = {list(data_shape)} or remove it")
    input_shape = arch.input_shape or data_shape
    if arch.builder:
        model = _from_builder(arch.builder, input_shape, meta)
        if not isinstance(model, keras.Model):
            raise TinyMLError(f"train {name}: [model] builder {arch.builder!r} returned {type(model).__name__}, "
                              f"not a tf_keras model")
        if tuple(model.input_shape[1:]) != tuple(input_shape):
            raise TinyMLError(f"train {name}: the model from builder {arch.builder!r} takes input "
                              f"{list(model.input_shape[1:])} but the samples have shape {list(input_shape)}")
    else:
        model = build_model(input_shape, arch.layers)
    _check_output(model, meta)
    model.compile(optimizer=make_optimizer(training.optimizer, training.learning_rate), loss=training.loss,
                  metrics=_metrics_for(meta["task"]))
    nan_stop = _StopOnNaN(keras)
    callbacks = [nan_stop]
    if training.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(**training.early_stopping))
    try:
        hist = model.fit(data["x_train"], data["y_train"], epochs=training.epochs, batch_size=training.batch_size,
                         validation_split=training.validation_split, shuffle=True, verbose=0, callbacks=callbacks)
    except (ValueError, TypeError) as e:   # Keras rejects data/model/loss combinations with these
        text = " ".join(str(e).split())
        tail = text[-400:] if len(text) > 400 else text
        raise TinyMLError(f"train {name}: Keras cannot fit this model to the dataset: {tail}") from None
    if nan_stop.bad is not None:
        epoch, key, value = nan_stop.bad
        raise TinyMLError(f"train {name}: the training {key} became {value} at epoch {epoch} (of "
                          f"{training.epochs}), so training stopped and nothing was saved; lower [training] "
                          f"learning_rate (now {training.learning_rate:g}), set [dataset] normalize = \"standard\", "
                          f"or check the data for huge values")
    _check_weights(model, name)
    save_model(model, out_model)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    history["epochs_run"] = len(hist.history.get("loss", []))
    history["epochs"] = int(training.epochs)
    history["early_stopped"] = history["epochs_run"] < training.epochs
    val = history.get("val_loss") or []
    history["best_val_loss"] = min(val) if val else None
    history["params"] = int(model.count_params())
    history.update(weights_sizes(model))
    artifacts.write_history(out_history, history)
    return history


def _StopOnNaN(keras):
    """A callback that stops training at the end of the first epoch whose loss is NaN or infinite.

    Checked per epoch, not per batch: a per-batch hook makes Keras copy its logs every step."""
    import math

    class StopOnNaN(keras.callbacks.Callback):
        bad = None

        def _check(self, logs, epoch):
            for key in ("loss", "val_loss"):
                v = (logs or {}).get(key)
                if v is not None and not math.isfinite(float(v)) and self.bad is None:
                    self.bad = (epoch, key.replace("val_loss", "validation loss"), float(v))
                    self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            self._check(logs, epoch + 1)

    return StopOnNaN()


def _check_weights(model, name: str) -> None:
    import numpy as np

    for w in model.weights:
        v = np.asarray(w.numpy())
        if v.dtype.kind == "f" and not np.isfinite(v).all():
            raise TinyMLError(f"train {name}: weight {w.name} holds NaN or infinite values after training; nothing "
                              f"was saved; lower [training] learning_rate or normalize the data")


def _check_output(model, meta: dict) -> None:
    out = tuple(model.output_shape[1:])
    task = meta["task"]
    want = None
    if task == "binary" and out not in ((1,), (2,)):
        want = "1 unit with sigmoid (or 2 with softmax)"
    elif task == "multiclass" and out != (meta["n_classes"],):
        want = f"{meta['n_classes']} units with softmax (one per class)"
    elif task in ("regression", "autoencoder") and out != tuple(meta["output_shape"]):
        want = f"shape {tuple(meta['output_shape'])} like the targets"
    if want:
        raise TinyMLError(f"the model's output has shape {out}, but a {task} model on this dataset needs {want}: "
                          f"check the last layer in [model] layers")
