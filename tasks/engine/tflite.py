"""Read a .tflite flatbuffer without TensorFlow: ops, tensors, sizes, parameters, MACs, per-layer table.

Uses LiteRT's generated flatbuffer object API (`ai_edge_litert.schema_py_generated`), imported
inside the functions so that importing this module stays cheap.

Conventions (also in docs/analysis.md):
* `params` counts the elements of constant weight tensors: float/int8/uint8/int16/float16/int4
  constants, plus int32/int64 constants used as the bias input of FULLY_CONNECTED, CONV_2D,
  DEPTHWISE_CONV_2D, TRANSPOSE_CONV. Shape/axis constants are not parameters.
* `macs` counts multiply-accumulates of the compute ops; elementwise ops and activations count one
  per output element; pooling counts one per window element per output element; data movement
  (RESHAPE, QUANTIZE, DEQUANTIZE, CONCATENATION, ...) counts 0.
* per-layer `alive_bytes` is the sum of the sizes of the non-constant tensors alive at that step of
  the execution order (a tensor lives from the op that produces it, or step 0 for a graph input,
  to the last op that reads it, or the end for a graph output). It is a lower bound on the arena's
  activation area; TFLM's planner reports the real figure (see engine/tflm.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import TinyMLError

# bytes per element; INT4 is packed two to a byte (handled in tensor_bytes)
DTYPE_BYTES = {
    "FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "STRING": 0, "BOOL": 1,
    "INT16": 2, "COMPLEX64": 8, "INT8": 1, "FLOAT64": 8, "COMPLEX128": 16, "UINT64": 8,
    "RESOURCE": 0, "VARIANT": 0, "UINT32": 4, "UINT16": 2, "INT4": 0.5, "BFLOAT16": 2, "INT2": 0.25,
}
WEIGHT_DTYPES = {"FLOAT32", "FLOAT16", "INT8", "UINT8", "INT16", "INT4", "BFLOAT16", "FLOAT64"}
# op -> index of its bias input
BIAS_INPUT = {"FULLY_CONNECTED": 2, "CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "TRANSPOSE_CONV": 3, "CONV_3D": 2}
# op -> index of its weight (filter) input
WEIGHT_INPUT = {"FULLY_CONNECTED": 1, "CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "TRANSPOSE_CONV": 1,
                "CONV_3D": 1, "BATCH_MATMUL": 1, "UNIDIRECTIONAL_SEQUENCE_LSTM": 2, "SVDF": 1,
                "EMBEDDING_LOOKUP": 1}
ELEMENTWISE = {
    "ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM", "RELU", "RELU6",
    "RELU_N1_TO_1", "RELU_0_TO_1", "LEAKY_RELU", "PRELU", "LOGISTIC", "TANH", "HARD_SWISH", "ELU",
    "SOFTMAX", "LOG_SOFTMAX", "EXP", "LOG", "SQRT", "RSQRT", "SQUARE", "ABS", "NEG", "SIN", "COS",
    "POW", "FLOOR", "CEIL", "ROUND", "ADD_N", "GELU", "SIGN", "FLOOR_DIV", "FLOOR_MOD",
}
REDUCE = {"MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "L2_NORMALIZATION"}
POOL = {"AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"}


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


_NAMES: dict[str, dict[int, str]] = {}


def _names(kind: str) -> dict[int, str]:
    if kind not in _NAMES:
        from ai_edge_litert import schema_py_generated as schema

        _NAMES["op"] = _enum_names(schema.BuiltinOperator)
        _NAMES["dtype"] = _enum_names(schema.TensorType)
    return _NAMES[kind]


def builtin_op_names() -> dict[int, str]:
    """All TFLite builtin operator codes -> names, from the schema."""
    return dict(_names("op"))


def dtype_name(code: int) -> str:
    return _names("dtype").get(int(code), f"TYPE_{int(code)}")


def tensor_bytes(shape: list[int], dtype: str) -> int:
    n = math.prod(max(int(d), 0) for d in shape) if shape else 1
    return int(math.ceil(n * DTYPE_BYTES.get(dtype, 4)))


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: list[int]
    shape_signature: list[int]
    dtype: str
    buffer: int
    buffer_bytes: int
    is_variable: bool
    scales: list[float]
    zero_points: list[int]
    quantized_dimension: int
    data: bytes | None = field(default=None, repr=False)  # a constant tensor's bytes (little-endian)

    @property
    def is_constant(self) -> bool:
        return self.buffer_bytes > 0

    @property
    def nbytes(self) -> int:
        return tensor_bytes(self.shape, self.dtype)

    @property
    def elements(self) -> int:
        return math.prod(self.shape) if self.shape else 1

    def brief(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "shape": list(self.shape), "dtype": self.dtype.lower()}


@dataclass
class OpInfo:
    index: int
    op: str  # builtin name, or "CUSTOM:<name>"
    builtin: str
    custom_code: str | None
    version: int
    inputs: list[int]
    outputs: list[int]
    options: Any = None


@dataclass
class SubgraphInfo:
    index: int
    name: str
    tensors: list[TensorInfo]
    operators: list[OpInfo]
    inputs: list[int]
    outputs: list[int]


@dataclass
class ModelInfo:
    path: str | None
    tflite_bytes: int
    data_bytes: int
    non_data_bytes: int
    subgraphs: list[SubgraphInfo]
    buffer_sizes: list[int]
    metadata_names: list[str] = field(default_factory=list)

    # ---- convenience views -------------------------------------------------------------------
    @property
    def main(self) -> SubgraphInfo:
        return self.subgraphs[0]

    def ops(self) -> list[str]:
        """Distinct op names over all subgraphs, in order of first use."""
        seen: list[str] = []
        for sg in self.subgraphs:
            for op in sg.operators:
                if op.op not in seen:
                    seen.append(op.op)
        return seen

    def io_tensor(self, which: str, i: int = 0) -> TensorInfo:
        sg = self.main
        idx = (sg.inputs if which == "input" else sg.outputs)[i]
        return sg.tensors[idx]


def _decode(s) -> str:
    if s is None:
        return ""
    return s.decode("utf-8", "replace") if isinstance(s, (bytes, bytearray)) else str(s)


def _ints(v) -> list[int]:
    if v is None:
        return []
    return [int(x) for x in v]


def parse(data: bytes, path: str | Path | None = None) -> ModelInfo:
    """Parse .tflite bytes. Raises TinyMLError if the bytes are not a TFLite flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    where = str(path) if path else "the model bytes"
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TinyMLError(f"{where} is not a TFLite flatbuffer (missing the 'TFL3' identifier); "
                          "give the model.tflite written by the convert stage")
    try:
        m = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as e:  # corrupt flatbuffer
        raise TinyMLError(f"{where} could not be read as a TFLite flatbuffer: {e}") from None

    buffers = m.buffers or []
    buffer_sizes, buffer_data = [], []
    for b in buffers:
        if b.data is not None and len(b.data):
            blob = b.data.tobytes() if hasattr(b.data, "tobytes") else bytes(bytearray(b.data))
        elif getattr(b, "offset", 0) and b.offset > 1 and getattr(b, "size", 0):
            blob = bytes(data[int(b.offset): int(b.offset) + int(b.size)])   # a model over 2 GB keeps data outside
        else:
            blob = None
        buffer_data.append(blob)
        buffer_sizes.append(len(blob) if blob is not None else int(getattr(b, "size", 0) or 0))

    op_names = _names("op")
    opcodes = []
    for oc in m.operatorCodes or []:
        code = max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))
        name = op_names.get(code, f"BUILTIN_{code}")
        custom = _decode(oc.customCode) if oc.customCode is not None else None
        opcodes.append((name, custom, int(oc.version or 1)))

    subgraphs: list[SubgraphInfo] = []
    tensor_buffers: set[int] = set()
    for si, sg in enumerate(m.subgraphs or []):
        tensors = []
        for ti, t in enumerate(sg.tensors or []):
            q = t.quantization
            scales = [float(x) for x in (q.scale if q is not None and q.scale is not None else [])]
            zps = [int(x) for x in (q.zeroPoint if q is not None and q.zeroPoint is not None else [])]
            bi = int(t.buffer or 0)
            tensor_buffers.add(bi)
            tensors.append(TensorInfo(
                index=ti, name=_decode(t.name), shape=_ints(t.shape),
                shape_signature=_ints(t.shapeSignature) if t.shapeSignature is not None else _ints(t.shape),
                dtype=dtype_name(t.type), buffer=bi,
                buffer_bytes=buffer_sizes[bi] if 0 <= bi < len(buffer_sizes) else 0,
                is_variable=bool(t.isVariable), scales=scales, zero_points=zps,
                quantized_dimension=int(q.quantizedDimension or 0) if q is not None else 0,
                data=buffer_data[bi] if 0 <= bi < len(buffer_data) else None,
            ))
        ops = []
        for oi, o in enumerate(sg.operators or []):
            name, custom, version = opcodes[o.opcodeIndex]
            ops.append(OpInfo(index=oi, op=f"CUSTOM:{custom}" if name == "CUSTOM" else name, builtin=name,
                              custom_code=custom, version=version, inputs=_ints(o.inputs),
                              outputs=_ints(o.outputs), options=o.builtinOptions))
        subgraphs.append(SubgraphInfo(index=si, name=_decode(sg.name), tensors=tensors, operators=ops,
                                      inputs=_ints(sg.inputs), outputs=_ints(sg.outputs)))
    if not subgraphs:
        raise TinyMLError(f"{where} has no subgraph: it holds no model to run")

    data_bytes = sum(buffer_sizes[i] for i in tensor_buffers if 0 <= i < len(buffer_sizes))
    return ModelInfo(
        path=str(path) if path else None, tflite_bytes=len(data), data_bytes=data_bytes,
        non_data_bytes=len(data) - data_bytes, subgraphs=subgraphs, buffer_sizes=buffer_sizes,
        metadata_names=[_decode(md.name) for md in (m.metadata or [])],
    )


def load(path: str | Path) -> ModelInfo:
    path = Path(path)
    if not path.is_file():
        raise TinyMLError(f"model file {path} does not exist; run the convert stage first (doit convert)")
    return parse(path.read_bytes(), path)


# ---- parameters, MACs, hybrid/float16 ---------------------------------------------------------

def _param_tensors(sg: SubgraphInfo) -> set[int]:
    """Indices of constant tensors that are weights or biases."""
    out = set()
    bias_ids = set()
    for op in sg.operators:
        bi = BIAS_INPUT.get(op.builtin)
        if bi is not None and bi < len(op.inputs) and op.inputs[bi] >= 0:
            bias_ids.add(op.inputs[bi])
    for t in sg.tensors:
        if not t.is_constant:
            continue
        if t.dtype in WEIGHT_DTYPES or (t.index in bias_ids and t.dtype in ("INT32", "INT64")):
            out.add(t.index)
    return out


def params(info: ModelInfo) -> int:
    return sum(sg.tensors[i].elements for sg in info.subgraphs for i in _param_tensors(sg))


def _t(sg: SubgraphInfo, idx_list: list[int], k: int) -> TensorInfo | None:
    if k < len(idx_list) and idx_list[k] >= 0:
        return sg.tensors[idx_list[k]]
    return None


def op_macs(sg: SubgraphInfo, op: OpInfo) -> int:
    out = _t(sg, op.outputs, 0)
    out_elems = out.elements if out is not None else 0
    name = op.builtin
    w = _t(sg, op.inputs, 1)
    if name == "FULLY_CONNECTED" and w is not None and len(w.shape) == 2:
        return out_elems * w.shape[1]
    if name == "CONV_2D" and w is not None and len(w.shape) == 4:
        return out_elems * w.shape[1] * w.shape[2] * w.shape[3]
    if name == "DEPTHWISE_CONV_2D" and w is not None and len(w.shape) == 4:
        return out_elems * w.shape[1] * w.shape[2]
    if name == "CONV_3D" and w is not None and len(w.shape) == 5:
        return out_elems * w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3]
    if name == "TRANSPOSE_CONV" and w is not None and len(w.shape) == 4:
        x = _t(sg, op.inputs, 2)
        return (x.elements if x else 0) * w.shape[0] * w.shape[1] * w.shape[2]
    if name == "BATCH_MATMUL":
        a = _t(sg, op.inputs, 0)
        return out_elems * (a.shape[-1] if a is not None and a.shape else 1)
    if name in POOL:
        o = op.options
        fh, fw = getattr(o, "filterHeight", 1) or 1, getattr(o, "filterWidth", 1) or 1
        return out_elems * fh * fw
    if name in REDUCE:
        x = _t(sg, op.inputs, 0)
        return x.elements if x is not None else 0
    if name in ELEMENTWISE:
        return out_elems
    if name == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        x = _t(sg, op.inputs, 0)
        # 4 gates x (input + recurrent) weights per time step
        if x is not None and out is not None and len(x.shape) == 3:
            units = out.shape[-1]
            return x.shape[0] * x.shape[1] * 4 * units * (x.shape[2] + units)
    return 0


def macs(info: ModelInfo) -> int:
    return sum(op_macs(sg, op) for sg in info.subgraphs for op in sg.operators)


def hybrid_ops(info: ModelInfo) -> list[dict[str, Any]]:
    """Ops running with float activations and int8 (dynamic-range) weights."""
    found = []
    for sg in info.subgraphs:
        for op in sg.operators:
            wi = WEIGHT_INPUT.get(op.builtin)
            if wi is None:
                continue
            w = _t(sg, op.inputs, wi)
            x = _t(sg, op.inputs, 0)
            if (w is not None and w.is_constant and w.dtype in ("INT8", "UINT8", "INT4")
                    and x is not None and x.dtype == "FLOAT32"):
                found.append({"subgraph": sg.index, "index": op.index, "op": op.op, "weights": w.name,
                              "weights_dtype": w.dtype.lower(), "input_dtype": x.dtype.lower()})
    return found


def is_float16(info: ModelInfo) -> bool:
    has_f16_const = any(t.is_constant and t.dtype == "FLOAT16" for sg in info.subgraphs for t in sg.tensors)
    has_deq = any(op.builtin == "DEQUANTIZE" for sg in info.subgraphs for op in sg.operators)
    return has_f16_const and has_deq


# ---- per-layer table with a liveness pass -----------------------------------------------------

def liveness(sg: SubgraphInfo) -> list[int]:
    """Bytes of non-constant tensors alive at each operator step of `sg`."""
    n = len(sg.operators)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for ti in sg.inputs:
        first[ti] = 0
    for step, op in enumerate(sg.operators):
        for ti in op.outputs:
            if ti >= 0:
                first.setdefault(ti, step)
                last[ti] = max(last.get(ti, step), step)
        for ti in op.inputs:
            if ti >= 0:
                first.setdefault(ti, step)
                last[ti] = max(last.get(ti, step), step)
    for ti in sg.outputs:
        last[ti] = n - 1
    alive = [0] * n
    for ti, f in first.items():
        t = sg.tensors[ti]
        if t.is_constant or t.is_variable:
            continue
        for s in range(f, last.get(ti, f) + 1):
            alive[s] += t.nbytes
    return alive


def layers(info: ModelInfo) -> tuple[list[dict[str, Any]], int | None]:
    """Per-op table of the main subgraph; returns (rows, index of the peak row or None)."""
    sg = info.main
    ptensors = _param_tensors(sg)
    alive = liveness(sg)
    rows = []
    for op, a in zip(sg.operators, alive):
        ins = [sg.tensors[i] for i in op.inputs if i >= 0]
        outs = [sg.tensors[i] for i in op.outputs if i >= 0]
        rows.append({
            "index": op.index,
            "op": op.op,
            "inputs": [t.brief() | {"constant": t.is_constant} for t in ins],
            "outputs": [t.brief() for t in outs],
            "params": sum(t.elements for t in ins if t.index in ptensors),
            "macs": op_macs(sg, op),
            "alive_bytes": a,
            "peak": False,
        })
    peak = None
    if rows:
        peak = max(range(len(rows)), key=lambda i: (rows[i]["alive_bytes"], -i))
        rows[peak]["peak"] = True
    return rows, peak


def io_description(t: TensorInfo) -> dict[str, Any]:
    return {
        "name": t.name,
        "shape": list(t.shape),
        "dtype": t.dtype.lower(),
        "scale": t.scales[0] if len(t.scales) == 1 else (t.scales if t.scales else 0.0),
        "zero_point": t.zero_points[0] if len(t.zero_points) == 1 else (t.zero_points if t.zero_points else 0),
    }
