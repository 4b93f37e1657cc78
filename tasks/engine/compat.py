"""Will this .tflite run on TensorFlow Lite Micro? Checked before the firmware stage.

Two sources, combined:

* static checks on the flatbuffer (engine/tflite.py): every op against the builtin kernels of
  the pinned tflite-micro (`TFLM_KERNELS`, read off the `Register_*` symbols of the pinned
  tflite-micro wheel's `_runtime.so`), hybrid (dynamic-range) ops, float16 weights, uint8
  input/output, several subgraphs, float ops left inside an int8 model, dynamic shapes;
* the real interpreter (engine/tflm.py runs it): the Python interpreter registers every kernel, so
  an op without a kernel fails allocation with TFLM's own "Didn't find op for builtin opcode 'X'",
  and a kernel that rejects its tensor types fails its Prepare ("Node FULLY_CONNECTED (number 0)
  failed to prepare"). Those messages are captured and reported verbatim.

Each problem is {"op" or "tensor", "message", "fix", "severity": "error"|"warning"}; the model is
TFLM-compatible when no problem is an error. An incompatible model is reported, never a crash.
"""
from __future__ import annotations

import re
from typing import Any

# TFLM builtin op -> MicroMutableOpResolver method (the pinned tflite-micro's kernels).
TFLM_KERNELS: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul", "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice", "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup", "EQUAL": "AddEqual", "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor", "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual", "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot", "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax", "MAX_POOL_2D": "AddMaxPool2D", "MAXIMUM": "AddMaximum",
    "MEAN": "AddMean", "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad", "MUL": "AddMul",
    "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2",
    "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll", "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu", "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound", "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape",
    "SIN": "AddSin", "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth", "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt",
    "SQUARE": "AddSquare", "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf",
    "TANH": "AddTanh", "TRANSPOSE": "AddTranspose", "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM", "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}
# builtins with a kernel in the pinned wheel but no MicroMutableOpResolver method we can vouch for
TFLM_KERNELS_NO_METHOD: set[str] = set()
# custom ops TFLM ships kernels for
TFLM_CUSTOM = {"TFLite_Detection_PostProcess": "AddDetectionPostprocess", "ETHOSU": "AddEthosU",
               "CIRCULAR_BUFFER": "AddCircularBuffer"}

FIX_INT8 = 'use full-integer quantization with a representative dataset (quantization = "int8")'
DATA_MOVEMENT = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SHAPE", "CAST"}

_DIDNT_FIND = re.compile(r"Didn't find op for builtin opcode '([^']+)'")
_DIDNT_FIND_CUSTOM = re.compile(r"Didn't find op for custom opcode '([^']+)'")
_NO_CUSTOM_REG = re.compile(r"Failed to get registration from op code CUSTOM")
_PREPARE = re.compile(r"Node (\S+) \(number (\d+)\) failed to (prepare|invoke|init)")


def resolver_method(op: str) -> str | None:
    """MicroMutableOpResolver method that registers `op` (builtin name or CUSTOM:<name>)."""
    if op.startswith("CUSTOM:"):
        return TFLM_CUSTOM.get(op.split(":", 1)[1])
    return TFLM_KERNELS.get(op)


def _p(kind: str, name: str, message: str, fix: str, severity: str = "error") -> dict[str, Any]:
    return {kind: name, "message": message, "fix": fix, "severity": severity}


def static_problems(info) -> list[dict[str, Any]]:
    """Problems visible in the flatbuffer alone. `info` is an engine.tflite.ModelInfo."""
    from . import tflite as tflite_info

    probs: list[dict[str, Any]] = []
    for op in info.ops():
        if op.startswith("CUSTOM:"):
            name = op.split(":", 1)[1]
            if name not in TFLM_CUSTOM:
                probs.append(_p("op", op, f"TFLite Micro has no kernel for custom op '{name}'"
                                + (" (a TensorFlow op kept by SELECT_TF_OPS)" if name.startswith("Flex") else ""),
                                "convert without SELECT_TF_OPS / custom ops (use layers that map to TFLite "
                                "builtins), or write the kernel and register it with "
                                "MicroMutableOpResolver::AddCustom"))
        elif op not in TFLM_KERNELS and op not in TFLM_KERNELS_NO_METHOD:
            probs.append(_p("op", op, f"TFLite Micro has no kernel for builtin op {op}",
                            f"replace the layer that converts to {op} with layers TFLM supports "
                            "(see docs/analysis.md for the kernel list), or implement the kernel as a "
                            "custom op"))

    hyb = tflite_info.hybrid_ops(info)
    if hyb:
        names = sorted({h["op"] for h in hyb})
        probs.append(_p("op", names[0],
                        f"hybrid (dynamic-range) model: {len(hyb)} op(s) ({', '.join(names)}) take float32 "
                        "activations with int8 weights; TFLite Micro kernels have no hybrid path", FIX_INT8))
    if tflite_info.is_float16(info):
        probs.append(_p("op", "DEQUANTIZE",
                        "float16 weights: the model dequantizes FLOAT16 constants at run time; TFLite Micro's "
                        "DEQUANTIZE takes int8/int16/uint8 only",
                        f'{FIX_INT8}, or keep float32 (quantization = "float32")'))

    sg = info.main
    for which, idxs in (("input", sg.inputs), ("output", sg.outputs)):
        for i in idxs:
            t = sg.tensors[i]
            if t.dtype != "UINT8":
                continue
            users = [op for op in sg.operators if i in op.inputs or i in op.outputs]
            if all(op.builtin in ("QUANTIZE", "DEQUANTIZE") for op in users):
                probs.append(_p("tensor", t.name,
                                f"model {which} '{t.name}' is uint8: TFLM runs the QUANTIZE op that converts it "
                                "to/from int8, at the cost of an extra op and tensor",
                                'set io = "int8" for this variant to feed the int8 model directly',
                                severity="warning"))
            else:
                ops_ = sorted({op.op for op in users})
                probs.append(_p("tensor", t.name,
                                f"model {which} '{t.name}' is uint8 and feeds {', '.join(ops_)} directly; TFLite "
                                "Micro kernels take int8, not uint8 (asymmetric uint8 quantisation was dropped)",
                                'set io = "int8" (or "float32") for this variant'))
    if len(info.subgraphs) > 1:
        ctl = [op for sg_ in info.subgraphs for op in sg_.operators
               if op.builtin in ("IF", "WHILE", "CALL_ONCE")]
        probs.append(_p("op", ctl[0].op if ctl else "SUBGRAPH",
                        f"{len(info.subgraphs)} subgraphs (control flow or an unrolled LSTM): TFLM runs "
                        "IF/WHILE/CALL_ONCE but each subgraph adds arena and flash; check the arena figure",
                        "unroll the loop or use a stateless layer (e.g. unroll=True on the RNN) if the "
                        "firmware does not fit", severity="warning"))

    int8_model = any(t.dtype == "INT8" and not t.is_constant for s in info.subgraphs for t in s.tensors)
    if int8_model:
        float_ops = []
        for s in info.subgraphs:
            for op in s.operators:
                if op.builtin in DATA_MOVEMENT:
                    continue
                acts = [s.tensors[i] for i in list(op.inputs) + list(op.outputs)
                        if i >= 0 and not s.tensors[i].is_constant]
                if acts and any(t.dtype == "FLOAT32" for t in acts):
                    float_ops.append(op.op)
        if float_ops:
            names = sorted(set(float_ops))
            probs.append(_p("op", names[0],
                            f"{len(float_ops)} op(s) still run in float32 inside an int8 model "
                            f"({', '.join(names)}): slower, and their tensors take 4x the arena",
                            f"replace the layer(s) behind {', '.join(names)} with ones that quantize to int8 "
                            "(the converter leaves an op in float when it has no int8 kernel for it), or keep "
                            'this variant float32 (quantization = "float32")', severity="warning"))

    for s in info.subgraphs:
        for t in s.tensors:
            if any(d < 0 for d in t.shape):
                probs.append(_p("tensor", t.name, f"tensor '{t.name}' has a dynamic shape {t.shape}; TFLite "
                                "Micro needs every shape fixed at conversion",
                                "give the Keras Input a fixed shape (batch 1) before converting"))
                break
    return probs


def runtime_problems(message: str, info=None) -> list[dict[str, Any]]:
    """Problems from what the real TFLM interpreter printed when it refused the model."""
    probs = []
    for op in dict.fromkeys(_DIDNT_FIND.findall(message)):
        probs.append(_p("op", op, f"TFLite Micro has no kernel for {op}: TFLM says \"Didn't find op for "
                        f"builtin opcode '{op}'\"",
                        f"replace the layer that converts to {op} with layers TFLM supports, or implement "
                        "the kernel as a custom op"))
    for op in dict.fromkeys(_DIDNT_FIND_CUSTOM.findall(message)):
        probs.append(_p("op", f"CUSTOM:{op}", f"TFLite Micro has no kernel for custom op '{op}': TFLM says "
                        f"\"Didn't find op for custom opcode '{op}'\"",
                        "convert without custom/SELECT_TF_OPS, or register the kernel with AddCustom"))
    if _NO_CUSTOM_REG.search(message) and info is not None:
        for op in info.ops():
            if op.startswith("CUSTOM:") and op.split(":", 1)[1] not in TFLM_CUSTOM:
                name = op.split(":", 1)[1]
                probs.append(_p("op", op, f"TFLite Micro has no kernel for custom op '{name}'"
                                + (" (a TensorFlow op kept by SELECT_TF_OPS)" if name.startswith("Flex") else "")
                                + ": TFLM says \"Failed to get registration from op code CUSTOM\"",
                                "convert without SELECT_TF_OPS / custom ops (use layers that map to TFLite "
                                "builtins), or write the kernel and register it with "
                                "MicroMutableOpResolver::AddCustom"))
    for op, number, phase in _PREPARE.findall(message):
        lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
        cause = next((ln for ln in lines if not ln.startswith(("Node ", "python:"))), "")
        text = f"TFLM rejected op #{number} {op} ({phase} failed)" + (f": {cause}" if cause else "")
        fix = FIX_INT8 if ("INT8" in cause or "Int8" in cause or "kTfLiteInt8" in cause) else (
            "check the op's input/output types against TFLM's kernel (int8 or float32), "
            "or convert with full-integer quantization")
        probs.append(_p("op", op, text, fix))
    said = " ".join(ln.strip() for ln in message.splitlines() if ln.strip() and not ln.startswith("python:"))
    if not probs and message.strip():
        probs.append(_p("op", "MODEL", "TFLite Micro refused the model: " + (said or message.strip())[:400],
                        "check the model's ops and types against docs/analysis.md"))
    return probs


def merge(static: list[dict[str, Any]], runtime: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runtime problems first (TFLM's own words), then static ones not already said; errors first."""
    out = list(runtime)
    said = {(p.get("op"), p.get("tensor")) for p in runtime}
    for p in static:
        if (p.get("op"), p.get("tensor")) in said and p["message"].startswith("TFLite Micro has no kernel"):
            continue  # TFLM's own "Didn't find op" already says it
        if (p.get("op"), p.get("tensor")) in said and p["severity"] == "error":
            # keep the static explanation (hybrid, float16) when it says more than TFLM's assertion text
            for q in out:
                if (q.get("op"), q.get("tensor")) == (p.get("op"), p.get("tensor")):
                    q["message"] = f"{p['message']}. {q['message']}"
                    q["fix"] = p["fix"]
            continue
        out.append(p)
    out.sort(key=lambda p: p["severity"] != "error")
    return out


def check(model_bytes: bytes, info=None) -> tuple[bool, list[dict[str, Any]], dict[str, Any] | None]:
    """(compatible, problems, arena measurement or None). Never raises for an incompatible model."""
    from . import tflite as tflite_info
    from . import tflm as arena

    info = info or tflite_info.parse(model_bytes)
    static = static_problems(info)
    res = arena.run_child(model_bytes)
    measured = None
    runtime = []
    if res.get("ok"):
        alloc = arena.parse_allocations(res["report"])
        measured = {"host_bytes": int(res["host_bytes"]), "allocations": alloc,
                    **arena.derive_target32(res["host_bytes"], alloc)}
    else:
        runtime = runtime_problems(res.get("message", ""), info)
    problems = merge(static, runtime)
    compatible = measured is not None and not any(p["severity"] == "error" for p in problems)
    return compatible, problems, measured
