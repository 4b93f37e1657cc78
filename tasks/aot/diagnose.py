"""Where an AOT build first departs from TFLM: the first operator whose output tensor differs.

When the outputs of a sample differ, `first_difference` runs that sample once more through
* the generated model compiled with -DTINYML_TRACE, whose `tinyml_trace(op, data, bytes)` hook
  receives every operator's output right after the operator ran (the offline plan may reuse its
  bytes later, so it is captured at that moment), and
* the TFLM interpreter with InterpreterConfig.kPreserveAllTensors (every intermediate tensor kept),
and compares them operator by operator in graph order. int8 tensors must be identical, float32
ones within the check's tolerance.
"""
from __future__ import annotations

import struct
from pathlib import Path

from ..engine.io import write_bytes

_TRACE_HARNESS = r"""/* AOT trace harness: one input record from argv[1]; every operator's output to argv[2] */
#include <stdio.h>
#include "@P@_model.h"

static FILE *trace_file;

void tinyml_trace(int op, const void *data, int32_t bytes) {
  const int32_t head[2] = {(int32_t)op, bytes};
  fwrite(head, sizeof head, 1, trace_file);
  fwrite(data, 1, (size_t)bytes, trace_file);
}

int main(int argc, char **argv) {
  FILE *fi;
  if (argc != 3) return 2;
  fi = fopen(argv[1], "rb");
  trace_file = fopen(argv[2], "wb");
  if (!fi || !trace_file) return 3;
  if (fread(@P@_model_input(), @P_@_INPUT_BYTES, 1, fi) != 1) return 4;
  @P@_model_run();
  fclose(fi);
  fclose(trace_file);
  return 0;
}
"""


def _aot_trace(gen_dir: Path, sample, work_dir: Path, prefix: str, variant: str) -> dict[int, bytes]:
    import numpy as np

    from .host import _run, compile_host

    work_dir.mkdir(parents=True, exist_ok=True)
    src = _TRACE_HARNESS.replace("@P_@", prefix.upper()).replace("@P@", prefix)
    exe = compile_host(gen_dir, work_dir / f"aot_trace_{variant}", prefix, variant=variant, extra=["-DTINYML_TRACE"],
                       harness_src=src)
    fin, fout = work_dir / "trace_in.bin", work_dir / "trace_out.bin"
    write_bytes(fin, np.ascontiguousarray(sample).tobytes())
    _run([str(exe), str(fin), str(fout)], "AOT trace harness")
    raw, pos, out = fout.read_bytes(), 0, {}
    while pos + 8 <= len(raw):
        op, n = struct.unpack_from("<ii", raw, pos)
        out[op] = raw[pos + 8: pos + 8 + n]
        pos += 8 + n
    return out


def _tflm_tensors(model_bytes: bytes, sample, indices: list[int]) -> dict:
    """The TFLM interpreter's value of each tensor in `indices` after one invoke (engine.tflm)."""
    from ..engine import tflm

    return tflm.tensors(model_bytes, sample, indices)


def first_difference(tflite_path: Path, gen_dir: Path, sample, work_dir: Path, *, prefix: str = "tinyml",
                     variant: str = "portable", rtol: float = 1e-5, atol: float = 1e-7) -> dict | None:
    """The first operator (graph order) whose output differs between the AOT build and TFLM for
    `sample` (already quantized to the model input's dtype): {"op", "op_name", "tensor",
    "tensor_name", "element", "aot", "tflm"}; None if every operator output agrees."""
    import numpy as np

    from .generate import _NPTYPE, load

    _, _, tensors, ops = load(tflite_path)
    aot = _aot_trace(Path(gen_dir), sample, Path(work_dir), prefix, variant)
    theirs_all = _tflm_tensors(Path(tflite_path).read_bytes(), sample, [op.outputs[0] for _, op in ops])
    for k, (name, op) in enumerate(ops):
        if k not in aot:
            continue
        t = tensors[op.outputs[0]]
        if t.dtype not in _NPTYPE:
            continue
        mine = np.frombuffer(aot[k], dtype=_NPTYPE[t.dtype]).reshape(-1)
        if op.outputs[0] not in theirs_all:
            continue
        theirs = np.asarray(theirs_all[op.outputs[0]]).reshape(-1)
        if theirs.size != mine.size:
            continue
        bad = mine != theirs if t.dtype != "float32" else ~np.isclose(mine, theirs, rtol=rtol, atol=atol)
        if bad.any():
            j = int(np.nonzero(bad)[0][0])
            conv = float if t.dtype == "float32" else int
            return {"op": k, "op_name": name, "tensor": int(op.outputs[0]), "tensor_name": t.name, "element": j,
                    "aot": conv(mine[j]), "tflm": conv(theirs[j])}
    return None


def describe(d: dict | None) -> str:
    if d is None:
        return "every operator output agrees with TFLM on that sample when traced"
    return (f"the first differing tensor is '{d['tensor_name']}' (tensor #{d['tensor']}, output of operator "
            f"#{d['op']} {d['op_name']}), element {d['element']}: AOT {d['aot']!r} vs TFLM {d['tflm']!r}")
