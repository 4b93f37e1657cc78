"""header stage: .tflite + analysis.json -> model_data.h / model_data.cc for a PlatformIO sketch.

model_data.cc holds `alignas(16) const unsigned char g_model[]` (12 bytes a line) and `g_model_len`;
model_data.h holds the arena size, the op list, a MicroMutableOpResolver helper (under
TINYML_HAVE_TFLM) and provenance constants a sketch can use and a person can read.
The bytes are deterministic: identical inputs give identical files (no timestamps, no paths).
"""
from __future__ import annotations

import hashlib
import math
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__ as PLUGIN_VERSION
from .engine import artifacts
from .engine.compat import resolver_method
from .engine.errors import TinyMLError
from .engine.io import write_text
from .engine.tflm import arena_bytes

BYTES_PER_LINE = 12


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def c_string(s: Any) -> str:
    """A C string literal; non-ASCII and control characters escaped (deterministic)."""
    out = []
    for ch in str(s):
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "?":
            out.append("\\?")  # no trigraphs
        elif 32 <= o < 127:
            out.append(ch)
        else:
            for b in ch.encode("utf-8"):
                out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def c_float(x: Any) -> str:
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        raise TinyMLError(f"header: cannot write {x} as a C float constant (normalisation or scale is not finite); "
                          "check the dataset's normalisation statistics")
    s = repr(float(f"{x:.9g}"))
    if "e" not in s and "." not in s:
        s += ".0"
    return s + "f"


def _ident(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", s).upper()


def _comment(s: Any) -> str:
    return str(s).replace("*/", "* /").replace("\n", " ")


def _float_array(name: str, values: list[float]) -> str:
    body = ",\n".join("    " + ", ".join(c_float(v) for v in values[i:i + 6]) for i in range(0, len(values), 6))
    return f"const float {name}[{len(values)}] = {{\n{body}\n}};\n"


def _flat(v) -> list[float] | None:
    if v is None:
        return None
    out: list[float] = []

    def rec(x):
        if isinstance(x, (list, tuple)):
            for y in x:
                rec(y)
        else:
            out.append(float(x))

    rec(v)
    return out


def _arena_figures(arena: dict) -> str:
    """"reference: upstream 1328, arduino 1120; cmsis_nn: ..." from analysis.json's arena.by_kernels ("" without)."""
    parts = []
    for k, fig in sorted((arena.get("by_kernels") or {}).items()):
        per = fig.get("by_tflm") or {}
        each = ", ".join(f"{g} {int(v['target32_bytes'])}{'' if v.get('exact') else ' (upper bound)'}"
                         for g, v in sorted(per.items(), key=lambda kv: kv[0] != "upstream"))
        parts.append(f"{k}: {each or int(fig['target32_bytes'])}")
    return _comment("; ".join(parts))


def _largest(arena: dict) -> int:
    """The figure TINYML_ARENA_SIZE is derived from (analysis.json arena.bytes_for)."""
    return int((arena.get("bytes_for") or {}).get("target32_bytes") or max(
        [int(arena["target32_bytes"])] + [int(k["target32_bytes"]) for k in (arena.get("by_kernels") or {}).values()]))


def render(model: bytes, analysis: dict[str, Any], provenance: dict[str, Any]) -> tuple[str, str]:
    """(model_data.h text, model_data.cc text)."""
    arena = analysis.get("arena")
    problems = analysis.get("problems") or []
    compatible = bool(arena)
    if not arena:
        # TFLM cannot run this variant (hybrid, missing op, ...). Keep it buildable for comparison: the
        # header still compiles, marks itself incompatible and sizes the arena from the activation peak
        # (an estimate: no TFLM allocator could measure it). The report shows the variant as incompatible.
        margin = float(analysis.get("arena_margin", 0.10))
        peak = int(analysis.get("peak_alive_bytes") or 0)
        est = arena_bytes(peak, margin) or 16
        arena = {"bytes": est, "target32_bytes": est, "host_bytes": None, "margin": margin, "estimate": True}
    ops: list[str] = list(analysis.get("ops") or [])
    sha = hashlib.sha256(model).hexdigest()
    inp, outp = analysis.get("input") or {}, analysis.get("output") or {}
    labels = provenance.get("class_names")
    norm_a, norm_b = _flat(provenance.get("norm_a")), _flat(provenance.get("norm_b"))
    if (norm_a is None) != (norm_b is None) or (norm_a is not None and len(norm_a) != len(norm_b)):
        raise TinyMLError("header: provenance norm_a and norm_b must both be lists of the same length, or both None "
                          f"(got {0 if norm_a is None else len(norm_a)} and {0 if norm_b is None else len(norm_b)} values)")
    model_name, variant = str(provenance.get("model", "")), str(provenance.get("variant", ""))

    def scalar(v, default=0.0):
        if isinstance(v, list):
            return v[0] if v else default
        return default if v is None else v

    h: list[str] = []
    w = h.append
    w("// Generated by doit-tinyml's header stage. Do not edit: `doit` rewrites it.\n")
    w(f"// model {_comment(model_name)}, variant {_comment(variant)}: {len(model)} bytes of .tflite,"
      f" sha256 {sha}\n")
    w("#ifndef TINYML_MODEL_DATA_H_\n#define TINYML_MODEL_DATA_H_\n\n")
    w("// ---- the model flatbuffer (in model_data.cc) ----\n")
    w("extern const unsigned char g_model[];\nextern const unsigned int g_model_len;\n")
    w(f"#define TINYML_MODEL_LEN {len(model)}\n\n")
    w("// ---- TFLite Micro compatibility ----\n")
    w(f"#define TINYML_TFLM_COMPATIBLE {1 if compatible else 0}\n")
    for p in problems:
        what = p.get("op") or p.get("tensor") or "model"
        w(f"// {'problem' if not compatible else 'note'}: {_comment(str(what))}: {_comment(str(p.get('message')))}"
          f" -- fix: {_comment(str(p.get('fix')))}\n")
    w("\n// ---- tensor arena ----\n")
    if compatible:
        w(f"// TFLite Micro arena measured for a 32-bit target: {arena['target32_bytes']} bytes\n")
        figures = _arena_figures(arena)
        if figures:  # per kernel set and TFLM generation: the header reserves the largest, whichever the firmware links
            w(f"// with reference kernels; per kernel set and TFLM: {figures}\n")
            w(f"// TINYML_ARENA_SIZE: the largest, {_largest(arena)} bytes (64-bit host measurement: "
              f"{arena.get('host_bytes')} bytes), plus a margin of {float(arena['margin']) * 100:g} %, rounded up to 16.\n")
        else:
            w(f"// (64-bit host measurement: {arena.get('host_bytes')} bytes), plus a margin of "
              f"{float(arena['margin']) * 100:g} %, rounded up to 16.\n")
    else:
        w("// ESTIMATE: TFLite Micro cannot run this model, so no arena was measured. This is the peak of\n")
        w(f"// live activation bytes plus a margin of {float(arena['margin']) * 100:g} %, for size comparison only.\n")
    w(f"#define TINYML_ARENA_SIZE {int(arena['bytes'])}\n")
    w(f"#define TINYML_ARENA_TARGET32_BYTES {int(arena['target32_bytes'])}\n\n")
    w("// ---- operators the model uses ----\n")
    w(f"#define TINYML_OP_COUNT {len(ops)}\n")
    w("extern const char *const g_model_ops[TINYML_OP_COUNT];\n\n")
    w("// ---- provenance ----\n")
    w(f"#define TINYML_MODEL_NAME {c_string(model_name)}\n")
    w(f"#define TINYML_VARIANT_NAME {c_string(variant)}\n")
    w(f"#define TINYML_MODEL_SHA256 {c_string(sha)}\n")
    w(f"#define TINYML_SETTINGS_HASH {c_string(provenance.get('settings_hash') or '')}\n")
    w(f"#define TINYML_PLUGIN_VERSION {c_string(PLUGIN_VERSION)}\n")
    w(f"#define TINYML_TENSORFLOW_VERSION {c_string(_version('tensorflow'))}\n")
    w(f"#define TINYML_TFLITE_MICRO_VERSION {c_string(_version('tflite-micro'))}\n\n")
    w("// ---- input and output: real = (q - ZERO_POINT) * SCALE for quantised tensors ----\n")
    for tag, t in (("INPUT", inp), ("OUTPUT", outp)):
        shape = [int(d) for d in t.get("shape") or []]
        dtype = str(t.get("dtype") or "")
        w(f"// {tag.lower()} shape {shape}, {dtype}\n")
        w(f"#define TINYML_{tag}_DTYPE {c_string(dtype)}\n")
        if dtype:
            w(f"#define TINYML_{tag}_IS_{_ident(dtype)} 1\n")
        w(f"#define TINYML_{tag}_ELEMENTS {math.prod(shape) if shape else 1}\n")
        w(f"#define TINYML_{tag}_SCALE {c_float(scalar(t.get('scale')))}\n")
        w(f"#define TINYML_{tag}_ZERO_POINT {int(scalar(t.get('zero_point'), 0))}\n")
    w("\n// ---- class labels ----\n")
    if labels:
        w(f"#define TINYML_LABEL_COUNT {len(labels)}\n")
        w("extern const char *const g_model_labels[TINYML_LABEL_COUNT];\n")
    else:
        w("#define TINYML_LABEL_COUNT 0  // not a classifier, or no class names: no g_model_labels\n")
    w("\n// ---- input normalisation: x_model = (x_raw - g_input_norm_a[i]) / g_input_norm_b[i] ----\n")
    if norm_a is not None:
        w(f"#define TINYML_INPUT_NORM_COUNT {len(norm_a)}\n")
        w("extern const float g_input_norm_a[TINYML_INPUT_NORM_COUNT];\n")
        w("extern const float g_input_norm_b[TINYML_INPUT_NORM_COUNT];\n")
    else:
        w("#define TINYML_INPUT_NORM_COUNT 0  // the model takes raw inputs: no g_input_norm_a/b\n")
    w("\n#ifdef TINYML_HAVE_TFLM\n")
    w("// ---- op resolver with exactly the ops above (C++, needs TFLite Micro) ----\n")
    w('#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n')
    w("template <unsigned int N>\n")
    w("inline TfLiteStatus tinyml_register_ops(tflite::MicroMutableOpResolver<N>& r) {\n")
    for op in ops:
        m = resolver_method(op)
        if m:
            w(f"  if (r.{m}() != kTfLiteOk) return kTfLiteError;  // {_comment(op)}\n")
        else:
            w(f"  // {_comment(op)}: no MicroMutableOpResolver method known; register it yourself\n")
    w("  return kTfLiteOk;\n}\n\n")
    w("using TinyMLOpResolver = tflite::MicroMutableOpResolver<TINYML_OP_COUNT>;\n")
    w("#ifndef TINYML_OP_RESOLVER_TYPE\n#define TINYML_OP_RESOLVER_TYPE TinyMLOpResolver\n#endif\n")
    w("#endif  // TINYML_HAVE_TFLM\n\n#endif  // TINYML_MODEL_DATA_H_\n")

    c: list[str] = []
    a = c.append
    a("// Generated by doit-tinyml's header stage. Do not edit: `doit` rewrites it.\n")
    a(f"// model {_comment(model_name)}, variant {_comment(variant)}, sha256 {sha}\n")
    a('#include "model_data.h"\n\n')
    a(f"alignas(16) const unsigned char g_model[{len(model)}] = {{\n")
    for i in range(0, len(model), BYTES_PER_LINE):
        a("    " + ", ".join(f"0x{b:02x}" for b in model[i:i + BYTES_PER_LINE]) + ",\n")
    a("};\n")
    a(f"const unsigned int g_model_len = {len(model)};\n\n")
    a("const char *const g_model_ops[TINYML_OP_COUNT] = {\n")
    for op in ops:
        a(f"    {c_string(op)},\n")
    a("};\n")
    if labels:
        a("\nconst char *const g_model_labels[TINYML_LABEL_COUNT] = {\n")
        for lab in labels:
            a(f"    {c_string(lab)},\n")
        a("};\n")
    if norm_a is not None:
        a("\n" + _float_array("g_input_norm_a", norm_a))
        a(_float_array("g_input_norm_b", norm_b))
    return "".join(h), "".join(c)


def run(tflite_path: Path, analysis_json: Path, dataset_json: Path, out_h: Path, out_cc: Path, *,
        provenance: dict) -> None:
    """Write model_data.h/.cc for the variant: the model, its arena, op resolver and provenance.

    `provenance` holds the model and variant names and the settings hash; the class names and the
    input normalisation come from the dataset's own record (dataset.json).
    """
    tflite_path, analysis_json = Path(tflite_path), Path(analysis_json)
    meta = artifacts.read_dict(dataset_json, artifacts.Dataset)
    provenance = dict(provenance, class_names=meta.get("class_names"),
                      norm_a=meta.get("norm_a") if meta.get("normalize") != "none" else None,
                      norm_b=meta.get("norm_b") if meta.get("normalize") != "none" else None)
    for p, stage in ((tflite_path, "convert"), (analysis_json, "analyze")):
        if not p.is_file():
            raise TinyMLError(f"header: {p} does not exist; run the {stage} stage first (doit {stage})")
    model = tflite_path.read_bytes()
    analysis = artifacts.read_dict(analysis_json, artifacts.Analysis)
    if analysis.get("tflite_bytes") not in (None, len(model)):
        raise TinyMLError(f"header: {analysis_json} describes a {analysis['tflite_bytes']}-byte model but {tflite_path} "
                          f"has {len(model)} bytes; rerun the analyze stage (doit analyze)")
    h_text, cc_text = render(model, analysis, provenance or {})
    write_text(out_h, h_text)
    write_text(out_cc, cc_text)
