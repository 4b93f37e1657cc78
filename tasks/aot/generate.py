"""Compile a .tflite flatbuffer to plain C99: weights in flash, one static arena, no interpreter.

`generate(tflite_path, out_dir, prefix)` writes `<prefix>_model.c` and `<prefix>_model.h`:

* every constant tensor an operator reads becomes a `static const` array (flash);
* every activation lives at a fixed offset of `static uint8_t <prefix>_arena[N]`, laid out by
  the offline plan in `tasks.aot.plan` (reshape-like ops alias their input, no copy);
* `int <prefix>_model_invoke(const void *input, void *output)` calls the kernels of
  `tasks/aot/kernels/tinyml_kernels.c` in graph order; the model input is read straight from
  `input` and the last operator writes straight into `output`;
* everything TFLM computes in Prepare (fixed-point multipliers and shifts, activation ranges,
  padding, softmax/logistic/tanh scaling) is computed here, with TFLM's exact formulas.

The flatbuffer is read with LiteRT's generated schema (no TensorFlow). Models the compiler cannot
handle (an operator outside `SUPPORTED_OPS`, several subgraphs, dynamic shapes, several inputs or
outputs) raise `TinyMLError` naming the reason: such a variant keeps the TFLM runtime.
"""
from __future__ import annotations

import math
import struct
from pathlib import Path

from ..engine.errors import TinyMLError
from ..engine.io import sha256_file, write_text

SUPPORTED_OPS = (
    "FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN",
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SOFTMAX", "LOGISTIC", "TANH", "RELU", "RELU6", "ADD",
    "MUL", "QUANTIZE", "DEQUANTIZE", "CONCATENATION", "PAD",
)
SHAPE_ONLY_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
_INPLACE_OPS = ("LOGISTIC", "TANH", "RELU", "RELU6", "QUANTIZE")  # kernels read in[i] before writing out[i]
_FUSED_ACT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "ADD", "MUL")

_KEEP_TFLM = 'keep runtime = "tflm" for this variant if TFLite Micro can run it, or change the model'
DW_PAIRS_RAM_SLACK = 0.005  # tap-pair scratch taken back may return for at most this arena growth (generate)

_CTYPE = {"float32": "float", "int32": "int32_t", "uint8": "uint8_t", "int64": "int64_t",
          "int16": "int16_t", "int8": "int8_t"}
_NPTYPE = {"float32": "<f4", "int32": "<i4", "uint8": "u1", "int64": "<i8", "int16": "<i2", "int8": "i1"}
_SIZE = {"float32": 4, "int32": 4, "uint8": 1, "int64": 8, "int16": 2, "int8": 1}

FLT_MAX = 3.4028234663852886e38


# --------------------------------------------------------------------------------------------
# TFLite / TFLM quantization arithmetic (quantization_util.cc, kernel_util.cc), on the host
# --------------------------------------------------------------------------------------------

def _round_away(x: float) -> int:
    """std::round / TfLiteRound: halves away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def quantize_multiplier(d: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: d = q * 2^shift with q a Q0.31 int32."""
    if d == 0.0:
        return 0, 0
    q, shift = math.frexp(d)
    q_fixed = _round_away(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    if shift > 30:
        shift, q_fixed = 30, (1 << 31) - 1
    return int(q_fixed), int(shift)


def channel_multipliers(inp, filt, out) -> tuple[list[int], list[int]]:
    """Per output channel (one for per-tensor weights): the requantization multiplier and shift of
    input scale x weight scale / output scale."""
    pairs = [quantize_multiplier(float(inp.scale) * float(sc) / float(out.scale)) for sc in filt.scales or [0.0]]
    return [m for m, _ in pairs], [sh for _, sh in pairs]


def _f32(x: float) -> float:
    """Round a Python float to float32 and back (exact)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _f32_div(a: float, b: float) -> float:
    return _f32(_f32(a) / _f32(b))


def calculate_input_radius(integer_bits: int, left_shift: int, total_signed_bits: int = 31) -> int:
    v = 1.0 * ((1 << integer_bits) - 1) * (1 << (total_signed_bits - integer_bits)) / (1 << left_shift)
    return int(math.floor(v))


def act_range_q(act: int, scale: float, zp: int, qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 (float division, std::round)."""
    def q(f):
        return zp + _round_away(_f32_div(f, scale))

    if act == 0:
        return qmin, qmax
    if act == 1:  # RELU
        return max(qmin, q(0.0)), qmax
    if act == 3:  # RELU6
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if act == 2:  # RELU_N1_TO_1
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise ValueError(act)


def act_range_f(act: int) -> tuple[float, float]:
    return {0: (-FLT_MAX, FLT_MAX), 1: (0.0, FLT_MAX), 3: (0.0, 6.0), 2: (-1.0, 1.0)}[act]


# --------------------------------------------------------------------------------------------
# flatbuffer reading
# --------------------------------------------------------------------------------------------

class _T:
    """One tensor of the subgraph, as the generator uses it (from engine.tflite's TensorInfo)."""

    def __init__(self, t):
        self.idx = t.index
        self.name = t.name or f"t{t.index}"
        self.shape = list(t.shape)
        self.sig = list(t.shape_signature) if t.shape_signature else None
        self.dtype = t.dtype.lower()
        self.scales = list(t.scales)
        self.zps = list(t.zero_points)
        self.qdim = t.quantized_dimension
        self.data = t.data if t.data else None
        self.elems = math.prod(self.shape) if self.shape else 1

    @property
    def scale(self) -> float:
        return self.scales[0] if self.scales else 0.0

    @property
    def zp(self) -> int:
        return self.zps[0] if self.zps else 0

    @property
    def nbytes(self) -> int:
        return self.elems * _SIZE.get(self.dtype, 1)

    def array(self):
        import numpy as np

        return np.frombuffer(self.data, dtype=_NPTYPE[self.dtype]).reshape(self.shape or [1])


def load(tflite_path: Path):
    """Parse a .tflite with engine.tflite; return (model info, main subgraph, tensors, [(op name, op)]).

    Each op has `inputs`, `outputs` and `options` (the builtin options object). Raises TinyMLError
    if the file is unreadable.
    """
    from ..engine import tflite

    tflite_path = Path(tflite_path)
    try:
        raw = tflite_path.read_bytes()
    except OSError as e:
        raise TinyMLError(f"{tflite_path}: cannot read the model ({e.strerror})") from None
    info = tflite.parse(raw, tflite_path)
    sg = info.main
    tensors = [_T(t) for t in sg.tensors]
    ops = [(op.op.replace("CUSTOM:", "CUSTOM(") + (")" if op.op.startswith("CUSTOM:") else ""), op)
           for op in sg.operators]
    return info, sg, tensors, ops


def unsupported_ops(tflite_path: Path) -> list[dict]:
    """Every reason the AOT compiler cannot take this model (empty list: it can). Never raises for
    an unsupported model, only for an unreadable file."""
    model, sg, tensors, ops = load(tflite_path)
    problems = []
    if len(model.subgraphs) != 1:
        problems.append({"op": None, "reason": f"the model has {len(model.subgraphs)} subgraphs; the AOT compiler handles exactly one"})
    if len(sg.inputs) != 1 or len(sg.outputs) != 1:
        problems.append({"op": None, "reason": f"the model has {len(sg.inputs)} inputs and {len(sg.outputs)} outputs; the AOT compiler handles exactly one of each"})
    for t in tensors:
        if t.sig is not None and any(s < 0 for s in t.sig[1:]):
            problems.append({"op": None, "reason": f"tensor '{t.name}' has a dynamic shape {t.sig} (-1 beyond the batch axis)"})
            break
    for i, (name, op) in enumerate(ops):
        if name not in SUPPORTED_OPS:
            problems.append({"op": name, "index": i, "reason": f"operator #{i} {name} is not supported by the AOT compiler"})
    return problems


# --------------------------------------------------------------------------------------------
# C emission helpers
# --------------------------------------------------------------------------------------------

def _cf(x: float) -> str:
    """A C float literal that is exactly the float32 value of x."""
    x = _f32(x)
    if math.isinf(x):
        return "-3.402823466e+38f" if x < 0 else "3.402823466e+38f"
    if math.isnan(x):
        raise ValueError("NaN constant")
    return f"{_short_hex(x)}f" if x != 0 else "0.0f"


def _short_hex(x: float) -> str:
    """float.hex without trailing zero digits: 0x1.8000000000000p+1 -> 0x1.8p+1 (exact, C99)."""
    mant, exp = x.hex().split("p")
    mant = mant.rstrip("0")
    if mant.endswith("."):
        mant = mant[:-1]
    return f"{mant}p{exp}"


def _int_list(vals, per_line: int = 24) -> str:
    vals = ["(-2147483647 - 1)" if int(v) == -2 ** 31 else str(int(v)) for v in vals]
    lines = [", ".join(vals[i: i + per_line]) for i in range(0, len(vals), per_line)]
    return "  " + ",\n  ".join(lines)


def _float_list(vals, per_line: int = 6) -> str:
    vals = [_cf(float(v)) for v in vals]
    lines = [", ".join(vals[i: i + per_line]) for i in range(0, len(vals), per_line)]
    return "  " + ",\n  ".join(lines)


def _pad4(shape: list[int]) -> list[int]:
    if len(shape) > 4:
        raise ValueError("rank > 4")
    return [1] * (4 - len(shape)) + list(shape)


def _conv_pad(padding: int, stride: int, dil: int, in_size: int, filt: int) -> tuple[int, int]:
    """ComputePaddingHeightWidth for one axis: (padding before, output size)."""
    eff = (filt - 1) * dil + 1
    out = (in_size + stride - 1) // stride if padding == 0 else (in_size + stride - eff) // stride
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2, out


class _Gen:
    def __init__(self, path: Path, prefix: str):
        self.path = Path(path)
        self.prefix = prefix
        self.model, self.sg, self.tensors, self.ops = load(self.path)
        self.decls: list[str] = []     # weights and parameter structs (flash)
        self.body: list[str] = []      # statements of <prefix>_model_invoke
        self.emitted: dict[int, str] = {}
        self.weights_bytes = 0
        self.tables_bytes = 0
        self.kernels: set[str] = set()
        self.not_fast: set[int] = set()  # packed ops whose requantization needs TFLM's 64-bit arithmetic
        self.dw_pairs: set[int] = set()  # depthwise ops granted the tap-pair scratch (see generate)
        self.fc_small: set[int] = set()  # small fully connected ops generated as code on DSP cores (small_fc)
        self.n = 0

    # ---- errors ----
    def fail(self, i: int, name: str, why: str):
        raise TinyMLError(f"{self.path}: operator #{i} {name}: {why}; {_KEEP_TFLM}")

    # ---- names ----
    def sym(self, what: str) -> str:
        self.n += 1
        return f"{self.prefix}_{what}{self.n}"

    def const(self, t: _T) -> str:
        """Emit a constant tensor as a static const array once; return its symbol."""
        if t.idx in self.emitted:
            return self.emitted[t.idx]
        if t.data is None:
            raise ValueError(t.name)
        name = f"{self.prefix}_w_{t.idx}"
        arr = t.array().reshape(-1)
        body = _float_list(arr) if t.dtype == "float32" else _int_list(arr)
        self.decls.append(f"/* {t.name} {t.shape} {t.dtype} */\nstatic const {_CTYPE[t.dtype]} {name}[{arr.size}] = {{\n{body}\n}};")
        self.emitted[t.idx] = name
        self.weights_bytes += t.nbytes
        return name

    def table(self, vals: list[int], *, weights: bool = False, what: str = "q") -> str:
        name = self.sym(what)
        self.decls.append(f"static const int32_t {name}[{len(vals)}] = {{\n{_int_list(vals, 8)}\n}};")
        if weights:
            self.weights_bytes += 4 * len(vals)
        else:
            self.tables_bytes += 4 * len(vals)
        return name

    def struct(self, ctype: str, fields: list[str]) -> str:
        name = self.sym("op")
        self.decls.append(f"static const {ctype} {name} = {{{', '.join(fields)}}};")
        return name

    def packed_const(self, t: _T, arr) -> str:
        """Emit a re-laid-out int8 weight tensor (word aligned for the kernels' 32/64-bit loads)."""
        key = ("packed", t.idx)
        if key in self.emitted:
            return self.emitted[key]
        name = f"{self.prefix}_w_p{t.idx}"  # tinyml_w_*: what tasks/elfsize.py counts as model weights
        self.decls.append(f"/* {t.name} {t.shape} int8, re-laid out for the packed kernels */\n"
                          f"static const int8_t {name}[{arr.size}] __attribute__((aligned(8))) = {{\n{_int_list(arr)}\n}};")
        self.emitted[key] = name
        self.weights_bytes += int(arr.size)
        return name

    def rq_table(self, records) -> str:
        name = self.sym("rq")
        rows = [f"{{{m}, {k}, {r}}}" for m, k, r in records]
        lines = [", ".join(rows[i: i + 4]) for i in range(0, len(rows), 4)]
        self.decls.append(f"static const tml_rq {name}[{len(rows)}] = {{\n  " + ",\n  ".join(lines) + "\n};")
        self.tables_bytes += 12 * len(rows)
        return name

    def int32_table(self, vals, what: str) -> str:
        """A per-channel int32 array derived from the model's tensors (counted as weights); values
        wrap to int32 (only a constant channel's doubled bias can exceed it, and its record ignores
        the accumulator)."""
        return self.table([(int(v) + 2 ** 31) % 2 ** 32 - 2 ** 31 for v in vals], weights=True, what=what)

    def packed_call(self, k: int, name: str, op, act: int, rin: str, rout: str, scratch: str, ref, fn: str) -> str:
        """The tml_gemm_s8 / tml_dw_s8 call of an int8 FULLY_CONNECTED, CONV_2D or DEPTHWISE_CONV_2D."""
        import numpy as np

        from . import layout

        T = self.tensors
        inp, filt, out = T[op.inputs[0]], T[op.inputs[1]], T[op.outputs[0]]
        bias = T[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        mults, shifts = channel_multipliers(inp, filt, out)
        lo, hi = act_range_q(act, out.scale, out.zp)
        off = -inp.zp
        w = filt.array().astype(np.int64)
        b = bias.array().reshape(-1).astype(np.int64) if bias is not None else None
        stride = 1 if len(mults) > 1 else 0
        if name in ("FULLY_CONNECTED", "CONV_2D"):
            geo = _gemm_geometry(self, name, op)
            wmat = w.reshape(geo["out_c"], -1)
            kk = wmat.shape[1]
            wl = 4 if geo["out_h"] * geo["out_w"] == 1 else 2
            small = k in self.fc_small
            if small:  # the generic arrays only serve cores without the DSP extension (see small_fc)
                n_decls, n_w, n_t, emitted = len(self.decls), self.weights_bytes, self.tables_bytes, dict(self.emitted)
            wname = self.packed_const(filt, layout.pack_gemm(wmat, wl))
            sums = np.abs(wmat).sum(axis=1)
            if len(mults) == 1 and (wl == 2 or any(layout.constant_channels(sums, mults))):
                # per-channel records: a constant channel has its own; so has every channel of a
                # convolution with several output pixels (tml_mm2x2_rq loads a channel pair's two)
                mults, shifts, stride = mults * geo["out_c"], shifts * geo["out_c"], 1
            const = layout.constant_channels(sums, mults)
            fast = layout.fast_requant_ok(layout.acc_bounds(sums, b, off), mults, shifts, out.zp, const)
            if not fast:
                self.not_fast.add(k)
            records = layout.rq_records(mults, shifts, out.zp, fast, _constant_values(
                const, b, off, wmat, mults, shifts, out.zp))
            rq = self.rq_table(records)
            bb = b if b is not None else np.zeros(geo["out_c"], np.int64)
            rb = self.int32_table(2 * bb if fast else bb, "w_b")
            p = self.struct("tml_gemm_s8_params", [str(v) for v in (
                geo["batches"], geo["in_h"], geo["in_w"], geo["in_c"], geo["out_h"], geo["out_w"], geo["out_c"],
                geo["k_h"], geo["k_w"], geo["s_h"], geo["s_w"], geo["p_h"], geo["p_w"], layout.k4_of(kk), wl,
                off, out.zp, lo, hi, int(fast), stride)] + [rq, rb])
            call = f"{fn}(&{p}, {rin}, {wname}, {rout}, {scratch});"
            if small:
                assert fast and name == "FULLY_CONNECTED" and geo["batches"] == 1
                generic = self.decls[n_decls:]
                del self.decls[n_decls:]
                self.emitted = emitted
                self.weights_bytes, self.tables_bytes = n_w, n_t
                if generic:
                    self.decls += ["#if !TML_DSP"] + generic + ["#endif"]
                fname = self.small_fc(k, wmat, 2 * bb, records, off, lo, hi)
                call = f"#if TML_DSP\n  {fname}({rin}, {rout});\n#else\n  {call}\n#endif"
            return call
        opts = op.options
        n, ih, iw, c = inp.shape
        _, oh, ow, _ = out.shape
        kh, kw = filt.shape[1], filt.shape[2]
        ph, _ = _conv_pad(opts.padding, opts.strideH, 1, ih, kh)
        pw, _ = _conv_pad(opts.padding, opts.strideW, 1, iw, kw)
        if len(mults) == 1:  # depthwise records are always per channel (contiguous for the kernel)
            mults, shifts, stride = mults * c, shifts * c, 1
        sums = np.abs(w).reshape(-1, c).sum(axis=0)
        const = layout.constant_channels(sums, mults)
        fast = layout.fast_requant_ok(layout.acc_bounds(sums, b, off), mults, shifts, out.zp, const)
        if not fast:
            self.not_fast.add(k)
        rq = self.rq_table(layout.rq_records(mults, shifts, out.zp, fast, _constant_values(
            const, b, off, w.reshape(-1, c).T, mults, shifts, out.zp)))
        wp = layout.pack_dw(w, fast)
        wname = self.sym("w_dw")
        self.decls.append(f"/* {filt.name} {filt.shape} int8 as int16 lanes{' x 2' if fast else ''} for tml_dw_s8 */\n"
                          f"static const int16_t {wname}[{wp.size}] __attribute__((aligned(8))) = {{\n{_int_list(wp)}\n}};")
        self.weights_bytes += 2 * int(wp.size)
        rb = self.int32_table(layout.dw_bias(w, b, off, fast), "w_b")
        p = self.struct("tml_dw_s8_params", [str(v) for v in (
            n, ih, iw, c, oh, ow, kh, kw, opts.strideH, opts.strideW, ph, pw, off, out.zp, lo, hi, int(fast), stride,
            int(k in self.dw_pairs))]
            + [rq, rb])
        return f"tml_dw_s8(&{p}, {rin}, {wname}, {rout}, {scratch});"

    def small_fc(self, k: int, wmat, b2, records, off: int, lo: int, hi: int) -> str:
        """A small int8 fully connected layer (one batch, K <= FC_SMALL_K inputs, N <= FC_SMALL_N
        outputs, fast requantization) as generated code for DSP cores: no call chain, no set-up.
        The input, widened to int16 pairs with the offset added (SXTAB16 / SXTAB16 ROR 8, the
        order of tml_widen), is held in registers; per output channel one record of int32 words
        {2 * bias, the doubled weights as int16 pairs in the input's pair order, mult[, k, r]}
        (k and r leave the record when every channel shares them), SMLAD per pair, then the same
        SMMLAR requantization as tml_rq1_fast and only the clamps the activation range needs.
        The accumulator is the one of tml_fc_small (doubled weights instead of doubled inputs), the
        records are the same: the output is the DSP kernel's, which is TFLM's. Reads the whole
        input before writing any output. Returns the function's name."""
        n, kk = wmat.shape
        full, tail = kk // 4, kk % 4
        if len(records) == 1:  # per-tensor quantization: one record for every channel
            records = list(records) * n

        def lanes(lo16: int, hi16: int) -> int:
            v = ((int(hi16) & 0xFFFF) << 16) | (int(lo16) & 0xFFFF)
            return v - (1 << 32) if v >= 1 << 31 else v

        rows = []
        for c in range(n):
            w2 = [2 * int(v) for v in wmat[c]]
            words = []
            for g4 in range(full):
                a, b_, c_, d = w2[4 * g4: 4 * g4 + 4]
                words += [lanes(a, c_), lanes(b_, d)]
            for t in range(0, tail, 2):
                j = 4 * full + t
                words.append(lanes(w2[j], w2[j + 1] if t + 1 < tail else 0))
            rows.append(words)
        nw = len(rows[0]) if rows else 0
        ks = {r[1] for r in records}
        rs = {r[2] for r in records}
        shared = len(ks) == 1 and len(rs) == 1
        rec = []
        for c in range(n):
            m, kq, r = records[c]
            rec.append([(int(b2[c]) + 2 ** 31) % 2 ** 32 - 2 ** 31] + rows[c] + [int(m)] + ([] if shared else [int(kq), int(r)]))
        width = len(rec[0])
        tname = self.sym("w_fc")
        flat = [v for r_ in rec for v in r_]
        self.decls.append(
            f"#if TML_DSP\n/* operator #{k}, generated small fully connected layer: per output channel {{2 x bias, "
            f"{nw} doubled weight pairs, mult{'' if shared else ', k, r'}}} */\n"
            f"static const int32_t {tname}[{len(flat)}] __attribute__((aligned(8))) = {{\n{_int_list(flat, 8)}\n}};")
        self.weights_bytes += 4 * n * (1 + nw)
        self.tables_bytes += 4 * n * (width - 1 - nw)
        fname = f"{self.prefix}_fc{k}"
        body = [f"static void {fname}(const int8_t *x, int8_t *o) {{"]
        xs = []
        if full:
            body.append(f"  const int32_t off2 = {lanes(off, off)};")
        for g4 in range(full):
            body.append(f"  const int32_t u{g4} = tml_rd32(x + {4 * g4});")
            body.append(f"  const int32_t x{2 * g4} = tml_sxtab16(off2, u{g4}), x{2 * g4 + 1} = tml_sxtab16_ror8(off2, u{g4});")
            xs += [f"x{2 * g4}", f"x{2 * g4 + 1}"]
        for t in range(0, tail, 2):
            j = 4 * full + t
            i = len(xs)
            if t + 1 < tail:
                body.append(f"  const int32_t x{i} = (int32_t)(((uint32_t)(x[{j + 1}] + {off}) << 16) | "
                            f"((uint32_t)(x[{j}] + {off}) & 0xFFFFu));")
            else:
                body.append(f"  const int32_t x{i} = x[{j}] + {off};")
            xs.append(f"x{i}")
        (kq0,), (r0,) = (ks, rs) if shared else ((None,), (None,))
        kexpr = str(kq0) if shared else f"r[{nw + 2}]"
        rexpr = str(r0) if shared else f"r[{nw + 3}]"
        inner = ["    int32_t a = r[0], y;"]
        inner += [f"    a = tml_smlad({xv}, r[{j + 1}], a);" for j, xv in enumerate(xs)]
        inner.append(f"    y = tml_smmlar(a, r[{nw + 1}], {kexpr} + (a >> 31)) >> {rexpr};")
        inner.append("    y = tml_ssat8(y);")
        if lo > -128:
            inner.append(f"    y = y < {lo} ? {lo} : y;")
        if hi < 127:
            inner.append(f"    y = y > {hi} ? {hi} : y;")
        inner.append("    *o++ = (int8_t)y;")
        body.append(f"  const int32_t *r = {tname};")
        if n == 1:
            body += ["  {"] + inner + ["  }"]
        else:
            body += [f"  int8_t *const end = o + {n};", "  do {"] + inner + [f"    r += {width};", "  } while (o != end);"]
        body.append("}\n#endif")
        self.decls.append("\n".join(body))
        return fname

    # ---- per-channel multipliers ----
    def out_mults(self, inp: _T, filt: _T, out: _T) -> tuple[int, str, str]:
        mults, shifts = channel_multipliers(inp, filt, out)
        per_channel = 1 if len(mults) > 1 else 0
        return per_channel, self.table(mults), self.table(shifts)


# --------------------------------------------------------------------------------------------
# kernel choice, scratch and data flow per operator (before the memory plan)
# --------------------------------------------------------------------------------------------

_ELEMENTWISE = ("LOGISTIC", "TANH", "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE")


def _packed_kind(g: "_Gen", name: str, op) -> tuple[str | None, str]:
    """("gemm" | "dw" | None, why not) for an int8 FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D."""
    T = g.tensors
    ins = [T[i] if i >= 0 else None for i in op.inputs]
    if name not in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):
        return None, "no DSP kernel for this operator"
    if ins[0].dtype != "int8":
        if name == "FULLY_CONNECTED":
            return None, "float32 operator: no DSP kernel (the FPU kernel on cores with a single-precision FPU)"
        return None, "float32 operator: no DSP kernel"
    filt, bias = ins[1], (ins[2] if len(ins) > 2 else None)
    if filt.dtype != "int8" or filt.data is None:
        return None, "non-constant or non-int8 weights"
    if any(z != 0 for z in filt.zps):
        return None, "weights with a non-zero zero point"
    if bias is not None and (bias.dtype != "int32" or bias.data is None):
        return None, "non-constant or non-int32 bias"
    opts = op.options
    out = T[op.outputs[0]]
    sizes = list(ins[0].shape) + list(out.shape) + list(filt.shape) + [4 * ((int(filt.elems // max(out.shape[-1], 1)) + 3) // 4)]
    if max(sizes) > 32767:
        return None, "a dimension above 32767 (the packed kernels' parameters are int16)"
    if name == "FULLY_CONNECTED":
        return "gemm", ""
    if opts.dilationHFactor != 1 or opts.dilationWFactor != 1:
        return None, f"dilation {opts.dilationHFactor}x{opts.dilationWFactor}: the DSP kernels take dilation 1"
    if name == "CONV_2D":
        if filt.shape[3] != ins[0].shape[3]:
            return None, "grouped convolution: the DSP kernels take one group"
        return "gemm", ""
    if T[op.outputs[0]].shape[3] != ins[0].shape[3]:
        return None, "depth multiplier > 1: the DSP kernel takes multiplier 1"
    return "dw", ""


def _gemm_geometry(g: "_Gen", name: str, op) -> dict:
    T = g.tensors
    inp, filt, out = T[op.inputs[0]], T[op.inputs[1]], T[op.outputs[0]]
    if name == "FULLY_CONNECTED":
        units, k = filt.shape[0], filt.shape[-1]
        return dict(batches=inp.elems // k, in_h=1, in_w=1, in_c=k, out_h=1, out_w=1, out_c=units,
                    k_h=1, k_w=1, s_h=1, s_w=1, p_h=0, p_w=0)
    opts = op.options
    n, ih, iw, ic = inp.shape
    _, oh, ow, oc = out.shape
    kh, kw = filt.shape[1], filt.shape[2]
    ph, _ = _conv_pad(opts.padding, opts.strideH, 1, ih, kh)
    pw, _ = _conv_pad(opts.padding, opts.strideW, 1, iw, kw)
    return dict(batches=n, in_h=ih, in_w=iw, in_c=ic, out_h=oh, out_w=ow, out_c=oc, k_h=kh, k_w=kw,
                s_h=opts.strideH, s_w=opts.strideW, p_h=ph, p_w=pw)


FC_SMALL_K = 16  # the largest input of a fully connected layer generated as code (its pairs stay in registers)
FC_SMALL_N = 64  # and its most outputs


def _fc_small_ok(g: "_Gen", name: str, op, geo: dict) -> bool:
    """An int8 FULLY_CONNECTED the generator writes as code for DSP cores (_Gen.small_fc): one
    batch, at most FC_SMALL_K inputs and FC_SMALL_N outputs, and the 4-instruction requantization
    proven exact (the kernels' `fast` path)."""
    import numpy as np

    from . import layout

    if name != "FULLY_CONNECTED" or geo["batches"] != 1 or geo["in_c"] > FC_SMALL_K or geo["out_c"] > FC_SMALL_N:
        return False
    T = g.tensors
    inp, filt, out = T[op.inputs[0]], T[op.inputs[1]], T[op.outputs[0]]
    bias = T[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    mults, shifts = channel_multipliers(inp, filt, out)
    wmat = filt.array().astype(np.int64).reshape(geo["out_c"], -1)
    b = bias.array().reshape(-1).astype(np.int64) if bias is not None else None
    sums = np.abs(wmat).sum(axis=1)
    if len(mults) == 1 and any(layout.constant_channels(sums, mults)):
        mults, shifts = mults * geo["out_c"], shifts * geo["out_c"]
    const = layout.constant_channels(sums, mults)
    return layout.fast_requant_ok(layout.acc_bounds(sums, b, -inp.zp), mults, shifts, out.zp, const)


def _constant_values(const, bias, off, wmat, mults, shifts, zp):
    """Per channel: TFLM's output before clamping for a constant channel (acc = bias + off *
    sum(w) when every weight is zero... which leaves the bias), else None."""
    from .layout import _mbqm

    out = []
    for c, is_const in enumerate(const):
        if not is_const:
            out.append(None)
            continue
        acc = (int(bias[c]) if bias is not None else 0) + off * int(sum(int(v) for v in wmat[c]))
        out.append(_mbqm(acc, int(mults[c]), int(shifts[c])) + zp)
    return out


def _global_pool(in_shape, out_shape, opts) -> bool:
    """An AVERAGE_POOL_2D whose one window is the whole input, unpadded (tml_avgpool_global_s8;
    tml_avgpool_s8 tests the same at run time)."""
    _, ih, iw, c = in_shape
    ph, _ = _conv_pad(opts.padding, opts.strideH, 1, ih, opts.filterHeight)
    pw, _ = _conv_pad(opts.padding, opts.strideW, 1, iw, opts.filterWidth)
    return (tuple(out_shape[1:3]) == (1, 1) and (opts.filterHeight, opts.filterWidth) == (ih, iw)
            and ph == pw == 0 and c <= 256)


def _gemm_kernel(name: str, geo: dict) -> str:
    """The packed kernel of an int8 CONV_2D or FULLY_CONNECTED: a convolution with a 1x1 output
    calls tml_gemm1_s8, a fully connected layer that one pass covers (at most FC_KC inputs and
    FC_CHUNK outputs) tml_fc_packed1_s8, so each links only the code its path needs (generate
    turns tml_fc_packed1_s8 into tml_fc_packed_s8 when another layer needs that one)."""
    from . import layout

    if name != "FULLY_CONNECTED":
        return "tml_gemm1_s8" if geo["out_h"] * geo["out_w"] == 1 else "tml_gemm_s8"
    if geo["k_h"] * geo["k_w"] * geo["in_c"] <= layout.FC_KC and geo["out_c"] <= layout.FC_CHUNK:
        return "tml_fc_packed1_s8"
    return "tml_fc_packed_s8"


def _op_plan(g: "_Gen", k: int, name: str, op) -> dict:
    """Kernel, scratch bytes and per-input overlap lags (tasks.aot.flow) of operator k."""
    from . import flow, layout

    T = g.tensors
    ins = [T[i] if i >= 0 else None for i in op.inputs]
    out = T[op.outputs[0]]
    kind, why = _packed_kind(g, name, op)
    rec = {"index": k, "op": name, "scratch": 0, "lags": {}}
    if kind == "gemm":
        geo = _gemm_geometry(g, name, op)
        kk = geo["k_h"] * geo["k_w"] * geo["in_c"]
        rec.update(kernel=_gemm_kernel(name, geo), dsp_core="dsp", other_core="portable")
        if _fc_small_ok(g, name, op, geo):
            # generated code on DSP cores (_Gen.small_fc): no scratch; the portable kernel needs none
            g.fc_small.add(k)
            rec["dsp_kernel"] = f"{g.prefix}_fc{k} (generated in {g.prefix}_model.c)"
            rec["lags"][op.inputs[0]] = flow.gemm(geo["batches"], geo["in_h"], geo["in_w"], geo["in_c"], geo["out_h"],
                                                  geo["out_w"], geo["out_c"], geo["k_h"], geo["k_w"], geo["s_h"],
                                                  geo["s_w"], geo["p_h"], geo["p_w"])
            return rec
        rec["scratch"] = layout.gemm_scratch_bytes(geo["out_h"] * geo["out_w"], kk, geo["k_h"], geo["k_w"],
                                                   geo["p_h"], geo["p_w"], geo["in_c"])
        rec["lags"][op.inputs[0]] = flow.gemm(geo["batches"], geo["in_h"], geo["in_w"], geo["in_c"], geo["out_h"],
                                              geo["out_w"], geo["out_c"], geo["k_h"], geo["k_w"], geo["s_h"],
                                              geo["s_w"], geo["p_h"], geo["p_w"])
        return rec
    if kind == "dw":
        opts = op.options
        n, ih, iw, c = ins[0].shape
        _, oh, ow, _ = out.shape
        kh, kw = ins[1].shape[1], ins[1].shape[2]
        ph, _ = _conv_pad(opts.padding, opts.strideH, 1, ih, kh)
        rec.update(kernel="tml_dw_s8", dsp_core="dsp", other_core="portable")
        rec["scratch"] = layout.dw_scratch_bytes(c, ow, kh, kw, opts.strideW)
        if layout.dw_pairs_ok(kh, kw, opts.strideW):  # the tap-pair DSP path needs a larger scratch
            rec["scratch_pairs"] = layout.dw_scratch_bytes(c, ow, kh, kw, opts.strideW, pairs=True)
        rec["lags"][op.inputs[0]] = flow.rows(n, ih, iw, oh, ow, kh, opts.strideH, ph, c, c)
        rec["dw_macs"] = n * oh * ow * c * kh * kw
        return rec
    dt = ins[0].dtype if ins and ins[0] is not None else "float32"
    sfx = "s8" if dt == "int8" else "f32"
    kernel = {
        "FULLY_CONNECTED": f"tml_fc_{sfx}", "CONV_2D": f"tml_conv2d_{sfx}", "DEPTHWISE_CONV_2D": f"tml_depthwise_{sfx}",
        "MAX_POOL_2D": f"tml_maxpool_{sfx}", "AVERAGE_POOL_2D": f"tml_avgpool_{sfx}", "MEAN": f"tml_mean_{sfx}",
        "SOFTMAX": f"tml_softmax_{sfx}", "LOGISTIC": f"tml_logistic_{sfx}", "TANH": f"tml_tanh_{sfx}",
        "RELU": "tml_requant_s8" if dt == "int8" else "tml_clamp_f32",
        "RELU6": "tml_requant_s8" if dt == "int8" else "tml_clamp_f32",
        "QUANTIZE": "tml_requant_s8" if dt == "int8" else "tml_quantize_f32_s8",
        "DEQUANTIZE": "tml_dequantize_s8_f32", "ADD": f"tml_add_{sfx}", "MUL": f"tml_mul_{sfx}",
        "CONCATENATION": "tml_concat", "PAD": "tml_pad",
    }.get(name, "(alias: no code)" if name in SHAPE_ONLY_OPS else name.lower())
    if name == "AVERAGE_POOL_2D" and dt == "int8" and _global_pool(ins[0].shape, out.shape, op.options):
        kernel = "tml_avgpool_global_s8"  # without the windowed loop
    rec.update(kernel=kernel, dsp_core="portable", other_core="portable")
    if name not in SHAPE_ONLY_OPS:
        rec["note"] = why
    if name in _ELEMENTWISE or (name == "SOFTMAX" and _SIZE[dt] == _SIZE[out.dtype]):
        rec["lags"][op.inputs[0]] = flow.elementwise(out.elems, _SIZE[dt], _SIZE[out.dtype])
    elif name in ("ADD", "MUL"):
        for ti in op.inputs[:2]:
            if ti >= 0 and T[ti].data is None and T[ti].elems == out.elems and _pad4(T[ti].shape) == _pad4(out.shape):
                rec["lags"][ti] = flow.elementwise(out.elems, _SIZE[dt], _SIZE[out.dtype])
    elif name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        opts = op.options
        n, ih, iw, c = ins[0].shape
        _, oh, ow, _ = out.shape
        ph, _ = _conv_pad(opts.padding, opts.strideH, 1, ih, opts.filterHeight)
        pw, _ = _conv_pad(opts.padding, opts.strideW, 1, iw, opts.filterWidth)
        rec["lags"][op.inputs[0]] = flow.channelwise(n, ih, iw, oh, ow, opts.filterHeight, opts.filterWidth,
                                                     opts.strideH, opts.strideW, ph, pw, c * _SIZE[dt])
    # the reference CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED, MEAN, CONCATENATION and PAD do not
    # overlap their inputs
    return rec


def generate(tflite_path: Path, out_dir: Path, prefix: str = "tinyml") -> dict:
    """Compile `tflite_path` into `<out_dir>/<prefix>_model.c` and `.h`; return a summary dict.

    Raises TinyMLError (naming the operator or reason) for a model the compiler cannot handle.
    """
    from .plan import Buffer, Overlap, check_plan, plan_memory

    if not prefix.isidentifier():
        raise TinyMLError(f"AOT prefix '{prefix}' is not a C identifier; use letters, digits and _")
    g = _Gen(tflite_path, prefix)
    problems = unsupported_ops(tflite_path)
    if problems:
        reasons = "; ".join(p["reason"] for p in problems)
        raise TinyMLError(
            f"{tflite_path}: cannot compile ahead of time: {reasons} "
            f"(supported operators: {', '.join(SUPPORTED_OPS)}); {_KEEP_TFLM}"
        )
    T = g.tensors
    in_t, out_t = T[g.sg.inputs[0]], T[g.sg.outputs[0]]
    for t, role in ((in_t, "input"), (out_t, "output")):
        if t.dtype not in ("int8", "float32"):
            raise TinyMLError(f"{tflite_path}: model {role} '{t.name}' is {t.dtype}; the AOT compiler "
                              f"takes int8 or float32 model inputs and outputs; {_KEEP_TFLM}")

    # ---- kernels, scratch and data flow per operator ----
    plans = [_op_plan(g, k, name, op) for k, (name, op) in enumerate(g.ops)]
    if any(pl["kernel"] == "tml_fc_packed_s8" for pl in plans):
        # one fully connected entry point per model: tml_fc_packed_s8 covers the one-pass layers too
        for pl in plans:
            if pl["kernel"] == "tml_fc_packed1_s8":
                pl["kernel"] = "tml_fc_packed_s8"

    # ---- tensor -> storage: a constant, or a buffer of the one arena (the model's input and output
    # included); reshape-like operators alias their input ----
    root: dict[int, int] = {}

    def find(i):
        while root.get(i, i) != i:
            i = root[i]
        return i

    for k, (name, op) in enumerate(g.ops):
        if name in SHAPE_ONLY_OPS:
            root[find(op.outputs[0])] = find(op.inputs[0])
    n_ops = len(g.ops)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for k, (name, op) in enumerate(g.ops):
        for ti in list(op.outputs) + [i for i in op.inputs if i >= 0]:
            r = find(ti)
            first.setdefault(r, k)
            last[r] = max(last.get(r, k), k)
    in_root, out_root = find(in_t.idx), find(out_t.idx)
    first[in_root] = -1          # written by the caller before the first operator
    last.setdefault(in_root, -1)
    first.setdefault(out_root, n_ops)
    last[out_root] = n_ops       # read by the caller after the last operator
    buffers: dict[str, Buffer] = {}
    tensor_buf: dict[int, str] = {}
    for r in sorted(first):
        t = T[r]
        if t.data is not None:
            continue
        bname = f"t{r}"
        buffers[bname] = Buffer(bname, t.nbytes, first[r], last[r])
        tensor_buf[r] = bname
    scratch_buf: dict[int, str] = {}
    for pl in plans:
        if pl["scratch"]:
            bname = f"scratch{pl['index']}"
            buffers[bname] = Buffer(bname, pl["scratch"], pl["index"], pl["index"])
            scratch_buf[pl["index"]] = bname
    overlaps = []
    for k, (name, op) in enumerate(g.ops):
        o = find(op.outputs[0])
        for ti, lag in plans[k]["lags"].items():
            r = find(ti)
            if lag is None or r == o or r not in tensor_buf or o not in tensor_buf or last[r] != k:
                continue
            overlaps.append(Overlap(tensor_buf[o], tensor_buf[r], int(lag)))
    buf_list = list(buffers.values())
    arena_bytes = plan_memory(buf_list, overlaps)
    # Depthwise ops whose DSP kernel can take tap pairs (3x3) need a larger scratch (about twice
    # the row buffers plus 40 bytes per channel). Every one gets it, except where taking it back
    # from that operator alone lowers the arena (the operator sets the peak by itself);
    grow = [pl for pl in plans if pl.get("scratch_pairs", 0) > pl["scratch"]]
    if grow:
        for pl in grow:
            buffers[scratch_buf[pl["index"]]].size = pl["scratch_pairs"]
        arena_bytes = plan_memory(buf_list, overlaps)
        for pl in grow:
            b = buffers[scratch_buf[pl["index"]]]
            b.size = pl["scratch"]
            trial = plan_memory(buf_list, overlaps)
            if trial < arena_bytes:
                arena_bytes = trial
            else:
                b.size = pl["scratch_pairs"]
                g.dw_pairs.add(pl["index"])
        # then each one taken back, the most MACs first, again if that grows the arena by at most
        # DW_PAIRS_RAM_SLACK in all (the greedy planner is not monotonic: a few bytes of alignment
        # can cost an operator its pairs)
        cap = arena_bytes + int(arena_bytes * DW_PAIRS_RAM_SLACK)
        for pl in sorted(grow, key=lambda pl: (-pl["dw_macs"], pl["index"])):
            if pl["index"] in g.dw_pairs:
                continue
            b = buffers[scratch_buf[pl["index"]]]
            b.size = pl["scratch_pairs"]
            if plan_memory(buf_list, overlaps) <= cap:
                g.dw_pairs.add(pl["index"])
            else:
                b.size = pl["scratch"]
        arena_bytes = plan_memory(buf_list, overlaps)
    for pl in grow:  # aot.json: which depthwise ops run the tap pairs on a DSP core
        pl["tap_pairs"] = pl["index"] in g.dw_pairs
        if pl["tap_pairs"]:
            pl["scratch"] = pl["scratch_pairs"]
    for pl in plans:
        pl.pop("scratch_pairs", None)
        pl.pop("dw_macs", None)
    check_plan(buf_list, overlaps)
    arena = f"{prefix}_arena"

    def ref(ti: int, const: bool = False) -> str:
        t = T[ti]
        r = find(ti)
        ct = _CTYPE[t.dtype]
        q = "const " if const else ""
        if T[r].data is not None:
            return f"({q}{ct} *){g.const(T[r])}"
        return f"({q}{ct} *)({arena} + {buffers[tensor_buf[r]].offset})"

    def scratch_ref(k: int) -> str:
        return f"(void *)({arena} + {buffers[scratch_buf[k]].offset})" if k in scratch_buf else "(void *)0"

    # ---- operators ----
    op_list = []
    for k, (name, op) in enumerate(g.ops):
        op_list.append(name)
        ins = [T[i] if i >= 0 else None for i in op.inputs]
        out = T[op.outputs[0]]
        opts = op.options
        dt = ins[0].dtype
        if dt not in ("int8", "float32") and name not in SHAPE_ONLY_OPS:
            g.fail(k, name, f"input '{ins[0].name}' is {dt}; only int8 and float32 activations are supported")
        act = int(getattr(opts, "fusedActivationFunction", 0) or 0)
        if act not in (0, 1, 2, 3):
            g.fail(k, name, "fused activation TANH/SIGN_BIT is not supported")
        if act and name not in _FUSED_ACT_OPS:
            g.fail(k, name, "a fused activation on this operator is not supported")
        rin = ref(op.inputs[0], const=True)
        rout = ref(op.outputs[0])
        comment = f"  /* #{k} {name} -> {out.name} {out.shape} */"
        g.body.append(comment)
        call = None

        if name in SHAPE_ONLY_OPS:
            g.body.append("  /* alias: no code */")
            g.body.append(f"  TML_TRACE({k}, {rout}, {out.nbytes});")
            continue

        elif plans[k]["kernel"] in ("tml_gemm_s8", "tml_gemm1_s8", "tml_fc_packed_s8", "tml_fc_packed1_s8", "tml_dw_s8"):
            call = g.packed_call(k, name, op, act, rin, rout, scratch_ref(k), ref, plans[k]["kernel"])

        elif name == "FULLY_CONNECTED":
            filt, bias = ins[1], (ins[2] if len(ins) > 2 else None)
            units, in_features = filt.shape[0], filt.shape[-1]
            batches = ins[0].elems // in_features
            rf = ref(filt.idx, const=True)
            rb = None
            if dt == "int8":
                if filt.dtype != "int8" or (bias is not None and bias.dtype != "int32"):
                    g.fail(k, name, f"weights {filt.dtype}/bias {bias.dtype if bias else None}; int8 weights and int32 bias required")
                pc, mt, st = g.out_mults(ins[0], filt, out)
                lo, hi = act_range_q(act, out.scale, out.zp)
                in_off = -ins[0].zp
                if in_off and filt.zp == 0 and filt.data is not None and (bias is None or bias.data is not None):
                    # sum_d w*(x+off) + b == sum_d w*x + (b + off*sum_d w): exact in integers, so the
                    # result is TFLM's, at half the work. The folded bias is a new const table.
                    import numpy as np

                    w = filt.array().astype(np.int64).reshape(units, in_features)
                    b = bias.array().astype(np.int64).reshape(-1) if bias is not None else np.zeros(units, np.int64)
                    folded = b + in_off * w.sum(axis=1)
                    if np.abs(folded).max() < 2 ** 31:
                        rb = f"(const int32_t *){g.table([int(v) for v in folded], weights=True, what='w_bias')}"
                        in_off = 0
                if rb is None:
                    rb = ref(bias.idx, const=True) if bias is not None else "0"
                p = g.struct("tml_fc_s8_params", [str(batches), str(in_features), str(units), str(in_off),
                                                  str(-filt.zp), str(out.zp), str(lo), str(hi), str(pc), mt, st])
                call = f"tml_fc_s8(&{p}, {rin}, {rf}, {rb}, {rout});"
            else:
                if filt.dtype != "float32":
                    g.fail(k, name, f"float input with {filt.dtype} weights (hybrid quantization) is not supported")
                lo, hi = act_range_f(act)
                rb = ref(bias.idx, const=True) if bias is not None else "0"
                p = g.struct("tml_fc_f32_params", [str(batches), str(in_features), str(units), _cf(lo), _cf(hi)])
                call = f"tml_fc_f32(&{p}, {rin}, {rf}, {rb}, {rout});"

        elif name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            filt, bias = ins[1], (ins[2] if len(ins) > 2 else None)
            n, ih, iw, ic = ins[0].shape
            _, oh, ow, oc = out.shape
            if name == "CONV_2D":
                kh, kw, fic = filt.shape[1], filt.shape[2], filt.shape[3]
            else:
                kh, kw = filt.shape[1], filt.shape[2]
                fic = oc // ic
            ph, oh2 = _conv_pad(opts.padding, opts.strideH, opts.dilationHFactor, ih, kh)
            pw, ow2 = _conv_pad(opts.padding, opts.strideW, opts.dilationWFactor, iw, kw)
            if (oh2, ow2) != (oh, ow):
                g.fail(k, name, f"output shape {out.shape} does not match the padding arithmetic ({oh2}x{ow2})")
            geo = [str(v) for v in (n, ih, iw, ic, oh, ow, oc, kh, kw, opts.strideH, opts.strideW,
                                    opts.dilationHFactor, opts.dilationWFactor, ph, pw, fic)]
            rf = ref(filt.idx, const=True)
            rb = ref(bias.idx, const=True) if bias is not None else "0"
            kern = "conv2d" if name == "CONV_2D" else "depthwise"
            if dt == "int8":
                if filt.dtype != "int8" or (bias is not None and bias.dtype != "int32"):
                    g.fail(k, name, f"weights {filt.dtype}/bias {bias.dtype if bias else None}; int8 weights and int32 bias required")
                pc, mt, st = g.out_mults(ins[0], filt, out)
                lo, hi = act_range_q(act, out.scale, out.zp)
                p = g.struct("tml_conv_s8_params", geo + [str(-ins[0].zp), str(out.zp), str(lo), str(hi), str(pc), mt, st])
                call = f"tml_{kern}_s8(&{p}, {rin}, {rf}, {rb}, {rout});"
            else:
                if filt.dtype != "float32":
                    g.fail(k, name, f"float input with {filt.dtype} weights (hybrid quantization) is not supported")
                lo, hi = act_range_f(act)
                p = g.struct("tml_conv_f32_params", geo + [_cf(lo), _cf(hi)])
                call = f"tml_{kern}_f32(&{p}, {rin}, {rf}, {rb}, {rout});"

        elif name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            n, ih, iw, c = ins[0].shape
            _, oh, ow, _ = out.shape
            ph, oh2 = _conv_pad(opts.padding, opts.strideH, 1, ih, opts.filterHeight)
            pw, ow2 = _conv_pad(opts.padding, opts.strideW, 1, iw, opts.filterWidth)
            if (oh2, ow2) != (oh, ow):
                g.fail(k, name, f"output shape {out.shape} does not match the padding arithmetic ({oh2}x{ow2})")
            if dt == "int8":
                lo, hi = act_range_q(act, out.scale, out.zp)
                flo, fhi = -FLT_MAX, FLT_MAX
            else:
                lo, hi = -128, 127
                flo, fhi = act_range_f(act)
            p = g.struct("tml_pool_params", [str(v) for v in (n, ih, iw, c, oh, ow, opts.filterHeight, opts.filterWidth,
                                                               opts.strideH, opts.strideW, ph, pw, lo, hi)] + [_cf(flo), _cf(fhi)])
            call = f"{plans[k]['kernel']}(&{p}, {rin}, {rout});"

        elif name == "MEAN":
            axes_t = ins[1]
            if axes_t.data is None:
                g.fail(k, name, "the axis tensor is not constant")
            rank = len(ins[0].shape)
            if rank > 4:
                g.fail(k, name, f"rank {rank} input; at most 4 dimensions are supported")
            axes = {(int(a) + rank) % rank + (4 - rank) for a in axes_t.array().reshape(-1)}
            dims = _pad4(ins[0].shape)
            red = [1 if d in axes else 0 for d in range(4)]
            mult = shift = 0
            if dt == "int8":
                # PrepareMeanOrSum + QuantizedMeanOrSum: fold 1/count into the multiplier
                mult, shift = quantize_multiplier(float(ins[0].scale) / float(out.scale))
                count = int(math.prod(d for d, r in zip(dims, red) if r))
                s = min(count.bit_length() - 1, 32, 31 + shift)
                mult = int((mult << s) // count)
                shift -= s
            p = g.struct("tml_mean_params", ["{" + ", ".join(map(str, dims)) + "}", "{" + ", ".join(map(str, red)) + "}",
                                             str(ins[0].zp), str(out.zp), str(mult), str(shift)])
            call = f"tml_mean_{'s8' if dt == 'int8' else 'f32'}(&{p}, {rin}, {rout});"

        elif name == "SOFTMAX":
            depth = ins[0].shape[-1]
            rows = ins[0].elems // depth
            beta = _f32(float(opts.beta))
            if dt == "int8":
                if out.zp != -128 or _f32(out.scale) != _f32(1.0 / 256):
                    g.fail(k, name, f"int8 output must have scale 1/256 and zero point -128 (has {out.scale}, {out.zp})")
                real = min(beta * float(ins[0].scale) * (1 << (31 - 5)), (1 << 31) - 1.0)
                mult, lshift = quantize_multiplier(real)
                diff_min = -calculate_input_radius(5, lshift)
                fields = [str(rows), str(depth), str(mult), str(lshift), str(diff_min), _cf(beta)]
            else:
                fields = [str(rows), str(depth), "0", "0", "0", _cf(beta)]
            p = g.struct("tml_softmax_params", fields)
            call = f"tml_softmax_{'s8' if dt == 'int8' else 'f32'}(&{p}, {rin}, {rout});"

        elif name in ("LOGISTIC", "TANH"):
            kern = name.lower()
            if dt == "int8":
                want = (-128, 1.0 / 256) if name == "LOGISTIC" else (0, 1.0 / 128)
                if out.zp != want[0]:
                    g.fail(k, name, f"int8 output zero point must be {want[0]} (has {out.zp})")
                real = float(ins[0].scale) * float(1 << (31 - 4))
                q, lshift = math.frexp(real)
                mult = _round_away(q * (1 << 31))
                radius = calculate_input_radius(4, lshift, 31)
                p = g.struct("tml_sigmoid_params", [str(ins[0].elems), str(ins[0].zp), str(radius), str(mult), str(lshift)])
                call = f"tml_{kern}_s8(&{p}, {rin}, {rout});"
            else:
                call = f"tml_{kern}_f32({ins[0].elems}, {rin}, {rout});"

        elif name in ("RELU", "RELU6"):
            if dt == "int8":
                if name == "RELU":
                    m, s = quantize_multiplier(float(ins[0].scale) / float(out.scale))
                    lo = max(-128, out.zp + _round_away(_f32_div(0.0, out.scale)))
                    fields = [ins[0].elems, -ins[0].zp, out.zp, m, s, lo, 127]
                else:  # TFLM Relu6Quantized: clamp in the input's scale, no rescale
                    six = max(-128, min(127, _round_away(_f32_div(6.0, ins[0].scale)) + ins[0].zp))
                    fields = [ins[0].elems, 0, 0, 1 << 30, 1, ins[0].zp, six]
                p = g.struct("tml_requant_params", [str(v) for v in fields])
                call = f"tml_requant_s8(&{p}, {rin}, {rout});"
            else:
                hi = FLT_MAX if name == "RELU" else 6.0
                call = f"tml_clamp_f32({ins[0].elems}, 0.0f, {_cf(hi)}, {rin}, {rout});"

        elif name == "QUANTIZE":
            if out.dtype != "int8":
                g.fail(k, name, f"output {out.dtype}; only int8 is supported")
            if dt == "float32":
                call = f"tml_quantize_f32_s8({out.elems}, {_cf(out.scale)}, {out.zp}, {rin}, {rout});"
            else:
                m, s = quantize_multiplier(float(ins[0].scale) / float(out.scale))
                p = g.struct("tml_requant_params", [str(v) for v in (out.elems, -ins[0].zp, out.zp, m, s, -128, 127)])
                call = f"tml_requant_s8(&{p}, {rin}, {rout});"

        elif name == "DEQUANTIZE":
            if dt != "int8" or out.dtype != "float32":
                g.fail(k, name, f"{dt} -> {out.dtype}; only int8 -> float32 is supported")
            call = f"tml_dequantize_s8_f32({out.elems}, {_cf(float(ins[0].scale))}, {ins[0].zp}, {rin}, {rout});"

        elif name in ("ADD", "MUL"):
            a, b = ins[0], ins[1]
            if len(out.shape) > 4:
                g.fail(k, name, "rank > 4 is not supported")
            od = _pad4(out.shape)

            def strides(t):
                d = _pad4(t.shape)
                s, acc = [0] * 4, 1
                for ax in (3, 2, 1, 0):
                    s[ax] = 0 if d[ax] == 1 and od[ax] != 1 else acc
                    acc *= d[ax]
                return s

            s1, s2 = strides(a), strides(b)
            fields = ["{" + ", ".join(map(str, od)) + "}", "{" + ", ".join(map(str, s1)) + "}",
                      "{" + ", ".join(map(str, s2)) + "}"]
            if dt == "int8":
                lo, hi = act_range_q(act, out.scale, out.zp)
                if name == "ADD":
                    left = 20
                    twice_max = 2 * float(max(_f32(a.scale), _f32(b.scale)))
                    m1, s1_ = quantize_multiplier(float(a.scale) / twice_max)
                    m2, s2_ = quantize_multiplier(float(b.scale) / twice_max)
                    mo, so = quantize_multiplier(twice_max / ((1 << left) * float(out.scale)))
                else:
                    left, m1, s1_, m2, s2_ = 0, 0, 0, 0, 0
                    mo, so = quantize_multiplier(float(a.scale) * float(b.scale) / float(out.scale))
                fields += [str(v) for v in (-a.zp, -b.zp, out.zp, left, m1, s1_, m2, s2_, mo, so, lo, hi)]
                fields += [_cf(-FLT_MAX), _cf(FLT_MAX)]
            else:
                flo, fhi = act_range_f(act)
                fields += ["0"] * 12 + [_cf(flo), _cf(fhi)]
            p = g.struct("tml_binary_params", fields)
            rb = ref(b.idx, const=True)
            call = f"tml_{name.lower()}_{'s8' if dt == 'int8' else 'f32'}(&{p}, {rin}, {rb}, {rout});"

        elif name == "CONCATENATION":
            rank = len(out.shape)
            axis = (int(opts.axis) + rank) % rank
            outer = int(math.prod(out.shape[:axis]))
            esz = _SIZE[dt]
            axis_bytes = [int(math.prod(t.shape[axis:])) * esz for t in ins]
            tbl = g.sym("cat")
            g.decls.append(f"static const int32_t {tbl}[{len(ins)}] = {{{', '.join(map(str, axis_bytes))}}};")
            srcs = ", ".join(ref(t.idx, const=True) for t in ins)
            call = (f"{{ const void *const src[{len(ins)}] = {{{srcs}}}; "
                    f"tml_concat({outer}, {len(ins)}, src, {tbl}, {rout}); }}")

        elif name == "PAD":
            pads_t = ins[1]
            if pads_t.data is None:
                g.fail(k, name, "the paddings tensor is not constant")
            rank = len(ins[0].shape)
            if rank > 4:
                g.fail(k, name, "rank > 4 is not supported")
            pads = [[0, 0]] * (4 - rank) + [[int(x) for x in row] for row in pads_t.array().reshape(rank, 2)]
            pv = g.sym("padv")
            if dt == "int8":
                g.decls.append(f"static const int8_t {pv} = {out.zp};")
            else:
                g.decls.append(f"static const float {pv} = 0.0f;")
            p = g.struct("tml_pad_params", ["{" + ", ".join(map(str, _pad4(ins[0].shape))) + "}",
                                            "{" + ", ".join(str(r[0]) for r in pads) + "}",
                                            "{" + ", ".join(str(r[1]) for r in pads) + "}", str(_SIZE[dt])])
            call = f"tml_pad(&{p}, {rin}, &{pv}, {rout});"
        else:  # pragma: no cover - guarded by unsupported_ops
            g.fail(k, name, "not supported")
        g.body.append(call if call.startswith("#") else "  " + call)
        g.body.append(f"  TML_TRACE({k}, {rout}, {out.nbytes});")

    for k in g.not_fast:
        plans[k]["dsp_core"] = "portable"
        plans[k]["note"] = ("requantization outside the 4-instruction shortcut's proven range (a shift >= 0, a "
                            "multiplier of exactly 2^-1 or an accumulator bound >= 2^30): TFLM's 64-bit arithmetic "
                            "and the portable loops")

    # ---- write the files ----
    P = prefix.upper()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = sha256_file(tflite_path)
    in_off = buffers[tensor_buf[in_root]].offset
    out_off = buffers[tensor_buf[out_root]].offset

    def io_macros(t: _T, role: str) -> str:
        R = role.upper()
        return "\n".join([
            f"#define {P}_{R}_ELEMS {t.elems}",
            f"#define {P}_{R}_BYTES {t.nbytes}",
            f"#define {P}_{R}_DTYPE \"{t.dtype}\"",
            f"#define {P}_{R}_IS_INT8 {1 if t.dtype == 'int8' else 0}",
            f"#define {P}_{R}_CTYPE {_CTYPE[t.dtype]}",
            f"#define {P}_{R}_SCALE {_cf(t.scale)}",
            f"#define {P}_{R}_ZERO_POINT {t.zp}",
            f"#define {P}_{R}_SHAPE {{{', '.join(map(str, t.shape))}}}",
        ])

    header = f"""/* {prefix}_model.h - generated by doit-tinyml's AOT compiler from {Path(tflite_path).name}
 * (sha256 {digest}). Do not edit: re-run the generator instead. */
#ifndef {P}_MODEL_H
#define {P}_MODEL_H

#include <stdint.h>

{io_macros(in_t, "input")}
{io_macros(out_t, "output")}
#define {P}_ARENA_BYTES {arena_bytes}   /* activations, the input and the output: the model's whole RAM */
#define {P}_INPUT_OFFSET {in_off}
#define {P}_OUTPUT_OFFSET {out_off}
#define {P}_WEIGHTS_BYTES {g.weights_bytes}

#ifdef __cplusplus
extern "C" {{
#endif

/* The input and the output live in the arena (their bytes are reused for activations):
 *   {prefix}_model_input()  -> write {P}_INPUT_ELEMS values of {P}_INPUT_CTYPE here (quantized with
 *                            {P}_INPUT_SCALE / {P}_INPUT_ZERO_POINT when int8),
 *   {prefix}_model_run()    -> one inference; it overwrites the input,
 *   {prefix}_model_output() -> {P}_OUTPUT_ELEMS values of {P}_OUTPUT_CTYPE, valid until the next
 *                            input is written (the two may share bytes).
 * Not reentrant: one static arena. {prefix}_model_run() returns 0. */
{_CTYPE[in_t.dtype]} *{prefix}_model_input(void);
{_CTYPE[out_t.dtype]} *{prefix}_model_output(void);
int {prefix}_model_run(void);

/* Convenience: copy `input` in, run, copy the output to `output`; either pointer may be 0 or the
 * arena's own ({prefix}_model_input() / {prefix}_model_output()) to skip that copy. Returns 0. */
int {prefix}_model_invoke(const void *input, void *output);

#ifdef __cplusplus
}}
#endif

#endif /* {P}_MODEL_H */
"""
    source = "\n".join([
        f"/* {prefix}_model.c - generated by doit-tinyml's AOT compiler from {Path(tflite_path).name}",
        f" * (sha256 {digest}). Do not edit: re-run the generator instead.",
        f" * Operators: {', '.join(op_list)}",
        f" * Arena: {arena_bytes} bytes (input at {in_off}, output at {out_off}); constant data: {g.weights_bytes} "
        f"bytes of tensors + {g.tables_bytes} bytes of requantization tables. */",
        f'#include "{prefix}_model.h"',
        '#include "tinyml_kernels.h"',
        *(['#include "tinyml_simd.h" /* TML_DSP and the DSP operations of the generated layers */'] if g.fc_small else []),
        "#include <string.h>",
        "",
        "/* TINYML_TRACE: compile with -DTINYML_TRACE to have tinyml_trace(op, data, bytes) called with",
        " * every operator's output (host diagnosis of a mismatch, per-operator timing on the target). */",
        "#ifdef TINYML_TRACE",
        "void tinyml_trace(int op, const void *data, int32_t bytes);",
        "#define TML_TRACE(op, data, bytes) tinyml_trace((op), (data), (bytes))",
        "#else",
        "#define TML_TRACE(op, data, bytes) ((void)0)",
        "#endif",
        "",
        f"static uint8_t {arena}[{max(arena_bytes, 16)}] __attribute__((aligned(16)));",
        "",
        *g.decls,
        "",
        f"{_CTYPE[in_t.dtype]} *{prefix}_model_input(void) {{ return ({_CTYPE[in_t.dtype]} *)({arena} + {in_off}); }}",
        f"{_CTYPE[out_t.dtype]} *{prefix}_model_output(void) {{ return ({_CTYPE[out_t.dtype]} *)({arena} + {out_off}); }}",
        "",
        f"int {prefix}_model_run(void) {{",
        *g.body,
        f"  (void){arena};",
        "  return 0;",
        "}",
        "",
        f"int {prefix}_model_invoke(const void *input, void *output) {{",
        f"  if (input && input != (const void *)({arena} + {in_off})) memcpy({arena} + {in_off}, input, {in_t.nbytes});",
        f"  {prefix}_model_run();",
        f"  if (output && output != (void *)({arena} + {out_off})) memcpy(output, {arena} + {out_off}, {out_t.nbytes});",
        "  return 0;",
        "}",
        "",
    ])
    write_text(out_dir / f"{prefix}_model.h", header)
    write_text(out_dir / f"{prefix}_model.c", source)
    return {
        "planned_bytes": arena_bytes,
        "ops": op_list,
        "weights_bytes": g.weights_bytes,
        "tables_bytes": g.tables_bytes,
        "io_bytes": in_t.nbytes + out_t.nbytes,
        "unsupported": [],
        "input": {"shape": in_t.shape, "dtype": in_t.dtype, "scale": in_t.scale, "zero_point": in_t.zp},
        "output": {"shape": out_t.shape, "dtype": out_t.dtype, "scale": out_t.scale, "zero_point": out_t.zp},
        "io_in_arena": True,
        "input_offset": in_off,
        "output_offset": out_off,
        "scratch_bytes": max((b.size for n, b in buffers.items() if n.startswith("scratch")), default=0),
        "kernels": [{k: v for k, v in pl.items() if k != "lags"} for pl in plans],
        "buffers": [{"name": b.name, "size": b.size, "offset": b.offset, "first": b.first, "last": b.last}
                    for b in buffers.values()],
        "overlaps": [{"out": o.out, "in": o.inp, "lag": o.lag} for o in overlaps],
        "files": [f"{prefix}_model.c", f"{prefix}_model.h"],
    }
