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
    scratch handles; planning (temporary); the head (activations + scratch buffers: measured on the host for
    the reference kernels, the planner's result not depending on pointer sizes; for another kernel set planned
    again by `plan`, TFLM's GreedyMemoryPlanner replayed, once it has reproduced the host's head); input/output
    pointer arrays and TfLiteTensors

Sizes and per-kernel behaviour come from `data/tflm_arena32.json`, measured once on the target
(QEMU mps2-an386, Cortex-M4) by logging every allocation of the real TFLM with reference kernels at
the tflite-micro commit the Python interpreter is built from (its provenance is in the file).
A kernel set (`kernel_sets`: CMSIS-NN) overrides operators' OpData, Prepare steps and scratch requests
(`_scratch_size`: CMSIS-NN's arm_*_get_buffer_size for a core with the DSP extension); a TFLM generation
(`generations`: the 2023 Arduino library) overrides what its allocator and kernels do differently. Both were
measured the same way and checked against the minimum bisected on the target.
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
GENERATIONS = ("upstream", "arduino")  # the TFLM trees whose allocation the rules describe (engine.tflm_link layouts)


@functools.lru_cache(maxsize=1)
def rules() -> dict:
    return json.loads(DATA.read_text())


def generation_rules(generation: str = "upstream") -> dict:
    """The rules of one TFLM generation: the file's (the Python interpreter's tflite-micro) with that generation's
    overrides (`generations.<name>`: top-level sizes replaced; per operator and per kernel set, the keys it names
    replace the base operator's, a Prepare list replacing every Prepare variant)."""
    base = rules()
    if generation == "upstream":
        return base
    over = base.get("generations", {}).get(generation)
    if over is None:
        raise KeyError(f"TFLM generation {generation}")
    r = {k: v for k, v in base.items() if k not in ("ops", "kernel_sets", "generations")}
    r.update({k: v for k, v in over.items() if k not in ("ops", "kernel_sets", "_about")})
    r["ops"] = _merge_ops(base["ops"], over.get("ops", {}))
    r["kernel_sets"] = {}
    for name, ks in base.get("kernel_sets", {}).items():
        oks = over.get("kernel_sets", {}).get(name, {})
        r["kernel_sets"][name] = {**{k: v for k, v in ks.items() if k != "ops"},
                                  **{k: v for k, v in oks.items() if k != "ops"},
                                  "params": {**ks.get("params", {}), **oks.get("params", {})},
                                  "ops": _merge_ops(ks.get("ops", {}), oks.get("ops", {}), add=True)}
    return r


def _merge_ops(base: dict, over: dict, add: bool = False) -> dict:
    ops = {k: dict(v) for k, v in base.items()}
    for op, o in over.items():
        if op not in ops and not add:
            continue  # a generation never adds an operator the base rules do not describe
        b = ops.setdefault(op, {})
        if any(k.startswith("prepare") for k in o):
            for k in [k for k in b if k.startswith("prepare")]:
                del b[k]
        if any(k.startswith("scratch") for k in o):
            for k in [k for k in b if k.startswith("scratch")]:
                del b[k]
        b.update(o)
    return ops


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


def _ops(kernels: str, generation: str = "upstream") -> tuple[dict, dict]:
    """(per-operator rules, kernel-set parameters) of a kernel set: the reference rules with that set's overrides."""
    r = generation_rules(generation)
    ops = {k: dict(v) for k, v in r["ops"].items()}
    if kernels == "reference":
        return ops, {}
    ks = r.get("kernel_sets", {}).get(kernels)
    if ks is None:
        raise KeyError(f"kernel set {kernels}")
    return _merge_ops(ops, ks["ops"], add=True), dict(ks.get("params", {}))


# ------------------------------------------------------------------------------------ scratch buffers
def _pad(stride: int, dilation: int, in_size: int, k: int, out_size: int) -> int:
    """TFLM's ComputePaddingWithOffset: the leading padding of one spatial axis."""
    total = (out_size - 1) * stride + (k - 1) * dilation + 1 - in_size
    return max(total, 0) // 2


def _conv_geometry(sg, node) -> dict:
    """Input, filter and output dimensions, strides, dilations and padding of a conv or depthwise node (NHWC)."""
    i, w, o = (sg.tensors[node.inputs[0]], sg.tensors[node.inputs[1]], sg.tensors[node.outputs[0]])
    opt = node.options
    if opt is None or len(i.shape) != 4 or len(w.shape) != 4 or len(o.shape) != 4:
        raise KeyError("a convolution whose shapes or options this model cannot read")
    sh, sw = int(opt.strideH or 1), int(opt.strideW or 1)
    dh, dw = int(getattr(opt, "dilationHFactor", 1) or 1), int(getattr(opt, "dilationWFactor", 1) or 1)
    g = {"n": i.shape[0], "in_h": i.shape[1], "in_w": i.shape[2], "in_c": i.shape[3], "kh": w.shape[1], "kw": w.shape[2],
         "filter_c": w.shape[3], "out_h": o.shape[1], "out_w": o.shape[2], "out_c": o.shape[3],
         "sh": sh, "sw": sw, "dh": dh, "dw": dw}
    g["pad_h"] = _pad(sh, dh, g["in_h"], g["kh"], g["out_h"])
    g["pad_w"] = _pad(sw, dw, g["in_w"], g["kw"], g["out_w"])
    return g


def _scratch_size(name: str, sg, node, params: dict) -> int:
    """Bytes of one scratch-buffer request (0: the kernel requests none). Named after the code that sizes it."""
    t = sg.tensors
    if name == "mean_accumulator":  # reduce_common.cc: int32 per output element
        return 4 * t[node.outputs[0]].elements
    if name == "mean_input_iter":  # an int per input dimension
        return 4 * len(t[node.inputs[0]].shape)
    if name == "mean_axis":  # an int per reduced axis
        return 4 * t[node.inputs[1]].elements
    if name == "cmsis_conv_s8":  # arm_convolve_wrapper_s8_get_buffer_size (DSP: Cortex-M4/M7/M33)
        g = _conv_geometry(sg, node)
        one = (g["kh"] == 1 and g["kw"] == 1 and g["pad_h"] == 0 and g["pad_w"] == 0 and g["dh"] == 1 and g["dw"] == 1
               and g["in_c"] == g["filter_c"])
        if one and (params.get("conv_1x1_no_buffer") == "any_stride" or (g["sh"] == 1 and g["sw"] == 1)):
            return 0  # arm_convolve_1x1_s8(_fast): no im2col
        cols = g["in_c"] * g["kh"] * g["kw"]
        a = int(params.get("conv_cols_align", 1))
        cols = -(-cols // a) * a
        return 2 * cols * 2  # two im2col columns of int16
    if name == "cmsis_dw_s8":  # arm_depthwise_conv_wrapper_s8_get_buffer_size (DSP)
        g = _conv_geometry(sg, node)
        if not (g["in_c"] == g["out_c"] and g["n"] == 1 and g["dh"] == 1 and g["dw"] == 1):
            return 0  # arm_depthwise_conv_s8 (channel multiplier > 1): no buffer
        if params.get("dw_3x3_no_buffer") and g["kh"] == 3 and g["kw"] == 3 and g["pad_h"] <= 1 and g["pad_w"] <= 1:
            return 0  # arm_depthwise_conv_3x3_s8
        return g["in_c"] * g["kh"] * g["kw"] * 2
    if name == "cmsis_avgpool_s8":  # arm_avgpool_s8_get_buffer_size (DSP): an int32 per channel
        return 4 * t[node.inputs[0]].shape[-1]
    if name == "cmsis_fc_conv1x1_per_tensor":  # fully_connected.cc: per-tensor weights faked per channel for conv 1x1
        o, w = t[node.outputs[0]], t[node.inputs[1]]
        if len(o.shape) > 2 and w.shape[-1] % 4 == 0 and len(w.scales) <= 1:
            return 8 * o.shape[-1]
        return 0
    raise ValueError(f"unknown scratch rule {name!r}")


def scratch_requests(info, kernels: str = "reference", generation: str = "upstream") -> list[tuple[int, int]]:
    """The scratch-buffer requests of AllocateTensors, in request order: [(operator index, bytes)].

    Raises KeyError for an operator the rules do not cover (or a scratch request of unknown size)."""
    sg = info.main
    ops, params = _ops(kernels, generation)
    out = []
    for node in sg.operators:
        if node.op not in ops:
            raise KeyError(node.op)
        rule = ops[node.op]
        kind = _compute_dtype(sg, node)
        names = rule.get(f"scratch_{kind}", rule.get("scratch", []))
        if isinstance(names, int):
            if names:
                raise KeyError(f"{node.op} (scratch buffers of unknown size)")
            names = []
        for name in names:
            n = _scratch_size(name, sg, node, params)
            if n > 0:
                out.append((node.index, n))
    return out


def plan(info, scratch: list[tuple[int, int]]) -> int:
    """The head TFLM's GreedyMemoryPlanner plans for the model's activations and these scratch buffers (bytes).

    AllocationInfoBuilder's lifetimes (inputs from scope 0, each operator its own scope, outputs to the last) and
    the planner's placement: buffers sorted by size (largest first, ties in reverse order of adding), each put in
    the first gap between buffers alive at the same time, sizes rounded up to 16."""
    sg = info.main
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i in sg.inputs:
        first.setdefault(i, 0)
        last[i] = 0
    scope = 0
    for node in sg.operators:
        scope += 1
        for i in node.outputs:
            first.setdefault(i, scope)
        for i in node.inputs:
            if i >= 0:
                last[i] = scope
        for i in node.outputs:
            last[i] = scope
    for i in sg.outputs:
        first.setdefault(i, scope)
        last[i] = scope
    bufs = []  # (size, first, last) in the order AllocationInfo lists them: tensors, then scratch buffers
    for t in sg.tensors:
        if t.is_constant or t.is_variable or t.nbytes == 0:
            continue
        bufs.append((-(-t.nbytes // 16) * 16, first.get(t.index, -1), last.get(t.index, -1)))
    for op_index, n in scratch:
        bufs.append((-(-n // 16) * 16, op_index + 1, op_index + 1))
    if not bufs:
        return 0
    order = list(range(len(bufs)))[::-1]  # filled from the tail: ties stay in reverse order (a stable sort)
    order.sort(key=lambda b: -bufs[b][0])
    placed: list[tuple[int, int]] = []  # (offset, buffer), by offset
    for b in order:
        size, f, la = bufs[b]
        offset = 0
        for off, p in placed:
            _, pf, pl = bufs[p]
            if pf > la or f > pl:
                continue  # not alive at the same time
            if off - offset >= size:
                break
            offset = max(offset, off + bufs[p][0])
        placed.append((offset, b))
        placed.sort(key=lambda e: e[0])
    return max(off + bufs[b][0] for off, b in placed)


def sequence(info, head: int, kernels: str = "reference", generation: str = "upstream",
             scratch: list[tuple[int, int]] | None = None) -> tuple[list[tuple], dict]:
    """The 32-bit allocation events of AllocateTensors for this model (engine.tflite.ModelInfo).

    `head` is the planned head (activations and scratch buffers); `scratch` the scratch requests (default: the
    kernel set's, scratch_requests). Returns (events, facts) with facts {n_tensors, n_ops, n_scratch, n_planned,
    n_persistent_buffers}; raises KeyError(op) for an operator the rules do not cover.
    """
    r = generation_rules(generation)
    if len(info.subgraphs) != 1:
        raise KeyError("several subgraphs")
    sg = info.main
    ops, params = _ops(kernels, generation)
    for node in sg.operators:
        if node.op not in ops:
            raise KeyError(node.op)
    if kernels != "reference" and any(t.dtype == "INT16" and not t.is_constant for t in sg.tensors):
        raise KeyError(f"int16 activations with {kernels} kernels")
    if any(t.dtype == "INT4" for t in sg.tensors):
        raise KeyError("int4 weights")  # unpacked into scratch buffers the rules do not size
    if scratch is None:
        scratch = scratch_requests(info, kernels, generation)
    per_op = {}
    for op_index, _n in scratch:
        per_op[op_index] = per_op.get(op_index, 0) + 1
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
            if step == "i*":  # every input in turn
                ev += [e for i in node.inputs if i >= 0 for e in _temp_tensor(sg.tensors[i], r)]
            elif step[0] in "io":  # a tensor the kernel reads: i<k> input k, o<k> output k
                idx = (node.inputs if step[0] == "i" else node.outputs)
                k = int(step[1:])
                if k < len(idx) and idx[k] >= 0:
                    ev += _temp_tensor(sg.tensors[idx[k]], r)
            elif step == "per_input":  # a float scale and an int32 zero point per input (2023 int8 CONCATENATION)
                ev += [("P", 4 * len(node.inputs), 16, "opdata"), ("P", 4 * len(node.inputs), 16, "opdata")]
                n_pbuf += 2
            elif step == "per_channel":  # per-channel multiplier and shift arrays (int32 x channels)
                ev += [("P", 4 * c, 16, "opdata"), ("P", 4 * c, 16, "opdata")]
                n_pbuf += 2
            elif step == "per_channel_if_scales":  # fully connected: only with per-channel weights
                if scales > 1:
                    ev += [("P", 4 * scales, 16, "opdata"), ("P", 4 * scales, 16, "opdata")]
                    n_pbuf += 2
            elif step == "per_channel_if_conv1x1":  # CMSIS-NN 2023 fully connected run as a 1x1 convolution
                o, w = sg.tensors[node.outputs[0]], sg.tensors[node.inputs[1]]
                if kind == "int8" and len(o.shape) > 2 and w.shape[-1] % 4 == 0:
                    ev += [("P", 4 * o.shape[-1], 16, "opdata"), ("P", 4 * o.shape[-1], 16, "opdata")]
                    n_pbuf += 2
            else:
                raise ValueError(f"unknown prepare step {step!r}")
        n_scratch += per_op.get(node.index, 0)
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


def predict(model_bytes: bytes, host_alloc: dict, kernels: str = "reference",
            generation: str = "upstream") -> dict[str, Any]:
    """{exact, target32_bytes, final32_bytes, split, why} from the model and the host's allocation report, for a
    kernel set of a TFLM generation (GENERATIONS).

    The host runs the reference kernels of the upstream generation: its allocation counts must agree with those
    rules. Another kernel set requests other scratch buffers, so its head is planned again (`plan`) after the same
    planner has reproduced the host's head from the reference kernels' requests; when it does not, the figure is
    not exact (the caller keeps an upper bound).
    """
    from . import tflite as tflite_info

    info = tflite_info.parse(model_bytes)
    cats = host_alloc.get("categories", {})
    head = int(host_alloc.get("head", 0))
    try:
        ref_scratch = scratch_requests(info, "reference", "upstream")
        events, facts = sequence(info, head, "reference", "upstream", ref_scratch)
    except KeyError as e:
        return {"exact": False, "why": f"no measured 32-bit allocation rules for {e.args[0]}"}
    # the host's run must be the model the rules describe
    checks = {
        "TfLiteEvalTensor data": facts["n_tensors"],
        "NodeAndRegistration struct": facts["n_ops"],
        "Persistent buffer data": facts["n_persistent_buffers"],
    }
    for cat, n in checks.items():
        got = cats.get(cat, {}).get("count", 0)
        if cat == "NodeAndRegistration struct" and got == 0:
            continue
        if got != n:
            return {"exact": False, "why": f"the host's {cat!r} count is {got}, the 32-bit rules expect {n}"}
    if (kernels, generation) != ("reference", "upstream"):
        try:
            scratch = scratch_requests(info, kernels, generation)
            planned = plan(info, ref_scratch)
            if planned != head:
                return {"exact": False, "why": f"TFLM's memory planner replayed gives {planned} B of activations and "
                                               f"scratch buffers, the host's run {head} B",
                        "scratch": scratch}
            head = planned if scratch == ref_scratch else plan(info, scratch)
            events, facts = sequence(info, head, kernels, generation, scratch)
        except KeyError as e:
            return {"exact": False, "why": f"no measured 32-bit allocation rules for {e.args[0]} ({kernels} kernels, "
                                           f"{generation} TFLM)"}
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
