"""The real TFLite Micro interpreter (tflite-micro's Python build), always in a child process.

One runner for every stage that needs TFLM: `run` (outputs of a whole split, one sample at a time:
evaluate and the AOT proof), `measure` (the minimum arena by bisection and its 32-bit figure:
analyze), `probe` (does the model run in N bytes?). TFLM aborts the process on some failures (an
arena too small for its own bookkeeping segfaults), so every call happens in a child process
(`python -m <this package>.engine.tflm ...`): a crash becomes a recorded error, not a dead build.

How the arena measurement works (details and the derivation in docs/analysis.md):

* The tflite-micro Python interpreter (`runtime.Interpreter.from_bytes(model, arena_size=N)`) runs
  `AllocateTensors()` in its constructor. Too small an arena (or an op without a kernel) makes the
  constructor raise `RuntimeError("TFLM failed to allocate tensors")`; the reason is printed by
  TFLM's `MicroPrintf` on the C-level stderr (fd 2), e.g. "Failed to allocate tail memory" or
  "Didn't find op for builtin opcode 'TILE'". We capture fd 2 around every attempt.
* Every probe also sets zero inputs and invokes once, so "allocates" means "runs".
* The whole search runs in a child Python process: a malformed model
  that crashes TFLM kills the child, not the build.
* Bisection over multiples of 16 bytes (TFLM aligns to 16) finds the smallest arena that runs;
  `size - 16` fails.

The host is 64-bit. TFLM's bookkeeping structs hold pointers, so the host arena overstates a
Cortex-M arena. `target32_bytes` is derived from the allocation report (`print_allocations()`)
of the minimal run, category by category:

* non-persistent head (activation tensors and kernel scratch buffers): unchanged;
* TfLiteEvalTensor 24 -> 12 bytes, NodeAndRegistration 64 -> 32 bytes, persistent TfLiteTensor
  64 -> 40 bytes, TfLiteAffineQuantization 24 -> 12 bytes (exact struct sizes; the counts come
  from the report);
* 'Persistent buffer data' (kernel OpData, I/O pointer arrays): kept at the host size, an upper
  bound (kernel structs mix ints and pointers; wasm32 measurements put them at 67-80 %);
* the unrecorded tail (allocator, memory planner and interpreter objects placed in the arena):
  scaled by 0.6 (wasm32 TFLM measures 0.49-0.59 of the host figure);
* the extra temporary memory that only the planning step of AllocateTensors needs (the minimal
  arena minus the final head + tail): its AllocationInfo records shrink 32 -> 20 bytes per tensor.

The result is checked against mcufit's wasm32 TFLM build in tests/test_arena.py.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .errors import TinyMLError

CHILD_MODULE = __name__  # run as `python -m` in the child: derived, never spelled
RUN_TIMEOUT_S = 1800

ALIGN = 16
MAX_ARENA = 512 * 1024 * 1024

# 64-bit host -> 32-bit target sizes of TFLM structs (TF_LITE_STATIC_MEMORY build)
EVAL_TENSOR = (24, 12)
NODE_AND_REGISTRATION = (64, 32)
TFLITE_TENSOR = (64, 40)
AFFINE_QUANTIZATION = (24, 12)
ALLOCATION_INFO = (32, 20)
UNRECORDED_TAIL_FACTOR = 0.6

# TFLM's own out-of-memory messages (case-sensitive: the Python wrapper's "TFLM failed to allocate
# tensors" follows every failure and says nothing about the cause)
_MEMORY_SHORT_RE = re.compile(r"Failed to allocate|Failed to resize buffer|missing: \d+|Too many buffers|too small")
_NOT_MEMORY_RE = re.compile(r"Didn't find op|Failed to get registration|not supported|failed to prepare")
UNSUPPORTED_OP_RE = re.compile(r"Didn't find op for (?:builtin opcode '([^']+)'|custom opcode '([^']+)')")


def ceil16(n: float) -> int:
    return int(math.ceil(n / ALIGN) * ALIGN)


# ---------------------------------------------------------------------------------------------
# child process: every TFLM call happens here
# ---------------------------------------------------------------------------------------------

def _run_once(model: bytes, size: int, report: bool) -> bool:
    """Construct (AllocateTensors), set zero inputs, invoke once. TFLM prints to fd 2."""
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime

    try:
        it = runtime.Interpreter.from_bytes(model, arena_size=size)
        i = 0
        while True:
            try:
                d = it.get_input_details(i)
            except Exception:
                break
            it.set_input(np.zeros(d["shape"], dtype=d["dtype"]), i)
            i += 1
        it.invoke()
        if report:
            it.print_allocations()
        return True
    except (RuntimeError, ValueError) as e:
        sys.stderr.write(f"python: {e}\n")
        sys.stderr.flush()
        return False


def _probe(model: bytes, size: int, report: bool = False) -> tuple[bool, str]:
    """One attempt in a forked process: (runs?, everything TFLM printed).

    TFLM's host build can crash (SIGSEGV) on some out-of-memory paths instead of returning an
    error; a crash counts as "does not run at this size" and is said so in the message.
    """
    import numpy  # noqa: F401  (imported before fork: each probe then costs a fork, not an import)
    from tflite_micro.python.tflite_micro import runtime  # noqa: F401

    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # grandchild
        os.close(r)
        os.dup2(w, 1)
        os.dup2(w, 2)
        ok = False
        try:
            ok = _run_once(model, size, report)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0 if ok else 1)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as f:
        for chunk in iter(lambda: f.read(65536), b""):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode("utf-8", "replace")
    if os.WIFSIGNALED(status):
        text += f"\n(TFLM host build crashed with signal {os.WTERMSIG(status)} at arena {size} bytes)"
        return False, text
    return os.WEXITSTATUS(status) == 0, text


def _first_size(model: bytes) -> int:
    """A generous first arena: room for every non-constant tensor twice, plus 1 MiB."""
    try:
        from . import tflite as tflite_info

        info = tflite_info.parse(model)
        act = sum(t.nbytes for sg in info.subgraphs for t in sg.tensors if not t.is_constant)
    except Exception:
        act = 0
    return ceil16(max(1 << 20, 2 * act + (1 << 20)))


def _child(model_path: str) -> dict[str, Any]:
    model = Path(model_path).read_bytes()
    hi = _first_size(model)
    ok, msg = _probe(model, hi)
    while not ok:
        if not _MEMORY_SHORT_RE.search(msg) or _NOT_MEMORY_RE.search(msg) or hi >= MAX_ARENA:
            return {"ok": False, "message": msg.strip(), "arena_tried": hi}
        hi *= 4
        ok, msg = _probe(model, hi)
    # lo always fails: below ~470 bytes the allocator's own objects do not fit (and the host
    # build segfaults, its DCHECKs being compiled out); no model with an op fits in 512. hi runs.
    lo, last_msg = 512, ""
    while hi - lo > ALIGN:
        mid = ceil16((lo + hi) // 2)
        if mid >= hi:
            mid = hi - ALIGN
        ok, msg = _probe(model, mid)
        if ok:
            hi = mid
        else:
            lo, last_msg = mid, msg
    ok, report = _probe(model, hi, report=True)
    if not ok:  # pragma: no cover - deterministic allocator; would be a TFLM bug
        return {"ok": False, "message": "allocation not reproducible at %d bytes: %s" % (hi, report)}
    return {"ok": True, "host_bytes": hi, "report": report, "fail_below_message": last_msg.strip()}


def _child_probe(model_path: str, size: int) -> dict[str, Any]:
    ok, msg = _probe(Path(model_path).read_bytes(), size)
    return {"ok": ok, "message": msg}


# ---------------------------------------------------------------------------------------------
# parent: run the child, parse the report, derive the 32-bit figure
# ---------------------------------------------------------------------------------------------

_LINE_TOTALS = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_LINE_CAT = re.compile(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+) ")


def parse_allocations(report: str) -> dict[str, Any]:
    """Parse RecordingMicroAllocator::PrintAllocations() output into totals and categories."""
    out: dict[str, Any] = {"categories": {}}
    for kind, n in _LINE_TOTALS.findall(report):
        out[kind] = int(n)
    for name, used, requested, count in _LINE_CAT.findall(report):
        out["categories"][name] = {"used": int(used), "requested": int(requested), "count": int(count)}
    if "total" not in out:
        raise RuntimeError(f"no allocation report from TFLM:\n{report[-800:]}")
    return out


def derive_target32(host_bytes: int, alloc: dict[str, Any]) -> dict[str, Any]:
    """32-bit arena from the 64-bit host measurement; see the module docstring."""
    cats = alloc["categories"]

    def c(name):
        return cats.get(name, {"used": 0, "requested": 0, "count": 0})

    ev, nodes, tens = c("TfLiteEvalTensor data"), c("NodeAndRegistration struct"), c("Persistent TfLiteTensor data")
    quant, pbuf = c("Persistent TfLiteTensor quantization data"), c("Persistent buffer data")
    var = c("TfLiteTensor variable buffer data")
    head, tail = alloc.get("head", 0), alloc.get("tail", 0)
    recorded = sum(v["used"] for v in cats.values())
    unrecorded = max(0, tail - recorded)
    n_eval = ev["count"]
    n_quant_structs = quant["count"] // 2  # struct + zero-point array per quantised tensor

    tail32 = (
        n_eval * EVAL_TENSOR[1]
        + nodes["count"] * NODE_AND_REGISTRATION[1]
        + tens["count"] * TFLITE_TENSOR[1]
        + quant["used"] - n_quant_structs * (AFFINE_QUANTIZATION[0] - AFFINE_QUANTIZATION[1])
        + pbuf["used"]
        + var["used"]
        + sum(v["used"] for k, v in cats.items() if k not in {
            "TfLiteEvalTensor data", "NodeAndRegistration struct", "Persistent TfLiteTensor data",
            "Persistent TfLiteTensor quantization data", "Persistent buffer data",
            "TfLiteTensor variable buffer data"})
        + int(math.ceil(unrecorded * UNRECORDED_TAIL_FACTOR))
    )
    planning_extra = max(0, host_bytes - alloc["total"])
    planning32 = max(0, planning_extra - n_eval * (ALLOCATION_INFO[0] - ALLOCATION_INFO[1]))
    target32 = head + tail32 + planning32
    return {
        "target32_bytes": int(target32),
        "split": {"activations": int(head), "persistent": int(tail32), "scratch": int(planning32)},
        "host_split": {"activations": int(head), "persistent": int(tail),
                       "scratch": int(planning_extra)},
        "final32_bytes": int(head + tail32),
    }


def run_child(model_bytes: bytes, timeout: float = 600, extra_args: list[str] | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tinyml-arena-") as d:
        p = Path(d) / "model.tflite"
        p.write_bytes(model_bytes)
        try:
            proc = subprocess.run([sys.executable, "-m", CHILD_MODULE, "arena", str(p), *(extra_args or [])],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "message": f"TFLM arena measurement timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"ok": False, "crashed": True,
                "message": f"the TFLM interpreter crashed on this model (exit {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout)[-600:].strip()}"}
    return json.loads(lines[-1])


def measure(model_bytes: bytes) -> dict[str, Any]:
    """Smallest arena the real TFLM interpreter runs this model in, on the host and for 32-bit targets.

    Returns {"host_bytes", "target32_bytes", "final32_bytes", "exact", "split": {activations, persistent,
    scratch} (32-bit), "host_split", "allocations" (parsed report), "method"}. The 32-bit figure is
    TFLM's allocator replayed for a Cortex-M from measured rules (engine.arena32: exact, equal to the
    target's own bisection) when the rules cover every operator of the model and agree with the host's
    allocation counts; otherwise the conservative derivation from the host report (`exact` false, an
    upper bound). Raises TinyMLError when TFLM cannot run the model at all (the message is TFLM's own,
    e.g. "Didn't find op for builtin opcode 'TILE'").
    """
    res = run_child(model_bytes)
    if not res.get("ok"):
        raise TinyMLError(f"TFLite Micro cannot allocate this model: {res.get('message', '')}")
    alloc = parse_allocations(res["report"])
    return {"host_bytes": int(res["host_bytes"]), "allocations": alloc,
            **target32(model_bytes, int(res["host_bytes"]), alloc)}


def target32(model_bytes: bytes, host_bytes: int, alloc: dict[str, Any]) -> dict[str, Any]:
    """The 32-bit arena from the host's measurement: exact (engine.arena32) or, failing that, an upper bound.

    {"target32_bytes", "final32_bytes", "exact", "why_not_exact", "split", "host_split", "method", "by_kernels"}:
    target32_bytes is for TFLM's reference kernels of the Python interpreter's generation (what the host runs).
    by_kernels.<reference|cmsis_nn> holds, per kernel set, `by_tflm`: the figure of each TFLM generation the rules
    describe (engine.arena32.GENERATIONS, named like engine.tflm_link tree layouts: "upstream" tflite-micro of the
    Python interpreter, "arduino" the Arduino library), each {target32_bytes, final32_bytes, exact}; and the largest
    of them (target32_bytes, final32_bytes; exact when every generation's is), what a header must reserve for that
    kernel set when it does not know which tree the firmware links. CMSIS-NN kernels need other OpData, persistent
    buffers and scratch buffers (planned again with TFLM's greedy planner), replayed with their own measured rules.
    """
    from . import arena32

    d = derive_target32(host_bytes, alloc)
    by_kernels = {}
    for kernels in ("reference", "cmsis_nn"):
        per = {}
        for gen in arena32.GENERATIONS:
            q = arena32.predict(model_bytes, alloc, kernels, gen)
            if q.get("exact"):
                per[gen] = {"target32_bytes": q["target32_bytes"], "final32_bytes": q["final32_bytes"], "exact": True}
            else:
                # an upper bound: the host-derived figure, plus every scratch buffer this kernel set requests beyond
                # the host's (when the rules know them) on top of the host's head
                extra = sum(ceil16(n) for _op, n in q.get("scratch") or ()) if kernels != "reference" else 0
                per[gen] = {"target32_bytes": d["target32_bytes"] + extra, "final32_bytes": d["final32_bytes"] + extra,
                            "exact": False, "why_not_exact": q.get("why")}
        by_kernels[kernels] = {"target32_bytes": max(v["target32_bytes"] for v in per.values()),
                               "final32_bytes": max(v["final32_bytes"] for v in per.values()),
                               "exact": all(v["exact"] for v in per.values()), "by_tflm": per}
    p = arena32.predict(model_bytes, alloc)
    if p.get("exact"):
        t32, final32, split = p["target32_bytes"], p["final32_bytes"], p["split"]
        method = ("target32_bytes: TFLM's AllocateTensors replayed for a 32-bit Cortex-M (engine/arena32.py: "
                  "allocation rules measured on the target, data/tflm_arena32.json; equals the minimal arena "
                  "bisected on QEMU's Cortex-M4 with reference kernels). by_kernels: the same replay per kernel set "
                  "(CMSIS-NN: its OpData and scratch buffers, the head planned again with TFLM's greedy planner) and "
                  "per TFLM generation (by_tflm: upstream tflite-micro, the Arduino library). host_bytes: bisection "
                  "with the tflite-micro Python interpreter on the 64-bit host (16 bytes less fails).")
    else:
        t32, final32, split = d["target32_bytes"], d["final32_bytes"], d["split"]
        method = (f"target32_bytes: an upper bound ({p.get('why')}): the host figure with TFLM's pointer-holding "
                  "structs resized to 32-bit, kernel op data kept at host size and the unrecorded allocator "
                  f"objects scaled by {UNRECORDED_TAIL_FACTOR}. host_bytes: bisection with the tflite-micro Python "
                  "interpreter on the 64-bit host. See docs/analysis.md.")
    return {"target32_bytes": int(t32), "final32_bytes": int(final32), "exact": bool(p.get("exact")),
            "why_not_exact": p.get("why") or None, "split": split, "host_split": d["host_split"], "method": method,
            "by_kernels": by_kernels}


def probe(model_bytes: bytes, arena_size: int) -> tuple[bool, str]:
    """Does the real TFLM interpreter allocate and invoke the model in `arena_size` bytes? (host)"""
    res = run_child(model_bytes, extra_args=[str(int(arena_size))])
    return bool(res.get("ok")), res.get("message", "")


def arena_bytes(target32: int, margin: float) -> int:
    """What the header and firmware reserve: the 32-bit figure plus the margin, rounded up to 16."""
    return ceil16(target32 * (1.0 + margin))


# ---------------------------------------------------------------------------------------------
# outputs of a whole split (child: `run`)
# ---------------------------------------------------------------------------------------------

def _captured(fn):
    """Run fn with the C-level stderr captured (TFLM reports its reasons there): (out, exception, text)."""
    fd = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        err = None
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001 - TFLM's RuntimeError/ValueError, reported with its text
            out, err = None, e
        finally:
            sys.stderr.flush()
            os.dup2(fd, 2)
            os.close(fd)
        tmp.seek(0)
        text = tmp.read().decode("utf-8", "replace").strip()
    return out, err, text


def _child_run(model_path: str, in_npz: str, out_npz: str, quantize_inputs: bool) -> dict[str, Any]:
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime

    from .quant import qparams, quantize

    model = Path(model_path).read_bytes()
    arena = max(64 * 1024, 4 * len(model))
    while True:
        it, err, text = _captured(lambda: runtime.Interpreter.from_bytes(model, arena_size=arena))
        if err is None:
            break
        if _MEMORY_SHORT_RE.search(text) and not _NOT_MEMORY_RE.search(text) and arena * 2 <= MAX_ARENA:
            arena *= 2
            continue
        return {"error": (text + "\n" + str(err)).strip(), "arena_size": arena}
    din, dout = it.get_input_details(0), it.get_output_details(0)
    shape = tuple(int(s) for s in din["shape"][1:])
    results = {}
    with np.load(in_npz) as z:
        for name in z.files:
            x = z[name]
            if tuple(x.shape[1:]) != shape:
                x = x.reshape((len(x),) + shape)
            if quantize_inputs:
                x = quantize(x, din["dtype"], *qparams(din))
            ys = []
            for i in range(len(x)):
                def one():
                    it.set_input(x[i:i + 1].astype(din["dtype"]), 0)
                    it.invoke()
                    return np.array(it.get_output(0), copy=True)
                y, err, text = _captured(one)
                if err is not None:
                    return {"error": (text + "\n" + str(err)).strip(), "arena_size": arena}
                ys.append(y)
            results[name] = np.concatenate(ys, axis=0) if ys else np.zeros((0,) + tuple(dout["shape"][1:]))
    np.savez(out_npz, **results)
    s_out, z_out = qparams(dout)
    return {"arena_size": arena, "output_dtype": np.dtype(dout["dtype"]).name, "output_scale": s_out,
            "output_zero_point": z_out}


def run(model_bytes: bytes, inputs: dict, *, quantize_inputs: bool = True) -> tuple[dict | None, dict]:
    """Every array of `inputs` through TFLM one sample at a time (batch 1), in a child process.

    Float inputs are quantized with the model's input parameters unless `quantize_inputs` is False
    (the arrays already hold the model's input type). Returns ({name: raw output array}, info) with
    info {"arena_size", "output_dtype", "output_scale", "output_zero_point"}, or (None, {"error": why})
    when TFLM cannot run the model. Never raises for a model TFLM refuses or crashes on.
    """
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="tinyml-tflm-") as td:
        td = Path(td)
        (td / "model.tflite").write_bytes(model_bytes)
        np.savez(td / "in.npz", **inputs)
        cmd = [sys.executable, "-m", CHILD_MODULE, "run", str(td / "model.tflite"), str(td / "in.npz"),
               str(td / "out.npz"), "1" if quantize_inputs else "0"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None, {"error": f"TFLM did not finish within {RUN_TIMEOUT_S} s"}
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            return None, {"error": f"the TFLM interpreter crashed ({why}): {tail}".strip()}
        info = json.loads(lines[-1])
        if "error" in info:
            return None, info
        with np.load(td / "out.npz") as z:
            return {k: z[k] for k in z.files}, info


def _child_tensors(model_path: str, in_npz: str, out_npz: str) -> dict[str, Any]:
    """One invoke with every tensor preserved; saves the requested tensors' values."""
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime

    model = Path(model_path).read_bytes()
    with np.load(in_npz) as z:
        sample, indices = z["sample"], [int(i) for i in z["indices"]]
    it, err, text = _captured(lambda: runtime.Interpreter.from_bytes(
        model, arena_size=max(len(model) * 10, 1 << 20),
        intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors))
    if err is not None:
        return {"error": (text + "\n" + str(err)).strip()}

    def once():
        it.set_input(sample[None, ...], 0)
        it.invoke()
        return {f"t{i}": np.asarray(it.GetTensor(i, 0)["tensor_data"]).copy() for i in indices}
    values, err, text = _captured(once)
    if err is not None:
        return {"error": (text + "\n" + str(err)).strip()}
    np.savez(out_npz, **values)
    return {"ok": True}


def tensors(model_bytes: bytes, sample, indices: list[int]) -> dict[int, Any]:
    """The value of each tensor in `indices` after one invoke on `sample` (already in the model's input
    type), from the real TFLM interpreter with every tensor preserved (a child process)."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="tinyml-tflm-") as td:
        td = Path(td)
        (td / "model.tflite").write_bytes(model_bytes)
        np.savez(td / "in.npz", sample=np.asarray(sample), indices=np.asarray(indices, dtype=np.int64))
        proc = subprocess.run([sys.executable, "-m", CHILD_MODULE, "tensors", str(td / "model.tflite"),
                               str(td / "in.npz"), str(td / "out.npz")], capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines or "error" in json.loads(lines[-1]):
            return {}
        with np.load(td / "out.npz") as z:
            return {int(k[1:]): z[k] for k in z.files}


def main(argv: list[str]) -> int:
    """Child process entry: `arena MODEL [SIZE]`, `run MODEL IN_NPZ OUT_NPZ QUANTIZE` or
    `tensors MODEL IN_NPZ OUT_NPZ`; prints one JSON line."""
    cmd, args = argv[0], argv[1:]
    if cmd == "arena":
        res = _child_probe(args[0], int(args[1])) if len(args) > 1 else _child(args[0])
    elif cmd == "run":
        res = _child_run(args[0], args[1], args[2], args[3] == "1")
    elif cmd == "tensors":
        res = _child_tensors(args[0], args[1], args[2])
    else:
        raise SystemExit(f"unknown command {cmd!r}")
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":  # child process
    sys.exit(main(sys.argv[1:]))
