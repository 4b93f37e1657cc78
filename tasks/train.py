"""Train stage: dataset.npz -> trained.keras (+ history.json), seeded and byte-deterministic."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

from .config import ModelSettings, TrainingSettings
from .util import TinyMLError, atomic_path, import_tensorflow, normalise_keras_zip, seed_everything, write_json

_KERAS_LAYER = {
    "dense": "Dense", "conv1d": "Conv1D", "conv2d": "Conv2D", "depthwise_conv2d": "DepthwiseConv2D",
    "max_pooling1d": "MaxPooling1D", "max_pooling2d": "MaxPooling2D",
    "average_pooling1d": "AveragePooling1D", "average_pooling2d": "AveragePooling2D",
    "global_average_pooling1d": "GlobalAveragePooling1D", "global_average_pooling2d": "GlobalAveragePooling2D",
    "global_max_pooling1d": "GlobalMaxPooling1D", "global_max_pooling2d": "GlobalMaxPooling2D",
    "flatten": "Flatten", "reshape": "Reshape", "dropout": "Dropout",
    "batch_normalization": "BatchNormalization", "activation": "Activation", "relu": "ReLU",
}


def build_model(input_shape, layers):
    """Build a tf_keras Sequential model from the tinyml.toml layer list (also used for students)."""
    _, keras = import_tensorflow()
    model = keras.Sequential(name="model")
    model.add(keras.layers.Input(shape=tuple(input_shape)))
    for i, spec in enumerate(layers):
        spec = dict(spec)
        cls = getattr(keras.layers, _KERAS_LAYER[spec.pop("type")])
        for k in ("kernel_size", "strides", "pool_size", "target_shape"):
            if isinstance(spec.get(k), list):
                spec[k] = tuple(spec[k])
        try:
            model.add(cls(**spec))
        except (ValueError, TypeError) as e:
            raise TinyMLError(f"layer {i} ({cls.__name__}) cannot be built on input "
                              f"{tuple(model.output_shape[1:])}: {e}") from None
    return model


def _from_builder(ref: str, input_shape, meta: dict):
    mod, fn = ref.split(":")
    try:
        func = getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as e:
        raise TinyMLError(f"[model] builder {ref!r} cannot be imported: {e}") from None
    return func(input_shape=tuple(input_shape), n_classes=meta.get("n_classes"), task=meta["task"])


def _metrics_for(task: str):
    return {"binary": ["accuracy"], "multiclass": ["accuracy"]}.get(task, ["mae"])


def make_optimizer(name: str, learning_rate: float):
    _, keras = import_tensorflow()
    classes = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop", "adamw": "AdamW", "nadam": "Nadam",
               "adagrad": "Adagrad"}
    return getattr(keras.optimizers, classes[name])(learning_rate=learning_rate)


def run(arch: ModelSettings, training: TrainingSettings, seed: int, dataset_npz: Path, dataset_json: Path,
        out_model: Path, out_history: Path) -> dict:
    from . import dataset as ds

    meta = json.loads(Path(dataset_json).read_text())
    data = ds.load(dataset_npz)
    _, keras = import_tensorflow()
    # Layer names are numbered per process ("dense_3"): start from zero so a model trained after others
    # in the same doit run gets the same bytes as when it is trained alone.
    keras.backend.clear_session()
    seed_everything(seed)
    input_shape = arch.input_shape or tuple(meta["input_shape"])
    if arch.builder:
        model = _from_builder(arch.builder, input_shape, meta)
    else:
        model = build_model(input_shape, arch.layers)
    _check_output(model, meta)
    model.compile(optimizer=make_optimizer(training.optimizer, training.learning_rate), loss=training.loss,
                  metrics=_metrics_for(meta["task"]))
    callbacks = []
    if training.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(**training.early_stopping))
    hist = model.fit(data["x_train"], data["y_train"], epochs=training.epochs, batch_size=training.batch_size,
                     validation_split=training.validation_split, shuffle=True, verbose=0, callbacks=callbacks)
    save_model(model, out_model)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    history["epochs_run"] = len(hist.history.get("loss", []))
    history["params"] = int(model.count_params())
    write_json(out_history, history)
    return history


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


def save_model(model, path: Path) -> None:
    """Save a tf_keras model as .keras with deterministic bytes (no save date, fixed zip timestamps)."""
    with atomic_path(path) as tmp:
        model.save(tmp)
        tmp.write_bytes(normalise_keras_zip(tmp.read_bytes()))


def load_model(path: Path):
    """Load a trained model (no custom objects)."""
    _, keras = import_tensorflow()
    return keras.models.load_model(path, compile=False)
