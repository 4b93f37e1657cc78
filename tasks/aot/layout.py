"""Weight re-layout and requantization tables for the packed int8 kernels (tinyml_kernels_packed.c).

The generator knows every shape, so the inner loops get their operands in the order they consume
them:

* `pack_gemm(w)`: a [N, K] int8 matrix (fully connected weights, or OHWI convolution filters
  flattened to K = k_h*k_w*in_c) as output-channel pairs; per run of 4 reduction indices, 4 bytes
  of each channel of the pair. K is padded with zero weights to a multiple of 4. One 8-byte load
  feeds two channels x 4 products, and the same bytes serve the portable C loops.
* `pack_dw(w)`: depthwise filters as 4-channel groups of int16 lanes, each group's taps contiguous.
* `rq_records(...)`: TFLM's per-channel (multiplier, shift) as `tml_rq {mult, k, rsh}`, with the
  rounding constant and the output zero point folded into k for the 4-instruction requantization.
* `fast_requant_ok(...)`: whether that shortcut is exact for the op (bounds from the actual
  weights and bias, for every possible input).
* `gemm_scratch_bytes(...)`: the scratch buffer the kernel uses (widened im2col columns).
"""
from __future__ import annotations

ACC_LIMIT = 1 << 30  # 2 * |acc| must stay below 2^31 for SMMULR(2 * acc, mult)


def k4_of(k: int) -> int:
    return (int(k) + 3) // 4 * 4


def gemm_groups(n: int, wl: int) -> list[int]:
    """Output channel groups of the packed layout: groups of `wl` (4 or 2), then 2 and/or 1."""
    out = [wl] * (n // wl)
    r = n % wl
    if r >= 2:
        out.append(2)
    if r % 2:
        out.append(1)
    return out


def pack_gemm(w, wl: int = 2):
    """[N, K] int8 -> flat int8 array: output channels in groups of `wl` (4 for single-pixel ops:
    fully connected; 2 for convolutions), then a pair and/or a single channel; a group of g is k4/4
    steps of 4*g bytes (4 reduction indices of each of its channels in turn); K padded with zero
    weights to k4."""
    import numpy as np

    w = np.asarray(w, dtype=np.int8)
    n, k = w.shape
    k4 = k4_of(k)
    wp = np.zeros((n, k4), dtype=np.int8)
    wp[:, :k] = w
    parts, c = [], 0
    for g in gemm_groups(n, wl):
        parts.append(wp[c:c + g].reshape(g, k4 // 4, 4).transpose(1, 0, 2).reshape(-1))
        c += g
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int8)


def unpack_gemm(flat, n: int, k: int, wl: int = 2):
    """Inverse of pack_gemm (for tests)."""
    import numpy as np

    k4 = k4_of(k)
    flat = np.asarray(flat, dtype=np.int8)
    out = np.zeros((n, k4), dtype=np.int8)
    pos = c = 0
    for g in gemm_groups(n, wl):
        out[c:c + g] = flat[pos: pos + g * k4].reshape(k4 // 4, g, 4).transpose(1, 0, 2).reshape(g, k4)
        pos += g * k4
        c += g
    return out[:, :k]


def pack_dw(w, double: bool):
    """Depthwise filter [1, k_h, k_w, C] int8 -> int16 array: channels in groups of 4 (the last
    padded with zero weights), per group and tap the lanes (c0, c2, c1, c3) (what SXTB16 and
    SXTB16 ROR 8 make of 4 input bytes); doubled when `double` (the fast requantization's 2*acc)."""
    import numpy as np

    w = np.asarray(w, dtype=np.int64)
    taps = w.shape[1] * w.shape[2]
    c = w.shape[3]
    g = (c + 3) // 4
    m = np.zeros((taps, 4 * g), dtype=np.int64)
    m[:, :c] = w.reshape(taps, c)
    m = m.reshape(taps, g, 4)[:, :, [0, 2, 1, 3]].transpose(1, 0, 2)  # [g][tap][lane]
    return (m.reshape(-1) * (2 if double else 1)).astype(np.int16)


def dw_bias(w, bias, input_offset: int, double: bool):
    """bias + input_offset * sum over taps of w, per channel (int32 wrap), doubled when `double`."""
    import numpy as np

    c = w.shape[3]
    s = np.asarray(w, dtype=np.int64).reshape(-1, c).sum(axis=0)
    b = (np.zeros(c, np.int64) if bias is None else np.asarray(bias, np.int64).reshape(-1)) + input_offset * s
    if double:
        b = 2 * b
    return (b + 2 ** 31) % 2 ** 32 - 2 ** 31


def dw_pairs_ok(k_h: int, k_w: int, stride_w: int) -> bool:
    """Shapes the DSP kernel's tap-pair depthwise path (tml_dw3x3_s8_dsp) takes: 3x3, stride_w 1 or 2."""
    return k_h == 3 and k_w == 3 and stride_w in (1, 2)


def dw_scratch_bytes(channels: int, out_w: int, k_h: int, k_w: int, stride_w: int, pairs: bool = False) -> int:
    """k_h zero-point padded row buffers, group-major: k_h * ceil(C/4) * ((out_w-1)*stride_w + k_w) * 4;
    with `pairs` (dw_pairs_ok shapes) at least what the DSP kernel's tap-pair form needs: a
    10-word record per channel and 3 channel-major int16 rows of L = (pw + 4) & ~1
    (tml_dw3x3_s8_dsp). The generator grants `pairs` only where it does not grow the arena."""
    pw = (out_w - 1) * stride_w + k_w
    rows = k_h * ((channels + 3) // 4) * pw * 4
    if pairs and dw_pairs_ok(k_h, k_w, stride_w):
        rows = max(rows, 40 * channels + 3 * channels * ((pw + 4) & ~1) * 2)
    return rows


def max_abs_input(input_offset: int) -> int:
    """max |x + input_offset| over int8 x."""
    return max(abs(-128 + input_offset), abs(127 + input_offset))


def acc_bounds(weight_abs_sums, biases, input_offset: int):
    """Per channel: a bound on |bias + sum w * (x + offset)| over every int8 input."""
    m = max_abs_input(input_offset)
    return [(abs(int(biases[c])) if biases is not None else 0) + m * int(s) for c, s in enumerate(weight_abs_sums)]


def _mbqm(x: int, m: int, shift: int) -> int:
    """TFLM MultiplyByQuantizedMultiplier (double rounding), in Python integers."""
    left, right = max(shift, 0), max(-shift, 0)
    a = ((x << left) + 2 ** 31) % 2 ** 32 - 2 ** 31
    if a == m == -(2 ** 31):
        t = 2 ** 31 - 1
    else:
        q = a * m + ((1 << 30) if a * m >= 0 else 1 - (1 << 30))
        t = q >> 31 if q >= 0 else -((-q) >> 31)  # division by 2^31 truncating toward zero
    if right == 0:
        return t
    mask = (1 << right) - 1
    rem = t & mask
    thr = (mask >> 1) + (1 if t < 0 else 0)
    return (t >> right) + (1 if rem > thr else 0)


def constant_channels(weight_abs_sums, mults) -> list[bool]:
    """Channels whose output does not depend on the input: all weights zero (acc = bias) or a zero
    multiplier (a zero filter scale: TFLM outputs the zero point)."""
    return [int(s) == 0 or int(mults[c if len(mults) > 1 else 0]) == 0 for c, s in enumerate(weight_abs_sums)]


def fast_requant_ok(bounds, mults, shifts, zp: int, constant=None) -> bool:
    """The kernels' 4-instruction requantization (SMMLAR, see tinyml_kernels_packed.c) equals TFLM's
    MultiplyByQuantizedMultiplier + zero point for every input of every channel: shift <= -1,
    multiplier > 2^30 (so the sign of the rounded product is the sign of the accumulator),
    2 * |acc| < 2^31, and the folded rounding constant plus the product's high word fit int32.
    Constant channels (`constant`) are exempt: their record yields their one output value."""
    for c, b in enumerate(bounds):
        if constant is not None and constant[c]:
            continue
        m, s = int(mults[c if len(mults) > 1 else 0]), int(shifts[c if len(shifts) > 1 else 0])
        if s > -1 or m <= (1 << 30) or int(b) >= ACC_LIMIT:
            return False
        r = -s
        k = (1 << (r - 1)) + zp * (1 << r)
        if ((2 * int(b) * m) >> 32) + 2 + abs(k) >= (1 << 31):
            return False
    return True


def rq_records(mults, shifts, zp: int, fast: bool, constant_values=None) -> list[tuple[int, int, int]]:
    """tml_rq {mult, k, rsh}: fast {m, 2^(r-1) + zp*2^r, r = -shift}; exact {m, shift, 0}.
    A constant channel of a fast op (constant_values[c] = its output before clamping, else None)
    gets {0, 2*y + 1, 1}: SMMLAR with a zero multiplier returns k + sign, and (2y + 1 + sign) >> 1
    is y for either sign."""
    out = []
    for c, (m, s) in enumerate(zip(mults, shifts)):
        if fast and constant_values is not None and constant_values[c] is not None:
            out.append((0, 2 * int(constant_values[c]) + 1, 1))
        elif fast:
            r = -int(s)
            out.append((int(m), (1 << (r - 1)) + zp * (1 << r), r))
        else:
            out.append((int(m), int(s), 0))
    return out


def gemm_direct(k_h: int, k_w: int, pad_h: int, pad_w: int, in_c: int) -> bool:
    """Every im2col column is a contiguous input run the kernel widens in place."""
    return k_h == 1 and k_w == 1 and pad_h == 0 and pad_w == 0 and in_c % 4 == 0


FC_KC = 256  # tinyml_kernels_packed.c TML_FC_KC: input elements widened at a time by a single-pixel op
FC_CHUNK = 64  # tinyml_kernels_packed.c TML_CHUNK: output channels per accumulator chunk


def gemm_scratch_bytes(out_pixels: int, k: int, k_h: int, k_w: int, pad_h: int, pad_w: int, in_c: int) -> int:
    """Bytes of scratch tml_gemm_s8 uses: the widened columns (4*k4 for a pixel pair when there are
    at least 2 output pixels, else 2*min(k4, 256) for a chunk of the single pixel's input), then k4
    for one gathered int8 column unless the convolution is 1x1 without padding."""
    k4 = k4_of(k)
    cols = 4 * k4 if out_pixels >= 2 else 2 * min(k4, FC_KC)
    unit = k_h == 1 and k_w == 1 and pad_h == 0 and pad_w == 0
    return cols + (0 if unit else k4)
