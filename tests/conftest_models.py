"""Tiny real .tflite models for the analysis, arena and header tests.

Every model here is built by the real TensorFlow Lite converter (no hand-written flatbuffers).
Building costs a TensorFlow import plus about a second per model, so the files are cached on
disk under the system temp folder, keyed by the sha256 of this source file and the installed
TensorFlow version: change a builder or upgrade TensorFlow and every model is rebuilt.

Use `model_path(name)` from a session-scoped fixture; names are in `BUILDERS`.
"""
from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from importlib import metadata
from pathlib import Path

N_FEATURES_SMALL = 8
N_FEATURES_BIG = 64  # dynamic-range quantisation only touches weights with >= 1024 elements


def _dense_small(keras):
    inp = keras.Input(shape=(N_FEATURES_SMALL,), name="x")
    h = keras.layers.Dense(16, activation="relu", name="d1", bias_initializer=keras.initializers.RandomNormal(seed=1))(inp)
    out = keras.layers.Dense(4, activation="softmax", name="d2", bias_initializer=keras.initializers.RandomNormal(seed=1))(h)
    return keras.Model(inp, out)


def _dense_big(keras):
    inp = keras.Input(shape=(N_FEATURES_BIG,), name="x")
    h = keras.layers.Dense(32, activation="relu", name="d1", bias_initializer=keras.initializers.RandomNormal(seed=1))(inp)
    out = keras.layers.Dense(4, name="d2", bias_initializer=keras.initializers.RandomNormal(seed=1))(h)
    return keras.Model(inp, out)


def _conv(keras):
    inp = keras.Input(shape=(8, 8, 1), name="img")
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    h = keras.layers.DepthwiseConv2D(3, activation="relu", name="dw")(h)
    h = keras.layers.MaxPooling2D(2, name="pool")(h)
    h = keras.layers.Flatten(name="flat")(h)
    out = keras.layers.Dense(3, activation="softmax", name="head", bias_initializer=keras.initializers.RandomNormal(seed=1))(h)
    return keras.Model(inp, out)


def _tile(keras, tf):
    # TILE is a TFLite builtin that TFLite Micro has no kernel for.
    inp = keras.Input(shape=(4,), name="x")
    h = keras.layers.Dense(4, name="d1", bias_initializer=keras.initializers.RandomNormal(seed=1))(inp)
    h = keras.layers.Lambda(lambda t: tf.tile(t, [1, 2]), name="tile")(h)
    out = keras.layers.Dense(2, name="d2", bias_initializer=keras.initializers.RandomNormal(seed=1))(h)
    return keras.Model(inp, out)


def _while(keras, tf):
    # a WHILE loop: three subgraphs (main, cond, body); TFLM has WHILE/LESS/ADD/MUL kernels
    inp = keras.Input(shape=(4,), name="x")
    h = keras.layers.Dense(4, name="d1", bias_initializer=keras.initializers.RandomNormal(seed=1))(inp)
    h = keras.layers.Lambda(lambda t: tf.while_loop(lambda i, x: i < 3, lambda i, x: (i + 1, x * 2.0),
                                                    [tf.constant(0), t])[1], name="loop")(h)
    return keras.Model(inp, h)


def _mixed(keras, tf):
    # SIN has no int8 kernel: post-training quantisation (float fallback allowed) leaves it in float
    inp = keras.Input(shape=(N_FEATURES_SMALL,), name="x")
    h = keras.layers.Dense(8, name="d1", bias_initializer=keras.initializers.RandomNormal(seed=1))(inp)
    h = keras.layers.Lambda(lambda t: tf.math.sin(t), name="sin")(h)
    out = keras.layers.Dense(2, name="d2", bias_initializer=keras.initializers.RandomNormal(seed=1))(h)
    return keras.Model(inp, out)


def _flex(keras, tf):
    # cumprod has no TFLite builtin: SELECT_TF_OPS keeps it as the custom op FlexCumprod
    inp = keras.Input(shape=(4,), name="x")
    h = keras.layers.Dense(4, name="d1", bias_initializer=keras.initializers.RandomNormal(seed=1))(inp)
    out = keras.layers.Lambda(lambda t: tf.math.cumprod(t, axis=1), name="cumprod")(h)
    return keras.Model(inp, out)


def _rep(shape, n=32):
    import numpy as np

    rng = np.random.default_rng(0)

    def gen():
        for _ in range(n):
            yield [rng.normal(size=(1, *shape)).astype("float32")]

    return gen


def _convert(tf, model, *, quant: str, io: str = "float32", rep_shape=None) -> bytes:
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quant == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _rep(rep_shape)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io in ("int8", "uint8"):
            conv.inference_input_type = getattr(tf, io)
            conv.inference_output_type = getattr(tf, io)
    elif quant == "int8_fallback":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _rep(rep_shape)
    elif quant == "select_tf_ops":
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    elif quant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quant == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    return conv.convert()


def _build(name: str) -> bytes:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from doit_tinyml.engine.keras_io import import_tensorflow, seed_everything

    tf, keras = import_tensorflow()
    seed_everything(0)
    if name == "float32":
        return _convert(tf, _dense_small(keras), quant="none")
    if name == "int8":
        return _convert(tf, _dense_small(keras), quant="int8", io="int8", rep_shape=(N_FEATURES_SMALL,))
    if name == "int8_floatio":
        return _convert(tf, _dense_small(keras), quant="int8", io="float32", rep_shape=(N_FEATURES_SMALL,))
    if name == "hybrid":
        return _convert(tf, _dense_big(keras), quant="dynamic")
    if name == "float16":
        return _convert(tf, _dense_big(keras), quant="float16")
    if name == "conv_int8":
        return _convert(tf, _conv(keras), quant="int8", io="int8", rep_shape=(8, 8, 1))
    if name == "conv_float32":
        return _convert(tf, _conv(keras), quant="none")
    if name == "uint8io":
        return _convert(tf, _dense_small(keras), quant="int8", io="uint8", rep_shape=(N_FEATURES_SMALL,))
    if name == "while":
        return _convert(tf, _while(keras, tf), quant="none")
    if name == "mixed":
        return _convert(tf, _mixed(keras, tf), quant="int8_fallback", rep_shape=(N_FEATURES_SMALL,))
    if name == "flex":
        return _convert(tf, _flex(keras, tf), quant="select_tf_ops")
    if name == "tile":
        return _convert(tf, _tile(keras, tf), quant="none")
    raise KeyError(name)


BUILDERS = ("float32", "int8", "int8_floatio", "hybrid", "float16", "conv_int8", "conv_float32", "tile",
            "uint8io", "while", "mixed", "flex")


@functools.lru_cache(maxsize=None)
def cache_dir() -> Path:
    src = Path(__file__).read_bytes()
    key = hashlib.sha256(src + metadata.version("tensorflow").encode()).hexdigest()[:16]
    d = Path(tempfile.gettempdir()) / f"doit-tinyml-test-models-{os.getuid()}" / key
    d.mkdir(parents=True, exist_ok=True)
    return d


@functools.lru_cache(maxsize=None)
def model_path(name: str) -> Path:
    """Path of the cached .tflite for `name`, building it with TensorFlow on first use."""
    if name not in BUILDERS:
        raise KeyError(f"unknown test model {name!r}; known: {BUILDERS}")
    path = cache_dir() / f"{name}.tflite"
    if not path.exists():
        data = _build(name)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path
