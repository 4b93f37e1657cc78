"""TFLite's affine quantization of a model's input and output: the one place for it.

real = (q - zero_point) * scale;  q = clip(round(real / scale + zero_point)).
"""
from __future__ import annotations


def qparams(details: dict) -> tuple[float, int]:
    qp = details.get("quantization_parameters") or {}
    scales, zps = qp.get("scales"), qp.get("zero_points")
    if scales is not None and len(scales):
        return float(scales[0]), int(zps[0]) if zps is not None and len(zps) else 0
    q = details.get("quantization") or (0.0, 0)
    return float(q[0]), int(q[1])


def quantize(x, dtype, scale: float, zp: int):
    """Float inputs -> a model's input dtype (TFLite's q = clip(round(x / scale + zp))). The one place for it."""
    import numpy as np

    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return x.astype(dtype)
    if scale == 0.0:  # integer input that is not quantised (ids, indices)
        return np.round(x).astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)


def dequantize(y, scale: float, zp: int):
    """A model's output tensor -> float32, (q - zp) * scale for quantised outputs."""
    import numpy as np

    if y.dtype.kind == "f":
        return y.astype(np.float32)
    if scale == 0.0:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - zp) * scale).astype(np.float32)
