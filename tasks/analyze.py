"""analyze stage: .tflite -> analysis.json (sizes, ops, params, MACs, TFLM compatibility, arena, layers).

`run(tflite_path, out_json, arena_margin=0.10)` writes analysis.json as docs/ARTIFACTS.md says.
Never imports TensorFlow: the flatbuffer is read with LiteRT's schema module (engine.tflite) and
the arena is measured with the real TFLite Micro interpreter in a child process (engine.tflm).
An incompatible model still gets an analysis: `tflm_compatible` false, its problems, arena null.
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

from .engine import artifacts, compat
from .engine import tflite as tflite_info
from .engine.errors import TinyMLError
from .engine.tflm import arena_bytes, target32


def analyze_bytes(data: bytes, *, arena_margin: float = 0.10, path: str | Path | None = None) -> dict[str, Any]:
    if not isinstance(arena_margin, (int, float)) or arena_margin < 0 or arena_margin > 10:
        raise TinyMLError(f"arena_margin must be a fraction between 0 and 10 (0.10 = 10 %), got {arena_margin!r}")
    info = tflite_info.parse(data, path)
    compatible, problems, measured = compat.check(data, info)
    if measured is not None:  # the 32-bit figure: exact where the measured rules cover the model
        measured.update(target32(data, measured["host_bytes"], measured["allocations"]))
    rows, peak = tflite_info.layers(info)
    arena = None
    if measured is not None:
        # what the header reserves: enough for whichever kernel set and TFLM generation the firmware links (the
        # largest exact figure of by_kernels.<set>.by_tflm), plus the margin
        figures = [("reference", "upstream", measured["target32_bytes"])] + [
            (k, g, v["target32_bytes"]) for k, fig in (measured.get("by_kernels") or {}).items()
            for g, v in (fig.get("by_tflm") or {"": fig}).items()]
        largest = max(figures, key=lambda f: f[2])
        arena = {
            "host_bytes": measured["host_bytes"],
            "target32_bytes": measured["target32_bytes"],
            "margin": float(arena_margin),
            "bytes": arena_bytes(largest[2], float(arena_margin)),
            "bytes_for": {"kernels": largest[0], "tflm": largest[1] or None, "target32_bytes": int(largest[2])},
            "by_kernels": measured.get("by_kernels"),
            "final32_bytes": measured["final32_bytes"],
            "exact": measured["exact"],
            "split": measured["split"],
            "host_split": measured["host_split"],
            "method": measured["method"],
        }
        if not measured["exact"]:
            arena["why_not_exact"] = measured["why_not_exact"]
    inp, out = info.io_tensor("input"), info.io_tensor("output")
    return {
        "tflite_bytes": info.tflite_bytes,
        "tflite_gzip_bytes": len(gzip.compress(data, compresslevel=9, mtime=0)),
        "flatbuffer": {"data_bytes": info.data_bytes, "non_data_bytes": info.non_data_bytes},
        "ops": info.ops(),
        "op_count": len(info.ops()),
        "n_subgraphs": len(info.subgraphs),
        "input": tflite_info.io_description(inp),
        "output": tflite_info.io_description(out),
        "inputs": [tflite_info.io_description(info.main.tensors[i]) for i in info.main.inputs],
        "outputs": [tflite_info.io_description(info.main.tensors[i]) for i in info.main.outputs],
        "params": tflite_info.params(info),
        "macs": tflite_info.macs(info),
        "hybrid": bool(tflite_info.hybrid_ops(info)),
        "float16": tflite_info.is_float16(info),
        "arena": arena,
        "arena_margin": float(arena_margin),
        "tflm_compatible": bool(compatible),
        "problems": problems,
        "layers": rows,
        "peak_layer": peak,
        "peak_alive_bytes": rows[peak]["alive_bytes"] if peak is not None else 0,
    }


def run(tflite_path: Path, out_json: Path, *, arena_margin: float = 0.10) -> dict[str, Any]:
    tflite_path = Path(tflite_path)
    if not tflite_path.is_file():
        raise TinyMLError(f"analyze: {tflite_path} does not exist; run the convert stage first (doit convert)")
    record = artifacts.Analysis(**analyze_bytes(tflite_path.read_bytes(), arena_margin=arena_margin,
                                                path=tflite_path))
    artifacts.write(out_json, record)
    result = record.to_dict()
    return result
