"""Structured sparsity removal (`method = "remove"`) and the MAC counter the compress stage records.

Rank each hidden Dense layer's units / Conv layer's filters by the L1 (or L2) norm of their weights,
remove the least important `fraction` for real, rebuild a smaller model layer by layer (downstream
input dimensions shrink with them), carry the surviving weights over and fine-tune. Unlike pruning,
which leaves zeros in a same-size kernel, the model really gets fewer parameters and fewer MACs.

No TensorFlow or numpy at import time.
"""
from __future__ import annotations

import math

from ..errors import TinyMLError
from ..keras_io import import_tensorflow

# layers whose output channel c depends only on input channel c (they pass channel selections through)
_CHANNELWISE = {
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "ZeroPadding1D", "ZeroPadding2D",
    "Cropping1D", "Cropping2D", "UpSampling1D", "UpSampling2D", "ActivityRegularization",
}
_REDUCIBLE = ("Dense", "Conv1D", "Conv2D")


def _inner(layer):
    # QuantizeWrapper / pruning / clustering wrappers keep the real layer in `.layer`
    while hasattr(layer, "layer") and type(layer).__name__.endswith(("Wrapper", "WrapperV2", "Weights",
                                                                     "LowMagnitude")):
        layer = layer.layer
    return layer


def count_params(model) -> int:
    """The model's own parameters: quantization wrappers' ranges and step counters are not counted."""
    import re

    aux = re.compile(r"(_min|_max|optimizer_step)$")
    total = 0
    for layer in model.layers:
        if type(layer).__name__ == "QuantizeLayer":
            continue
        for w in layer.weights:
            if not aux.search(w.name.split("/")[-1].split(":")[0]):
                total += math.prod(w.shape)
    return int(total)


def count_macs(model) -> int:
    """Multiply-accumulates of one inference: Dense, Conv1D/2D, DepthwiseConv2D, SeparableConv (others 0)."""
    total = 0
    for outer in model.layers:
        layer = _inner(outer)
        name = type(layer).__name__
        try:
            out_shape = outer.output_shape
            in_shape = outer.input_shape
        except (AttributeError, RuntimeError):
            continue
        if isinstance(out_shape, list) or isinstance(in_shape, list):
            continue
        out_pos = math.prod(d for d in out_shape[1:-1] if d) if len(out_shape) > 2 else 1
        cin = in_shape[-1] or 0
        if name == "Dense":
            total += out_pos * cin * layer.units
        elif name in ("Conv1D", "Conv2D"):
            k = math.prod(layer.kernel_size)
            total += out_pos * k * (cin // max(1, layer.groups)) * layer.filters
        elif name == "DepthwiseConv2D":
            total += out_pos * math.prod(layer.kernel_size) * cin * layer.depth_multiplier
        elif name in ("SeparableConv1D", "SeparableConv2D"):
            k = math.prod(layer.kernel_size)
            total += out_pos * (k * cin * layer.depth_multiplier + cin * layer.depth_multiplier * layer.filters)
    return int(total)


def _chain(model, ctx):
    """The model's layers as one chain (Sequential, or a functional model without branches)."""
    _, keras = import_tensorflow()
    layers = [l for l in model.layers if type(l).__name__ != "InputLayer"]
    if not isinstance(model, keras.Sequential):
        prev = model.inputs[0] if len(model.inputs) == 1 else None
        for l in layers:
            if len(l.inbound_nodes) != 1 or prev is None or l.input is not prev:
                raise TinyMLError(f"{ctx.label} (remove): the model is not a single chain of layers (layer "
                                  f"{l.name!r} has branches or several inputs); structured removal supports "
                                  f"Sequential-like models only")
            prev = l.output
    return layers


def _norms(kernel, norm: str):
    import numpy as np

    flat = kernel.reshape(-1, kernel.shape[-1])
    return np.abs(flat).sum(axis=0) if norm == "l1" else np.sqrt((flat ** 2).sum(axis=0))


def apply(model, step: dict, ctx):
    """Remove `fraction` of each hidden Dense/Conv layer's units, rebuild, fine-tune. Returns (model, record)."""
    import numpy as np

    _, keras = import_tensorflow()
    layers = _chain(model, ctx)
    weighted = [i for i, l in enumerate(layers) if type(l).__name__ in _REDUCIBLE]
    if len(weighted) < 2:
        raise TinyMLError(f"{ctx.label} (remove): the model has no hidden Dense/Conv1D/Conv2D layer to shrink "
                          f"(the last one must keep its outputs); drop the remove step")
    last = weighted[-1]
    keep_in = None  # indices of surviving channels feeding the current layer (None: all)
    new_layers, new_weights, shrunk = [], [], []
    for i, layer in enumerate(layers):
        name = type(layer).__name__
        cfg = layer.get_config()
        w = layer.get_weights()
        if name in _REDUCIBLE:
            if cfg.get("data_format", "channels_last") != "channels_last":
                raise ctx.layer_error("remove", layer, "uses data_format channels_first",
                                      "use channels_last layers (the TFLite layout)")
            if name != "Dense" and cfg.get("groups", 1) != 1:
                raise ctx.layer_error("remove", layer, "is a grouped convolution", "drop the remove step")
            kernel = w[0]
            if keep_in is not None:
                kernel = kernel[..., keep_in, :] if kernel.ndim > 2 else kernel[keep_in, :]
            rest = w[1:]
            if i != last:
                n = kernel.shape[-1]
                n_keep = max(1, n - int(math.floor(step["fraction"] * n)))
                order = np.argsort(-_norms(kernel, step["norm"]), kind="stable")
                keep = sorted(int(j) for j in order[:n_keep])
                kernel = kernel[..., keep]
                rest = [b[keep] for b in rest]
                key = "units" if name == "Dense" else "filters"
                shrunk.append({"layer": layer.name, "class": name, key + "_before": n, key + "_after": n_keep})
                cfg[key] = n_keep
                keep_in = keep
            else:
                keep_in = None
            w = [kernel] + rest
        elif name == "BatchNormalization":
            axis = cfg.get("axis", -1)
            axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
            if keep_in is not None:
                if axis not in (-1, len(layer.input_shape) - 1):
                    raise ctx.layer_error("remove", layer, f"normalises axis {axis}, not the channels",
                                          "use axis = -1")
                w = [v[keep_in] for v in w]
        elif name == "DepthwiseConv2D":
            if keep_in is not None:
                mult = cfg.get("depth_multiplier", 1)
                w = [w[0][:, :, keep_in, :]] + ([w[1].reshape(-1, mult)[keep_in].reshape(-1)] if len(w) > 1 else [])
                keep_in = [c * mult + j for c in keep_in for j in range(mult)]
        elif name == "Flatten":
            if keep_in is not None:
                shape = layer.input_shape
                if cfg.get("data_format", "channels_last") == "channels_first":
                    raise ctx.layer_error("remove", layer, "uses data_format channels_first", "use channels_last")
                channels = shape[-1]
                positions = math.prod(shape[1:-1])
                keep_in = [p * channels + c for p in range(positions) for c in keep_in]
        elif name in _CHANNELWISE or (not w and keep_in is None):
            pass
        else:
            raise ctx.layer_error("remove", layer, "sits between shrunk layers and its channel layout is unknown "
                                                   "to structured removal",
                                  "use Dense/Conv1D/Conv2D/pooling/BatchNormalization/Flatten layers, "
                                  "or drop the remove step")
        new_layers.append(type(layer).from_config(cfg))
        new_weights.append(w)
    small = keras.Sequential([keras.Input(shape=model.input_shape[1:])] + new_layers, name=model.name)
    for layer, w in zip(new_layers, new_weights):
        layer.set_weights(w)
    ctx.fit(small, step)
    return small, {"norm": step["norm"], "fraction": step["fraction"], "layers": shrunk}
