"""How far an operator's output may overlap its input: the `lag` of tasks.aot.plan.Overlap.

The kernels write their outputs in a known order and never read an input byte again once later
outputs depend only on later input bytes. If the output buffer starts at O and the input at I,
every write must land below the lowest input byte that is still to be read:

    O + (bytes written so far) <= I + (lowest input offset read from now on)   at every write,

so O <= I - lag with lag = max over writes of (written - lowest future read). Each function below
replays its kernel's loop order (tinyml_kernels*.c) at pixel or element granularity, vectorized
with numpy, and returns that lag in bytes (negative: the output may even start after the input).
`None` means the operator may not overlap that input at all.
"""
from __future__ import annotations

import math

_INF = float("inf")


def _window_min_pixel(batches, in_h, in_w, out_h, out_w, k_h, k_w, s_h, s_w, p_h, p_w):
    """Per output pixel (row-major, batches stacked): the index of the lowest input pixel its window
    reads (the clipped window's top-left), or inf if the window is all padding."""
    import numpy as np

    oy = np.arange(out_h)
    ox = np.arange(out_w)
    iy = oy * s_h - p_h
    ix = ox * s_w - p_w
    y0 = np.maximum(iy, 0)
    x0 = np.maximum(ix, 0)
    oky = (iy + k_h > 0) & (iy < in_h)
    okx = (ix + k_w > 0) & (ix < in_w)
    base = (y0[:, None] * in_w + x0[None, :]).astype(np.float64)
    base[~(oky[:, None] & okx[None, :])] = _INF
    per = base.reshape(-1)
    return np.concatenate([per + b * in_h * in_w for b in range(batches)])


def _suffix_min(a):
    import numpy as np

    return np.minimum.accumulate(a[::-1])[::-1]


def _lag_from(write_end, future_read):
    import numpy as np

    d = np.asarray(write_end, dtype=np.float64) - np.asarray(future_read, dtype=np.float64)
    d = d[np.isfinite(d)]
    return int(math.ceil(d.max())) if d.size else None


def channelwise(batches, in_h, in_w, out_h, out_w, k_h, k_w, s_h, s_w, p_h, p_w, channel_bytes):
    """Depthwise (multiplier 1) and pooling: per output pixel, channel after channel (or 4 at a
    time), each channel reading only its own channel of the window, then writing it. Lag =
    max over pixels of (p - first input pixel of p's window) * channel bytes."""
    import numpy as np

    q = _window_min_pixel(batches, in_h, in_w, out_h, out_w, k_h, k_w, s_h, s_w, p_h, p_w)
    suf = np.append(_suffix_min(q), _INF)  # lowest input pixel read by pixels >= i
    p = np.arange(len(q), dtype=np.float64)
    after = _lag_from((p + 1) * channel_bytes, suf[1:] * channel_bytes)
    within = _lag_from(p * channel_bytes, q * channel_bytes)
    vals = [v for v in (after, within) if v is not None]
    return max(vals) if vals else -(in_h * in_w * batches * channel_bytes)


def gemm(batches, in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w, s_h, s_w, p_h, p_w):
    """tml_gemm_s8: DSP path in blocks of 2 pixels (both columns copied to scratch before any write),
    single pixels otherwise; a 1x1 unpadded column is read in place once per channel group, so its
    own pixel's input stays live while its outputs are written."""
    import numpy as np

    q = _window_min_pixel(batches, in_h, in_w, out_h, out_w, k_h, k_w, s_h, s_w, p_h, p_w) * in_c
    n = len(q)
    npix = out_h * out_w
    direct = k_h == 1 and k_w == 1 and p_h == 0 and p_w == 0
    suf = np.append(_suffix_min(q), _INF)  # suf[i] = lowest read by pixels >= i
    terms = []
    p = np.arange(n)
    # single-pixel processing (portable path; DSP tail pixel and fully connected rows)
    terms.append(_lag_from((p + 1) * out_c, suf[p] if direct else suf[p + 1]))
    # DSP: pairs (2j, 2j+1) inside each batch
    if npix >= 2:
        local = p % npix
        pair_end = (local % 2 == 1)
        idx = p[pair_end]
        terms.append(_lag_from((idx + 1) * out_c, suf[idx + 1]))
    vals = [t for t in terms if t is not None]
    return max(vals) if vals else -(in_h * in_w * in_c * batches)


def rows(batches, in_h, in_w, out_h, out_w, k_h, s_h, p_h, in_pixel_bytes, out_pixel_bytes):
    """tml_dw_s8: output row oy is written after every input row it needs (up to oy*s_h - p_h +
    k_h - 1) was copied into the kernel's row buffers; nothing is read from the input after that."""
    lags = []
    for b in range(batches):
        for oy in range(out_h):
            last = min(oy * s_h - p_h + k_h - 1, in_h - 1)
            if last + 1 >= in_h and b == batches - 1:
                continue
            future = (b * in_h + last + 1) * in_w * in_pixel_bytes
            lags.append((b * out_h + oy + 1) * out_w * out_pixel_bytes - future)
    return max(lags) if lags else -(batches * in_h * in_w * in_pixel_bytes)


def elementwise(n: int, in_bytes: int, out_bytes: int) -> int:
    """Element i read, then element i written (requantize, quantize, dequantize, activations,
    same-shape ADD/MUL inputs, softmax's last pass)."""
    if n <= 0:
        return 0
    return n * (out_bytes - in_bytes) if out_bytes > in_bytes else out_bytes - in_bytes
