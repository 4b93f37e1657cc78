"""Keras (tf_keras, Keras 2) on one page: import TensorFlow the way tfmot needs it, seed, build a model
from tinyml.toml's layer list, and load and save every model a stage writes, byte-deterministically.

TensorFlow is imported inside these functions only: importing this module is free.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import TinyMLError
from .io import atomic_path

KERAS_LAYER = {
    "dense": "Dense", "conv1d": "Conv1D", "conv2d": "Conv2D", "depthwise_conv2d": "DepthwiseConv2D",
    "max_pooling1d": "MaxPooling1D", "max_pooling2d": "MaxPooling2D",
    "average_pooling1d": "AveragePooling1D", "average_pooling2d": "AveragePooling2D",
    "global_average_pooling1d": "GlobalAveragePooling1D", "global_average_pooling2d": "GlobalAveragePooling2D",
    "global_max_pooling1d": "GlobalMaxPooling1D", "global_max_pooling2d": "GlobalMaxPooling2D",
    "flatten": "Flatten", "reshape": "Reshape", "dropout": "Dropout",
    "batch_normalization": "BatchNormalization", "activation": "Activation", "relu": "ReLU",
}
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop", "adamw": "AdamW", "nadam": "Nadam",
              "adagrad": "Adagrad"}


def import_tensorflow():
    """Import TensorFlow with Keras 2 (tf_keras), as tfmot requires. Call inside actions only.

    Returns (tf, keras). Sets the environment before the first TensorFlow import; quiet logs;
    deterministic ops.
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf
    import tf_keras as keras

    _detach_absl_from_captured_stderr()
    return tf, keras


def _detach_absl_from_captured_stderr() -> None:
    """absl's log handler keeps the sys.stderr of its first use, which under doit is a capture
    object without close(); point it at the real stderr so interpreter exit stays quiet."""
    import sys

    try:
        from absl import logging as absl_logging

        handler = absl_logging.get_absl_handler().python_handler
        if handler.stream is not sys.__stderr__:
            handler.stream = sys.__stderr__
    except Exception:  # absl internals moved: cosmetic only
        pass


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and TensorFlow and make TF ops deterministic (same inputs -> same bytes)."""
    tf, keras = import_tensorflow()
    keras.utils.set_random_seed(int(seed))
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover - older TF
        pass


def normalise_keras_zip(data: bytes) -> bytes:
    """Make a .keras zip byte-deterministic: fixed entry dates and modes, `date_saved` blanked, sorted entries.

    Keras writes the save time into metadata.json and the zip headers; without this, retraining
    with identical inputs would change the file's md5 and rebuild everything downstream.
    """
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as zin:
        entries = [(i.filename, zin.read(i.filename)) for i in zin.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for name, blob in sorted(entries):
            if name == "metadata.json":
                meta = json.loads(blob)
                meta["date_saved"] = ""
                blob = json.dumps(meta, sort_keys=True).encode()
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zout.writestr(info, blob)
    return buf.getvalue()


def build_model(input_shape, layers):
    """A tf_keras Sequential model from the tinyml.toml layer list (models and distillation students)."""
    _, keras = import_tensorflow()
    model = keras.Sequential(name="model")
    model.add(keras.layers.Input(shape=tuple(input_shape)))
    for i, spec in enumerate(layers):
        spec = dict(spec)
        cls = getattr(keras.layers, KERAS_LAYER[spec.pop("type")])
        for k in ("kernel_size", "strides", "pool_size", "target_shape"):
            if isinstance(spec.get(k), list):
                spec[k] = tuple(spec[k])
        try:
            model.add(cls(**spec))
        except (ValueError, TypeError) as e:
            raise TinyMLError(f"layer {i} ({cls.__name__}) cannot be built on input "
                              f"{tuple(model.output_shape[1:])}: {e}") from None
    return model


def make_optimizer(name: str, learning_rate: float):
    _, keras = import_tensorflow()
    return getattr(keras.optimizers, OPTIMIZERS[name])(learning_rate=learning_rate)


def _custom_objects() -> dict:
    """Objects a saved QAT model may reference beyond tfmot's quantize_scope (Conv1D's QuantizeConfig)."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as reg)

    return {"Default8BitQuantizeConfig": reg.Default8BitQuantizeConfig}


def load_model(path):
    """Load any model a stage writes: plain .keras zips and QAT models (HDF5 bytes under a .keras name).

    Plain models load without tfmot; a model with quantization wrappers loads inside tfmot's
    quantize_scope. A file that is not a model is a TinyMLError naming it.
    """
    _, keras = import_tensorflow()
    path = Path(path)
    if not path.is_file():
        raise TinyMLError(f"{path}: model file not found; run the stage that writes it first")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as first:
        try:
            import tensorflow_model_optimization as tfmot

            with tfmot.quantization.keras.quantize_scope(_custom_objects()):
                return keras.models.load_model(path, compile=False)
        except Exception:
            raise TinyMLError(f"{path}: cannot be loaded as a Keras model ({type(first).__name__}: "
                              f"{str(first).strip().splitlines()[0] if str(first).strip() else first}); "
                              "delete it and run `doit` again") from None


def is_quantized(model) -> bool:
    return any(type(l).__name__ in ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer") for l in model.layers)


def save_model(model, target) -> str:
    """Save deterministically and atomically, without optimizer state. Returns "keras" (zip) or "h5".

    tfmot's quantize wrappers do not reload from Keras 2's zip format (QuantizeLayer variables are
    re-created under other names), so a QAT model is written as HDF5 bytes; `load_model` reads both.
    """
    _, keras = import_tensorflow()
    target = Path(target)
    if is_quantized(model):
        with atomic_path(target, suffix=".h5") as tmp:
            model.save(tmp, save_format="h5", include_optimizer=False)
        return "h5"
    clean = keras.models.clone_model(model)  # uncompiled copy: no optimizer state in the file
    clean.set_weights(model.get_weights())
    with atomic_path(target, suffix=".keras") as tmp:
        clean.save(tmp)
        tmp.write_bytes(normalise_keras_zip(tmp.read_bytes()))
    return "keras"


def weights_sizes(model) -> dict:
    """The literature's 'Keras model size': the weights alone as HDF5 (`save_weights`), and gzipped.

    Unlike the .keras file it holds no optimizer state and no graph, so it does not change with the
    optimizer, the input scaling or the save format: {"weights_h5_bytes", "weights_h5_gzip_bytes"}.
    """
    import gzip
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tinyml-weights-") as d:
        p = Path(d) / "weights.h5"
        model.save_weights(str(p))
        data = p.read_bytes()
    return {"weights_h5_bytes": len(data), "weights_h5_gzip_bytes": len(gzip.compress(data, compresslevel=9, mtime=0))}
