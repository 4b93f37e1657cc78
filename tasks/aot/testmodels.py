"""Tiny real models for the AOT tests and benchmark, built with the real TFLite converter.

Each builder trains for an epoch or two on small random or sklearn data and returns
(tflite_bytes, x_test float32). `build(name, dir)` writes `<name>.tflite` and `<name>.npz`
(x_test only, the shape dataset.npz has) and caches them on disk by builder source hash.
TensorFlow is imported only inside the builders.
"""
from __future__ import annotations

import hashlib
import inspect
from pathlib import Path


def _rep(x):
    def gen():
        for s in x[:64]:
            yield [s[None, ...].astype("float32")]
    return gen


def _convert(model, x_rep, *, int8: bool, int8_io: bool, per_channel: bool = True) -> bytes:
    from ..engine.keras_io import import_tensorflow

    tf, _ = import_tensorflow()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = _rep(x_rep)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if not per_channel:  # one scale per weight tensor (what TFLM trees before 2023 compute for Dense)
            conv._experimental_disable_per_channel = True
        if int8_io:
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    return conv.convert()


def _fit(model, x, y, loss, epochs=1):
    model.compile(optimizer="adam", loss=loss)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)


def sine_mlp(int8: bool = True):
    import numpy as np
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(1)
    x = np.random.default_rng(0).uniform(0, 2 * np.pi, size=(512, 1)).astype("float32")
    y = np.sin(x)
    m = keras.Sequential([keras.Input((1,)), keras.layers.Dense(16, activation="relu"),
                          keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    _fit(m, x, y, "mse", epochs=2)
    return _convert(m, x, int8=int8, int8_io=int8), x[:200]


def sine_mlp_float():
    return sine_mlp(int8=False)


def mlp_128():
    import numpy as np
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(2)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(512, 32)).astype("float32")
    y = (x[:, :4].sum(axis=1, keepdims=True) > 0).astype("float32")
    m = keras.Sequential([keras.Input((32,)), keras.layers.Dense(128, activation="relu"),
                          keras.layers.Dense(64, activation="relu"), keras.layers.Dense(32, activation="relu"),
                          keras.layers.Dense(1, activation="sigmoid")])
    _fit(m, x, y, "binary_crossentropy")
    return _convert(m, x, int8=True, int8_io=True), x[:200]


def conv1d_classifier():
    """Conv1D -> GlobalAveragePooling1D -> Dense softmax, float I/O (QUANTIZE/DEQUANTIZE inside)."""
    import numpy as np
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(3)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(384, 32, 3)).astype("float32")
    y = (np.abs(x[:, :, 0]).mean(axis=1) > 0.8).astype("int32") + (x[:, :, 1].mean(axis=1) > 0).astype("int32")
    m = keras.Sequential([keras.Input((32, 3)), keras.layers.Conv1D(8, 5, activation="relu"),
                          keras.layers.MaxPooling1D(2), keras.layers.Conv1D(8, 3, padding="same", activation="relu"),
                          keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(3, activation="softmax")])
    _fit(m, x, y, "sparse_categorical_crossentropy")
    return _convert(m, x, int8=True, int8_io=False), x[:150]


def cnn_digits():
    """Small 2D CNN on sklearn's 8x8 digits, int8 I/O."""
    import numpy as np
    from sklearn.datasets import load_digits
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(4)
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target.astype("int32")
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                          keras.layers.DepthwiseConv2D(3, activation="relu6"), keras.layers.AveragePooling2D(2),
                          keras.layers.Conv2D(12, 1, activation="relu"), keras.layers.Flatten(),
                          keras.layers.Dense(10, activation="softmax")])
    _fit(m, x[:1200], y[:1200], "sparse_categorical_crossentropy", epochs=2)
    return _convert(m, x, int8=True, int8_io=True), x[1200:1400]


def autoencoder(per_channel: bool = True):
    """Dense 32-8-32 autoencoder, int8 I/O (per_channel=False: per-tensor weight scales)."""
    import numpy as np
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(5)
    rng = np.random.default_rng(3)
    z = rng.normal(size=(512, 4)).astype("float32")
    x = np.tanh(z @ rng.normal(size=(4, 32)).astype("float32"))
    m = keras.Sequential([keras.Input((32,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(32, activation="tanh")])
    _fit(m, x, x, "mse")
    return _convert(m, x, int8=True, int8_io=True, per_channel=per_channel), x[:200]


def dynamic_shape():
    """A sequence model with a free time axis: shape_signature [-1, -1, 4]."""
    import numpy as np
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(8)
    m = keras.Sequential([keras.Input((None, 4)), keras.layers.Dense(3)])
    x = np.random.default_rng(0).normal(size=(16, 5, 4)).astype("float32")
    return _convert(m, x, int8=False, int8_io=False), x


def unsupported_tile():
    """A model with TILE, which the AOT compiler does not support."""
    import numpy as np
    from ..engine.keras_io import import_tensorflow, seed_everything

    tf, keras = import_tensorflow()
    seed_everything(6)
    inp = keras.Input((4,))
    h = keras.layers.Dense(4)(inp)
    h = keras.layers.Lambda(lambda t: tf.tile(t, [1, 2]))(h)
    m = keras.Model(inp, keras.layers.Dense(2)(h))
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    return _convert(m, x, int8=False, int8_io=False), x


def ops_zoo(int8: bool = True):
    """Every other supported op: PAD, ADD, MUL, CONCATENATION, standalone RELU/RELU6/LOGISTIC/TANH,
    MAX_POOL, MEAN (global average pool 2D), SQUEEZE-like reshapes."""
    import numpy as np
    from ..engine.keras_io import import_tensorflow, seed_everything

    tf, keras = import_tensorflow()
    seed_everything(7)
    L = keras.layers
    inp = keras.Input((8, 8, 2))
    a = L.ZeroPadding2D(1)(inp)
    a = L.Conv2D(4, 3)(a)
    b = L.Conv2D(4, 1, activation="relu")(inp)
    s = L.Add()([a, b])
    s = L.ReLU()(s)
    m = L.Multiply()([s, L.Activation("sigmoid")(b)])
    c = L.Concatenate()([m, L.Activation("tanh")(a)])
    c = L.ReLU(6.0)(c)
    c = L.MaxPooling2D(2, padding="same")(c)
    d = L.ZeroPadding2D(((1, 0), (0, 1)))(c)
    d = L.MaxPooling2D(2)(d)
    d = L.DepthwiseConv2D(2, padding="same", depth_multiplier=2)(d)
    d = L.ReLU()(L.Concatenate()([d, d]))
    d = L.AveragePooling2D(2, padding="same")(d)
    g = L.GlobalAveragePooling2D(keepdims=True)(c)            # MEAN keep_dims (TFLM's 4-D case)
    g = L.Lambda(lambda t: tf.squeeze(t, axis=[1, 2]))(g)
    g = L.Concatenate()([g, L.Flatten()(d)])
    out = L.Dense(5, activation="softmax")(g)
    model = keras.Model(inp, out)
    x = np.random.default_rng(5).normal(size=(256, 8, 8, 2)).astype("float32")
    y = np.random.default_rng(6).integers(0, 5, size=256)
    _fit(model, x, y, "sparse_categorical_crossentropy")
    return _convert(model, x, int8=int8, int8_io=False), x[:100]


def ops_zoo_float():
    return ops_zoo(int8=False)


def fc_float_odd():
    """float32 MLP with sizes that exercise every part of the FPU dot-product kernels: 37 inputs
    (4 blocks of 8 + 5), 21 neurons (5 groups of 4 + 1; 21 = 16 + 5 for the single-row kernel),
    7 and 1 neurons, a ReLU and a linear layer."""
    import numpy as np
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(41)
    L = keras.layers
    x = np.random.default_rng(41).normal(size=(256, 37)).astype("float32")
    m = keras.Sequential([keras.Input((37,)), L.Dense(21, activation="relu"), L.Dense(7), L.Dense(1)])
    _fit(m, x, np.tanh(x[:, :3].sum(axis=1, keepdims=True)), "mse")
    return _convert(m, x, int8=False, int8_io=False), x[:16]


def dw_odd_int8():
    """int8 depthwise 3x3 layers on shapes that exercise every path of the tap-pair DSP kernel:
    6 channels (one partial group of 4), stride 1 and 2, SAME and VALID, odd and even output
    widths down to 1, ReLU, ReLU6 and none."""
    import numpy as np
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(43)
    L = keras.layers
    x = np.random.default_rng(43).normal(size=(128, 9, 11, 6)).astype("float32")
    inp = keras.Input((9, 11, 6))
    h = L.DepthwiseConv2D(3, padding="same", activation="relu")(inp)          # 9 x 11, stride 1
    h = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6")(h)  # 5 x 6, stride 2
    h = L.DepthwiseConv2D(3, padding="same")(h)                               # 5 x 6
    h = L.DepthwiseConv2D(3, strides=2, padding="valid", activation="relu")(h)  # 2 x 2
    h = L.DepthwiseConv2D((2, 3), padding="same")(h)                          # 2 x 2, not 3x3
    h = L.DepthwiseConv2D(3, padding="valid")(L.ZeroPadding2D(((1, 1), (1, 0)))(h))  # 2 x 1: a single output
    out = L.Dense(3)(L.Flatten()(h))
    m = keras.Model(inp, out)
    _fit(m, x, x[:, :3, 0, 0], "mse")
    return _convert(m, x, int8=True, int8_io=True), x[:16]


def gemm_odd_int8():
    """int8 convolutions on shapes that exercise every path of the DSP matrix-product kernel: K/4 =
    7, 2, 5 and 8 (the 4-step loop entered at each of its steps), odd channel counts (the lone last
    channel), an odd pixel count (the last pixel paired with itself), activation clamps narrower
    than int8 (ReLU / ReLU6 outputs sharing their scale with a linear branch through
    CONCATENATION), a convolution with a 1x1 output, and max pools over 8 channels (4 per word on a
    DSP core) and over 6 (the portable loop)."""
    import numpy as np
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(47)
    L = keras.layers
    x = np.random.default_rng(47).normal(size=(128, 9, 7, 3)).astype("float32")
    inp = keras.Input((9, 7, 3))
    a = L.Conv2D(5, 3, padding="same", activation="relu")(inp)   # K = 27 (K/4 = 7), 5 channels, 63 pixels
    b = L.Conv2D(3, 3, padding="same")(inp)
    c = L.Concatenate()([a, b])                                  # a's ReLU bound inside int8
    d = L.Conv2D(7, 1, activation="relu6")(c)                    # K = 8 (K/4 = 2), 7 channels
    e = L.Conv2D(11, 1, kernel_initializer=keras.initializers.RandomNormal(stddev=5.0), trainable=False)(c)
    f = L.Concatenate()([d, e])                                  # 18 channels; e beyond +-6: d's bounds inside int8
    g = L.Conv2D(8, 1, activation="relu")(f)                     # K = 18 (K/4 = 5)
    h = L.MaxPooling2D(2)(g)                                     # 8 channels: 4 per word; 4 x 3
    i = L.Conv2D(6, 2, activation="relu")(h)                     # K = 32 (K/4 = 8); 3 x 2
    j = L.MaxPooling2D((1, 2), padding="same")(i)                # 6 channels; 3 x 1
    k = L.Conv2D(4, (3, 1))(j)                                   # a 1x1 output
    out = L.Dense(3)(L.Flatten()(k))
    m = keras.Model(inp, out)
    _fit(m, x, x[:, :3, 0, 0], "mse")
    return _convert(m, x, int8=True, int8_io=True), x[:16]


def random_model(seed: int):
    """A small random architecture (the issue's "randomly generated models"): a CNN on a small
    image (conv / depthwise / pooling / residual ADD / concatenation, then a dense head) or an MLP,
    converted as int8 with int8 I/O, int8 with float I/O, or float32; briefly fitted on random data
    so the activations have realistic ranges. Deterministic in `seed`."""
    import numpy as np
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(1000 + seed)
    rng = np.random.default_rng(seed)
    L = keras.layers
    acts = [None, "relu", "relu6"]
    if rng.random() < 0.65:
        h, w = int(rng.integers(6, 17)), int(rng.integers(6, 17))
        c = int(rng.integers(1, 5))
        inp = keras.Input((h, w, c))
        x = inp
        for _ in range(int(rng.integers(1, 5))):
            kind = rng.choice(["conv", "conv", "dw", "pool", "res", "cat"])
            hh, ww = x.shape[1], x.shape[2]
            if kind == "conv" or hh < 3 or ww < 3:
                k = int(rng.choice([1, 3, 5])) if min(hh, ww) >= 5 else 1
                s_ = int(rng.choice([1, 1, 2])) if min(hh, ww) >= 4 else 1
                x = L.Conv2D(int(rng.choice([2, 4, 6, 8, 12, 16])), k, strides=s_,
                             padding=str(rng.choice(["same", "valid"])) if k > 1 else "same",
                             activation=acts[int(rng.integers(3))])(x)
            elif kind == "dw":
                x = L.DepthwiseConv2D(3, strides=int(rng.choice([1, 2])), padding=str(rng.choice(["same", "valid"])),
                                      activation=acts[int(rng.integers(3))])(x)
            elif kind == "pool":
                x = (L.MaxPooling2D if rng.random() < 0.5 else L.AveragePooling2D)(2, padding="same")(x)
            elif kind == "res":
                y = L.Conv2D(int(x.shape[-1]), 3, padding="same", activation="relu")(x)
                x = L.Add()([x, y])
            else:
                y = L.Conv2D(int(rng.choice([2, 4, 8])), 1, activation="relu")(x)
                x = L.Concatenate()([x, y])
        x = L.GlobalAveragePooling2D()(x) if rng.random() < 0.5 else L.Flatten()(x)
        out = L.Dense(int(rng.integers(2, 11)), activation="softmax" if rng.random() < 0.5 else None)(x)
        shape = (h, w, c)
    else:
        n = int(rng.integers(2, 65))
        inp = keras.Input((n,))
        x = inp
        for _ in range(int(rng.integers(1, 4))):
            x = L.Dense(int(rng.integers(2, 65)), activation=[None, "relu", "tanh", "sigmoid"][int(rng.integers(4))])(x)
        out = L.Dense(int(rng.integers(1, 11)))(x)
        shape = (n,)
    m = keras.Model(inp, out)
    xs = rng.normal(size=(128, *shape)).astype("float32")
    ys = rng.normal(size=(128, *out.shape[1:])).astype("float32")
    _fit(m, xs, ys, "mse")
    mode = rng.choice(["int8", "int8", "int8_float_io", "float"])
    tfl = _convert(m, xs, int8=mode != "float", int8_io=mode == "int8")
    return tfl, xs[:16]


# ------------------------------------------------------------------------------------------------
# benchmark models (bench/aot_speed.py): the MLPerf Tiny v1 reference architectures, the examples'
# architectures and the sine sweep, with random weights briefly fitted on random data (so the
# quantization ranges are realistic); int8 with int8 I/O unless said otherwise
# ------------------------------------------------------------------------------------------------

def _fit_random(model, shape, n=64, epochs=1, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape)).astype("float32")
    y = rng.normal(size=(n, *model.output_shape[1:])).astype("float32")
    _fit(model, x, y, "mse", epochs=epochs)
    return x


def mlperf_kws():
    """Keyword spotting DS-CNN (MLPerf Tiny KWS reference, 2.66 M MACs): 49x10x1 MFCCs, conv
    10x4/2 64, four depthwise-separable 3x3/64 blocks, average pool, dense 12 (batch norms fold)."""
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(11)
    L = keras.layers
    inp = keras.Input((49, 10, 1))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(64, (10, 4), strides=2, padding="same")(inp)))
    for _ in range(4):
        x = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(x)))
        x = L.ReLU()(L.BatchNormalization()(L.Conv2D(64, 1)(x)))
    x = L.Flatten()(L.AveragePooling2D((25, 5))(x))
    m = keras.Model(inp, L.Dense(12, activation="softmax")(x))
    x = _fit_random(m, (49, 10, 1))
    return _convert(m, x, int8=True, int8_io=True), x[:8]


def mlperf_resnet8():
    """Image classification ResNet-8 (MLPerf Tiny IC reference, 12.5 M MACs): 32x32x3, conv 3x3 16,
    three residual stacks (16, 32/2, 64/2 filters; 1x1/2 shortcut convolutions), average pool,
    dense 10."""
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(12)
    L = keras.layers

    def cbr(x, f, s=1, relu=True, k=3):
        x = L.BatchNormalization()(L.Conv2D(f, k, strides=s, padding="same")(x))
        return L.ReLU()(x) if relu else x

    inp = keras.Input((32, 32, 3))
    x = cbr(inp, 16)
    y = cbr(cbr(x, 16), 16, relu=False)
    x = L.ReLU()(L.Add()([x, y]))
    for f in (32, 64):
        y = cbr(cbr(x, f, 2), f, relu=False)
        x = L.ReLU()(L.Add()([L.Conv2D(f, 1, strides=2, padding="same")(x), y]))
    x = L.Flatten()(L.AveragePooling2D(8)(x))
    m = keras.Model(inp, L.Dense(10, activation="softmax")(x))
    x = _fit_random(m, (32, 32, 3))
    return _convert(m, x, int8=True, int8_io=True), x[:8]


def mlperf_vww():
    """Visual wake words MobileNetV1 alpha 0.25 (MLPerf Tiny VWW reference, 7.49 M MACs):
    96x96x3, conv 3x3/2 8, 13 depthwise-separable blocks, average pool, dense 2."""
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(13)
    L = keras.layers
    inp = keras.Input((96, 96, 3))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(8, 3, strides=2, padding="same")(inp)))
    for f, s in ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 1), (128, 1), (128, 1),
                 (128, 1), (256, 2), (256, 1)):
        x = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, strides=s, padding="same")(x)))
        x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(f, 1)(x)))
    x = L.Flatten()(L.AveragePooling2D(3)(x))
    m = keras.Model(inp, L.Dense(2, activation="softmax")(x))
    x = _fit_random(m, (96, 96, 3), n=32)
    return _convert(m, x, int8=True, int8_io=True), x[:4]


def mlperf_ad():
    """Anomaly detection FC autoencoder (MLPerf Tiny AD reference, 0.26 M MACs): 640 -> 4 x 128 ->
    8 -> 4 x 128 -> 640, batch norm and ReLU after every hidden layer."""
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(14)
    L = keras.layers
    inp = keras.Input((640,))
    x = inp
    for u in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = L.ReLU()(L.BatchNormalization()(L.Dense(u)(x)))
    m = keras.Model(inp, L.Dense(640)(x))
    x = _fit_random(m, (640,), n=128)
    return _convert(m, x, int8=True, int8_io=True), x[:16]


def example_cancer():
    """examples/cancer_mlp: 30 features -> 128 -> 64 -> 32 -> 1 sigmoid (int8, float I/O)."""
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(21)
    L = keras.layers
    m = keras.Sequential([keras.Input((30,)), L.Dense(128, activation="relu"), L.Dense(64, activation="relu"),
                          L.Dense(32, activation="relu"), L.Dense(1, activation="sigmoid")])
    x = _fit_random(m, (30,), n=128)
    return _convert(m, x, int8=True, int8_io=False), x[:32]


def example_digits():
    """examples/digits_cnn: 8x8x1 -> conv 3x3 8 -> max pool 2 -> conv 3x3 16 -> dense 10 softmax."""
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(22)
    L = keras.layers
    m = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, activation="relu"), L.MaxPooling2D(2),
                          L.Conv2D(16, 3, activation="relu"), L.Flatten(), L.Dense(10, activation="softmax")])
    x = _fit_random(m, (8, 8, 1), n=128)
    return _convert(m, x, int8=True, int8_io=False), x[:32]


def example_tap_window():
    """examples/tapping_anomaly tap_window: 75 -> 32 -> 8 -> 32 -> 75 autoencoder."""
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(23)
    L = keras.layers
    m = keras.Sequential([keras.Input((75,)), L.Dense(32, activation="relu"), L.Dense(8, activation="relu"),
                          L.Dense(32, activation="relu"), L.Dense(75)])
    x = _fit_random(m, (75,), n=128)
    return _convert(m, x, int8=True, int8_io=False), x[:32]


def example_waveforms():
    """examples/waveform_cnn: 64 samples -> conv1d 3 16 relu -> global average -> dense 3 softmax."""
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(24)
    L = keras.layers
    m = keras.Sequential([keras.Input((64, 1)), L.Conv1D(16, 3, activation="relu"), L.GlobalAveragePooling1D(),
                          L.Dense(3, activation="softmax")])
    x = _fit_random(m, (64, 1), n=128)
    return _convert(m, x, int8=True, int8_io=False), x[:32]


def sine_width(width: int, int8: bool):
    """examples/sine_sweep: 1 -> width -> width -> 1 (relu), int8 with int8 I/O or float32."""
    import numpy as np
    from ..engine.keras_io import import_tensorflow, seed_everything

    _, keras = import_tensorflow()
    seed_everything(30)
    L = keras.layers
    x = np.random.default_rng(0).uniform(0, 2 * np.pi, size=(256, 1)).astype("float32")
    m = keras.Sequential([keras.Input((1,)), L.Dense(width, activation="relu"), L.Dense(width, activation="relu"),
                          L.Dense(1)])
    _fit(m, x, np.sin(x), "mse")
    return _convert(m, x, int8=int8, int8_io=int8), x[:16]


SINE_WIDTHS = (16, 32, 64, 128, 256, 512, 768)
BENCH = {
    "mlperf_kws": mlperf_kws, "mlperf_resnet8": mlperf_resnet8, "mlperf_vww": mlperf_vww, "mlperf_ad": mlperf_ad,
    "ex_cancer": example_cancer, "ex_digits": example_digits, "ex_tap_window": example_tap_window,
    "ex_waveforms": example_waveforms,
    **{f"sine{w}_int8": (lambda w=w: sine_width(w, True)) for w in SINE_WIDTHS},
    **{f"sine{w}_float": (lambda w=w: sine_width(w, False)) for w in SINE_WIDTHS},
}


def build_random(seed: int, directory: Path) -> tuple[Path, Path]:
    """random_model(seed), cached on disk like build()."""
    import numpy as np

    from ..engine.io import write_bytes

    directory = Path(directory) / _key()
    directory.mkdir(parents=True, exist_ok=True)
    tfl, npz = directory / f"random{seed}.tflite", directory / f"random{seed}.npz"
    if not (tfl.exists() and npz.exists()):
        model, x = random_model(seed)
        tmp = directory / f".random{seed}.tmp.npz"
        np.savez(tmp, x_test=np.asarray(x, dtype=np.float32))
        tmp.replace(npz)
        write_bytes(tfl, model)
    return tfl, npz


BUILDERS = {
    "zoo_int8": ops_zoo,
    "zoo_float": ops_zoo_float,
    "sine_int8": sine_mlp,
    "sine_float": sine_mlp_float,
    "fc_float_odd": fc_float_odd,
    "dw_odd_int8": dw_odd_int8,
    "gemm_odd_int8": gemm_odd_int8,
    "mlp128_int8": mlp_128,
    "conv1d_int8": conv1d_classifier,
    "cnn_int8": cnn_digits,
    "autoenc_int8": autoencoder,
    "autoenc_int8_per_tensor": lambda: autoencoder(per_channel=False),
    "tile_float": unsupported_tile,
    "dynamic_float": dynamic_shape,
}


def _key() -> str:
    from importlib import metadata

    src = inspect.getsource(inspect.getmodule(_key))
    return hashlib.sha256((src + metadata.version("tensorflow")).encode()).hexdigest()[:16]


def build(name: str, directory: Path) -> tuple[Path, Path]:
    """Build (or reuse) model `name` in `directory`; return (tflite path, npz path with x_test)."""
    import numpy as np

    from ..engine.io import write_bytes

    directory = Path(directory) / _key()
    directory.mkdir(parents=True, exist_ok=True)
    tfl, npz = directory / f"{name}.tflite", directory / f"{name}.npz"
    if not (tfl.exists() and npz.exists()):
        model, x = {**BUILDERS, **BENCH}[name]()
        tmp = directory / f".{name}.tmp.npz"
        np.savez(tmp, x_test=np.asarray(x, dtype=np.float32))
        tmp.replace(npz)
        write_bytes(tfl, model)
    return tfl, npz
