"""The exact 32-bit TFLite Micro arena: TFLM's allocator replayed for a Cortex-M, from measured rules.

The tflite-micro Python interpreter runs on the 64-bit host, where TFLM's bookkeeping (pointers,
size_t) is bigger; the smallest arena a Cortex-M needs is not a fixed fraction of the host's. This
module rebuilds, for a model, the sequence of arena allocations TFLM makes on a 32-bit target
during `AllocateTensors()` and replays it through a model of TFLM's `SingleArenaBufferAllocator`
(persistent tail growing down, temporary and resizable head growing up, alignment of each request)
and of the planning step (the `AllocationInfo` array and the greedy planner's 40 bytes per planned
buffer taken from what is left), then bisects the arena size exactly as the firmware does:

    interpreter objects (SingleArenaBufferAllocator, GreedyMemoryPlanner, MicroAllocator)
    builtin-data allocator, scratch-request head (12 requests), SubgraphAllocations,
    TfLiteEvalTensor x tensors, NodeAndRegistration x operators, each operator's builtin data
    each kernel's Init (its OpData), each kernel's Prepare (temporary TfLiteTensors and their
    quantization data; persistent per-channel arrays; scratch-buffer requests)
    scratch handles; planning (temporary); the head (activations + scratch buffers, measured on the host:
    the planner's result does not depend on pointer sizes); input/output pointer arrays and TfLiteTensors

Sizes and per-kernel behaviour come from `data/tflm_arena32.json`, measured once on the target
(QEMU mps2-an386, Cortex-M4) by logging every allocation of the real TFLM with reference kernels at
the tflite-micro commit the Python interpreter is built from (its provenance is in the file).
The 64-bit host run checks each model against the rules (tensor, operator and persistent-buffer
counts must agree); a model with an operator the rules do not cover, or whose counts disagree, is
not predicted (`exact` false) and the caller keeps its conservative derivation.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "tflm_arena32.json"


@functools.lru_cache(maxsize=1)
def rules() -> dict:
    return json.loads(DATA.read_text())


def _quantized(t) -> bool:
    return bool(t.scales) and bool(t.zero_points)


def _temp_tensor(t, r) -> list[tuple]:
    """AllocateTempTfLiteTensor on 32-bit: the struct, then (quantized) its TfLiteAffineQuantization and zero points."""
    ev = [("T", r["tflite_tensor"], 4, "tensor")]
    if _quantized(t):
        ev += [("T", r["affine_quantization"], 4, "quant"), ("T", 4 + 4 * len(t.scales), 4, "zero_points")]
    return ev


def _persistent_tensor(t, r) -> list[tuple]:
    ev = [("P", r["tflite_tensor"], 4, "io")]
    if _quantized(t):
        ev += [("P", r["affine_quantization"], 4, "io"), ("P", 4 + 4 * len(t.scales), 4, "io")]
    return ev


def _channels(op: str, sg, node) -> tuple[int, int]:
    """(output channels, weight scales) of a conv / depthwise / fully connected node."""
    w = sg.tensors[node.inputs[1]] if len(node.inputs) > 1 and node.inputs[1] >= 0 else None
    if w is None:
        return 0, 0
    if op == "DEPTHWISE_CONV_2D":
        c = w.shape[-1] if w.shape else 0
    else:
        c = w.shape[0] if w.shape else 0
    return int(c), len(w.scales)


def _compute_dtype(sg, node) -> str:
    for i in list(node.inputs) + list(node.outputs):
        if i >= 0 and sg.tensors[i].dtype in ("FLOAT32",) and not sg.tensors[i].is_constant:
            return "float"
    return "int8"


def _ops(kernels: str) -> dict:
    """The per-operator rules of a kernel set: the reference rules with that set's overrides."""
    r = rules()
    ops = {k: dict(v) for k, v in r["ops"].items()}
    if kernels != "reference":
        ks = r.get("kernel_sets", {}).get(kernels)
        if ks is None:
            raise KeyError(f"kernel set {kernels}")
        for op, over in ks["ops"].items():
            base = ops.setdefault(op, {})
            if any(k.startswith("prepare") for k in over):  # a kernel set's own Prepare replaces all variants
                for k in [k for k in base if k.startswith("prepare")]:
                    del base[k]
            base.update(over)
    return ops


def sequence(info, head: int, kernels: str = "reference") -> tuple[list[tuple], dict]:
    """The 32-bit allocation events of AllocateTensors for this model (engine.tflite.ModelInfo).

    Returns (events, facts) with facts {n_tensors, n_ops, n_scratch, n_planned, n_persistent_buffers};
    raises KeyError(op) for an operator the rules do not cover.
    """
    r = rules()
    if len(info.subgraphs) != 1:
        raise KeyError("several subgraphs")
    sg = info.main
    ops = _ops(kernels)
    for node in sg.operators:
        if node.op not in ops:
            raise KeyError(node.op)
    ev: list[tuple] = [("P", s, a, "object") for s, a in r["fixed"]]
    ev += [("P", *r["builtin_data_allocator"], "object"), ("R", r["scratch_request"] * r["max_scratch_per_op"], 4, "head")]
    ev += [("P", *r["subgraph_allocations"], "object"),
           ("P", r["eval_tensor"] * len(sg.tensors), 4, "eval"),
           ("P", r["node_and_registration"] * len(sg.operators), 4, "nodes")]
    for node in sg.operators:
        b = ops[node.op].get("builtin")
        if b:
            ev.append(("P", b[0], b[1], "builtin"))
    n_pbuf = 0
    for node in sg.operators:
        for size in ops[node.op].get("init", []):
            ev.append(("P", size, 16, "opdata"))
            n_pbuf += 1
    n_scratch = 0
    for node in sg.operators:
        rule = ops[node.op]
        kind = _compute_dtype(sg, node)
        steps = rule.get(f"prepare_{kind}", rule.get("prepare", []))
        c, scales = _channels(node.op, sg, node)
        for step in steps:
            if step[0] in "io":  # a tensor the kernel reads: i<k> input k, o<k> output k
                idx = (node.inputs if step[0] == "i" else node.outputs)
                k = int(step[1:])
                if k < len(idx) and idx[k] >= 0:
                    ev += _temp_tensor(sg.tensors[idx[k]], r)
            elif step == "per_channel":  # per-channel multiplier and shift arrays (int32 x channels)
                ev += [("P", 4 * c, 16, "opdata"), ("P", 4 * c, 16, "opdata")]
                n_pbuf += 2
            elif step == "per_channel_if_scales":  # fully connected: only with per-channel weights
                if scales > 1:
                    ev += [("P", 4 * scales, 16, "opdata"), ("P", 4 * scales, 16, "opdata")]
                    n_pbuf += 2
            else:
                raise ValueError(f"unknown prepare step {step!r}")
        n_scratch += int(rule.get(f"scratch_{kind}", rule.get("scratch", 0)))
        if kind == "int8" and rule.get("scratch_int8_if_not_1x1"):
            w = sg.tensors[node.inputs[1]] if len(node.inputs) > 1 and node.inputs[1] >= 0 else None
            if w is not None and len(w.shape) == 4 and (w.shape[1], w.shape[2]) != (1, 1):
                n_scratch += int(rule["scratch_int8_if_not_1x1"])
        ev.append(("R", r["scratch_request"] * (n_scratch + r["max_scratch_per_op"]), 4, "head"))
    if n_scratch:
        ev.append(("P", r["scratch_handle"] * n_scratch, 4, "object"))
    n_planned = sum(1 for t in sg.tensors if not t.is_constant) + n_scratch
    ev += [("T", 4, 4, "plan"), ("T", r["allocation_info"] * (len(sg.tensors) + n_scratch), 4, "plan"),
           ("PLAN", r["planner_per_buffer"] * n_planned, 16, "plan"), ("R", 0, 1, "head"), ("R", head, 16, "head")]
    for ids in (sg.inputs, sg.outputs):
        ev.append(("P", r["pointer"] * len(ids), 16, "io"))
        n_pbuf += 1
        for i in ids:
            ev += _persistent_tensor(sg.tensors[i], r)
    facts = {"n_tensors": len(sg.tensors), "n_ops": len(sg.operators), "n_scratch": n_scratch,
             "n_planned": n_planned, "n_persistent_buffers": n_pbuf}
    return ev, facts


def fits(events: list[tuple], size: int) -> bool:
    """Does this allocation sequence succeed in an arena of `size` bytes (16-aligned start)?"""
    head = temp = guard = 0
    tail = size
    for kind, n, align, _what in events:
        if kind == "P":
            t = (tail - n) // align * align
            # below the head fails; below a live temporary TfLiteTensor or its quantization struct overwrites
            # them (TFLM checks only the head, but the kernel then reads a corrupted tensor, and freeing the
            # temporaries reads the struct's pointers): only the last zero-point array may be reused
            if t < max(head, guard):
                return False
            tail = t
        elif kind == "T":
            a = -(-temp // align) * align
            if tail - a < n:
                return False
            temp = a + n
            if _what in ("tensor", "quant"):
                guard = temp
        elif kind == "PLAN":  # the greedy planner takes what is left; it needs n bytes of it
            avail = tail // 16 * 16 - (-(-temp // 16) * 16)
            if avail < n:
                return False
        elif kind == "R":  # temporaries reset, the resizable head buffer resized
            a = -(-0 // align) * align
            if tail - a < n:
                return False
            head = temp = guard = a + n
    return True


def minimum(events: list[tuple], step: int = 16) -> int:
    """Smallest multiple of `step` for which the sequence succeeds (the firmware's bisection)."""
    lo, hi = 0, 1 << 16
    while not fits(events, hi):
        hi *= 2
        if hi > 1 << 30:
            raise RuntimeError("no arena size fits this allocation sequence")
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if mid <= lo:
            mid = lo + step
        if fits(events, mid):
            hi = mid
        else:
            lo = mid
    return hi


def predict(model_bytes: bytes, host_alloc: dict, kernels: str = "reference") -> dict[str, Any]:
    """{exact, target32_bytes, final32_bytes, split, why} from the model and the host's allocation report."""
    from . import tflite as tflite_info

    info = tflite_info.parse(model_bytes)
    cats = host_alloc.get("categories", {})
    head = int(host_alloc.get("head", 0))
    try:
        events, facts = sequence(info, head, kernels)
    except KeyError as e:
        return {"exact": False, "why": f"no measured 32-bit allocation rules for {e.args[0]}"}
    # the host's run must be the model the rules describe
    checks = {
        "TfLiteEvalTensor data": facts["n_tensors"],
        "NodeAndRegistration struct": facts["n_ops"],
        "Persistent buffer data": facts["n_persistent_buffers"],
    }
    for cat, n in checks.items():
        if kernels != "reference" and cat == "Persistent buffer data":
            continue  # the host runs the reference kernels
        got = cats.get(cat, {}).get("count", 0)
        if cat == "NodeAndRegistration struct" and got == 0:
            continue
        if got != n:
            return {"exact": False, "why": f"the host's {cat!r} count is {got}, the 32-bit rules expect {n}"}
    m = minimum(events)
    final = _final(events)
    persistent = final - head
    return {"exact": True, "target32_bytes": int(m), "final32_bytes": int(final),
            "split": {"activations": head, "persistent": int(persistent), "scratch": int(m - final)},
            "facts": facts, "why": ""}


def _final(events: list[tuple]) -> int:
    """Bytes in use after AllocateTensors (head + tail), in a large arena: arena_used_bytes()."""
    size = 1 << 24
    head = 0
    tail = size
    for kind, n, align, _w in events:
        if kind == "P":
            tail = (tail - n) // align * align
        elif kind == "R":
            head = n
    return head + (size - tail)
