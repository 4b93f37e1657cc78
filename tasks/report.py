"""`doit report`: every variant on every board, flash and RAM against the board's limits, accuracy beside.

Reads only the artifacts the stages wrote (metrics.json, analysis.json, size.json, convert.json,
compress.json, the C array source, trained.keras): the report never recomputes a figure, never imports
numpy or TensorFlow, and never crashes on a missing artifact (a failed stage shows as "missing").

Writes report.md, report.json, report.csv and report.html (tables + hand-written SVG plots)
atomically into the build folder, prints the terminal tables, compares with the previous
report.json (like `dvc metrics diff`), names per board what to ship, and acts as a CI gate.
User guide: docs/report.md.
"""
from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any, Iterable

from .engine.errors import TinyMLError
from .engine.io import dumps_json, write_text

METRIC_LABELS = {"mae": "MAE", "rmse": "RMSE", "accuracy": "accuracy", "f1": "F1"}
ARTIFACTS = ("metrics", "analysis", "size", "convert", "compress", "aot")
DIFF_FIELDS = (("tflite_bytes", "tflite"), ("value", "metric"), ("flash_used", "flash"), ("ram_used", "RAM"))
CSV_FIELDS = ("model", "variant", "board", "runtime", "task", "metric", "value", "higher_is_better",
              "metric_runtime", "keras_value", "delta_vs_keras", "tflite_bytes", "flash_used", "flash_limit",
              "flash_pct", "ram_used", "ram_limit", "ram_pct", "fits", "fits_text", "estimate",
              "fits_with_headroom", "data_bytes", "non_data_bytes", "c_source_bytes", "tflite_gzip_bytes",
              "keras_bytes", "keras_gzip_bytes", "ratio_vs_keras", "params", "macs", "arena_bytes", "missing")


# --------------------------------------------------------------------------------------------
# reading artifacts


def _path(entry: dict, key: str):
    paths = entry.get("paths")
    p = paths.get(key) if isinstance(paths, dict) else entry.get(key)
    return Path(p) if p else None


def _load(path: Path | None) -> tuple[dict | None, str]:
    """(content, status) with status "ok", "absent" (not expected for this entry), "missing", "unreadable"."""
    if path is None:
        return None, "absent"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError):
        return None, "unreadable"
    return (data, "ok") if isinstance(data, dict) else (None, "unreadable")


def _file_size(path: Path | None) -> int | None:
    try:
        return path.stat().st_size if path is not None else None
    except OSError:
        return None


def _get(d: Any, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _first(*values):
    for v in values:
        if v is not None:
            return v
    return None


def _num(v) -> float | None:
    """A finite number, or None: NaN and infinities are not figures (never shown, never shipped)."""
    import math

    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _finite(obj):
    """A copy with every NaN or infinity (from an older, non-strict artifact) replaced by None."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _failure(entry: dict, failed_dir: Path | None) -> dict | None:
    """The first task of the row's chain (stage order) whose last run failed: {task, stage, message}."""
    if failed_dir is None:
        return None
    from urllib.parse import quote

    for name in entry.get("chain") or ():
        rec, status = _load(Path(failed_dir) / (quote(name, safe="") + ".json"))
        if rec is not None:
            return {"task": name, "stage": rec.get("stage") or name.split(":", 1)[0],
                    "message": str(rec.get("message") or "")}
    return None


def collect(entries: list[dict], failed_dir: Path | None = None) -> list[dict]:
    """One row per (model, variant, board, runtime), every figure read from an artifact."""
    rows = []
    for e in entries:
        art, status = {}, {}
        for key in ARTIFACTS:
            art[key], status[key] = _load(_path(e, key))
        m, a, s, c, comp = art["metrics"], art["analysis"], art["size"], art["convert"], art["compress"]
        board = e.get("board")
        runtime = e.get("runtime") or _get(s, "runtime") or ("tflm" if board else None)
        row: dict[str, Any] = {
            "model": e.get("model"), "variant": e.get("variant"), "board": board, "runtime": runtime,
            "task": _first(_get(m, "task"), e.get("task")), "required": bool(e.get("required", False)),
            "missing": sorted(k for k, st in status.items() if st in ("missing", "unreadable")
                              and not (k == "size" and board is None)),
        }
        # ---- accuracy
        primary = _get(m, "primary")
        primary = primary if isinstance(primary, dict) else {}
        name = primary.get("name") if isinstance(primary.get("name"), str) else None
        row["metric"] = name
        row["value"] = _num(primary.get("value"))
        row["higher_is_better"] = bool(primary.get("higher_is_better")) if name else None
        row["metric_runtime"] = primary.get("runtime")
        keras = _num(_get(m, "keras", name)) if name else None
        row["keras_value"] = keras
        row["delta_vs_keras"] = (row["value"] - keras) if keras is not None and row["value"] is not None else None
        row["drop"] = None
        if row["delta_vs_keras"] is not None:
            row["drop"] = -row["delta_vs_keras"] if row["higher_is_better"] else row["delta_vs_keras"]
        row["tflm_error"] = _get(m, "tflm", "error")
        row["estimate"] = bool(_get(s, "estimate", default=False))
        row["breakdown"] = _get(s, "breakdown")
        aot = art["aot"]
        row["aot_planned_bytes"] = _get(aot, "planned_bytes")
        row["aot_instructions"] = _get(aot, "instructions_per_inference")
        row["aot_verified"] = _get(aot, "passed")
        # ---- sizes of the model itself
        tflite = _first(_num(_get(a, "tflite_bytes")), _num(_get(c, "tflite_bytes")), _num(_get(m, "tflite_bytes")))
        row["tflite_bytes"] = int(tflite) if tflite is not None else None
        trained_bytes = _file_size(_path(e, "trained"))
        keras_bytes = _first(trained_bytes, _num(_get(comp, "trained", "keras_bytes")), _num(_get(c, "keras_bytes")))
        sizes = {
            "data_bytes": _get(a, "flatbuffer", "data_bytes"),
            "non_data_bytes": _get(a, "flatbuffer", "non_data_bytes"),
            "c_source_bytes": _first(_file_size(_path(e, "header")), _get(a, "header_bytes")),
            "tflite_gzip_bytes": _first(_get(a, "tflite_gzip_bytes"), _get(a, "gzip_bytes"), _get(c, "tflite_gzip_bytes")),
            "keras_bytes": int(keras_bytes) if keras_bytes is not None else None,
            "keras_gzip_bytes": _first(_get(comp, "final", "keras_gzip_bytes"), _get(comp, "trained", "keras_gzip_bytes")),
            "params": _first(_get(a, "params"), _get(comp, "final", "params")),
            "macs": _first(_get(a, "macs"), _get(comp, "final", "macs")),
            "arena_bytes": _get(a, "arena", "bytes"),
        }
        sizes["ratio_vs_keras"] = (row["tflite_bytes"] / keras_bytes
                                   if row["tflite_bytes"] is not None and keras_bytes else None)
        row.update(sizes)
        # ---- the board
        for k in ("flash_used", "flash_limit", "ram_used", "ram_limit", "flash_over_by", "ram_over_by"):
            v = _num(_get(s, k))
            row[k] = int(v) if v is not None else None
        for what in ("flash", "ram"):
            used, limit = row[f"{what}_used"], row[f"{what}_limit"]
            row[f"{what}_pct"] = 100.0 * used / limit if used is not None and limit else None
        row["failed"] = _failure(e, failed_dir)
        if row["failed"] is not None:
            # a failed stage: its older artifacts (if any) describe another build; show why instead
            f = row["failed"]
            row["fits"], row["fits_text"] = "failed", f"failed at {f['stage']} ({f['task']}): {f['message']}"
            row["value"] = None
        elif row["metric"] and _get(m, "primary", "value") is not None and row["value"] is None:
            row["fits"], row["fits_text"] = "failed", "metric is not a finite number: see metrics.json"
        else:
            row["fits"], row["fits_text"] = _fits(row, s, status["size"], a, m)
        rows.append(row)
    return rows


def _fits(row: dict, s: dict | None, size_status: str, a: dict | None, m: dict | None) -> tuple[str, str]:
    if row["board"] is None:
        return "-", "-"
    # A model the runtime cannot execute does not "fit", whatever its size: say why first.
    if row["runtime"] in (None, "tflm"):
        if a is not None and a.get("tflm_compatible") is False:
            probs = a.get("problems") or []
            p = probs[0] if isinstance(probs, list) and probs else {}
            p = p if isinstance(p, dict) else {"message": p}
            reason = ": ".join(str(x) for x in (p.get("op"), p.get("message")) if x) or "TFLM cannot run it"
            return "incompatible", f"incompatible ({_shorten(reason)})"
        if row.get("tflm_error"):
            return "incompatible", f"incompatible (TFLM: {_shorten(row['tflm_error'])})"
    if s is not None and (s.get("error") or s.get("incompatible")):
        return "incompatible", f"incompatible ({_shorten(str(s.get('error') or s.get('incompatible')))})"
    if s is not None and isinstance(s.get("fits"), bool):
        if s["fits"]:
            return ("estimate", "estimate") if row["estimate"] else ("yes", "yes")
        over = []
        if row["flash_over_by"]:
            over.append(f"+{row['flash_over_by']} B flash")
        if row["ram_over_by"]:
            over.append(f"+{row['ram_over_by']} B RAM")
        text = f"NO ({', '.join(over) or 'over the limit'} over{', estimate' if row['estimate'] else ''})"
        return "no", text
    what = "size.json unreadable" if size_status == "unreadable" else "no size.json: firmware stage failed or not run"
    return "missing", f"missing ({what})"


def _shorten(text: str, n: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


# --------------------------------------------------------------------------------------------
# comparisons: diff, ship, gates


def _key(r: dict) -> str:
    key = f"{r.get('model')}/{r.get('variant')}"
    if r.get("board"):
        key += f" @ {r['board']}"
        if r.get("runtime") and r["runtime"] != "tflm":
            key += f" [{r['runtime']}]"
    return key


def diff(rows: list[dict], previous_rows: list[dict]) -> list[dict]:
    """Per row key: "new", "removed", "changed" (old -> new, delta per field) or "unchanged"."""
    old = {_key(r): r for r in previous_rows if isinstance(r, dict)}
    new = {_key(r): r for r in rows}
    out = []
    for k, r in new.items():
        if k not in old:
            out.append({"key": k, "status": "new", "changes": {}})
            continue
        changes = {}
        for field, _label in DIFF_FIELDS:
            a, b = old[k].get(field), r.get(field)
            if a != b:
                delta = b - a if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None
                changes[field] = {"old": a, "new": b, "delta": delta}
        if old[k].get("fits") != r.get("fits"):
            changes["fits"] = {"old": old[k].get("fits"), "new": r.get("fits"), "delta": None}
        out.append({"key": k, "status": "changed" if changes else "unchanged", "changes": changes})
    out += [{"key": k, "status": "removed", "changes": {}} for k in old if k not in new]
    return out


def _fits_with_headroom(r: dict, headroom: float) -> bool:
    if r["fits"] not in ("yes", "estimate"):
        return False
    for what in ("flash", "ram"):
        used, limit = r[f"{what}_used"], r[f"{what}_limit"]
        if used is None or not limit or used > limit * (1.0 - headroom):
            return False
    return True


def ship(rows: list[dict], headroom: float) -> list[dict]:
    """Per (board, model): the most accurate variant that fits with `headroom` to spare."""
    out = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["board"]:
            groups.setdefault((r["board"], r["model"]), []).append(r)
    for (board, model), rs in groups.items():
        ok = [r for r in rs if r["fits_with_headroom"] and r["value"] is not None]
        rec: dict[str, Any] = {"board": board, "model": model, "headroom": headroom}
        if ok:
            sign = -1.0 if ok[0]["higher_is_better"] else 1.0
            best = min(ok, key=lambda r: (sign * r["value"], r["flash_used"] or 0, r["ram_used"] or 0))
            rec.update({"variant": best["variant"], "runtime": best["runtime"], "metric": best["metric"],
                        "value": best["value"], "flash_pct": best["flash_pct"], "ram_pct": best["ram_pct"],
                        "estimate": best["fits"] == "estimate"})
            what = f"{model}/{best['variant']}" + (f" [{best['runtime']}]" if best["runtime"] not in (None, "tflm") else "")
            rec["text"] = (f"Ship: {board} -> {what} ({_metric_label(best['metric'])} {_fmt_metric(best['value'])}, "
                           f"flash {best['flash_pct']:.1f} %, RAM {best['ram_pct']:.1f} %"
                           f"{', estimate' if rec['estimate'] else ''})")
        else:
            rec["variant"] = None
            if not any(r["flash_used"] is not None for r in rs):
                rec["text"] = f"Ship: {board} -> unknown for {model}: no firmware size yet (run `doit firmware`)"
            elif not any(r["value"] is not None for r in rs):
                rec["text"] = f"Ship: {board} -> unknown for {model}: no metrics yet (run `doit evaluate`)"
            else:
                rec["text"] = (f"Ship: {board} -> nothing of {model} fits with {headroom * 100:.0f} % headroom; "
                               "see the fits column")
        out.append(rec)
    return out


def check_gates(rows: list[dict], gates: dict | None) -> list[str]:
    """Reasons the build must fail (empty: pass)."""
    gates = gates or {}
    required = {tuple(x) for x in gates.get("required") or ()}
    required |= {(r["model"], r["variant"]) for r in rows if r.get("required")}
    max_drop = gates.get("max_accuracy_drop")
    reasons = []
    for model, variant in sorted(required):
        rs = [r for r in rows if r["model"] == model and r["variant"] == variant]
        if not rs:
            reasons.append(f"{model}/{variant} is required but is not in this build (check the variant name in tinyml.toml)")
            continue
        for r in rs:
            if r["fits"] == "failed":
                reasons.append(f"{model}/{variant} is required but {r['fits_text']}")
                continue
            if r["board"] is None or r["fits"] in ("yes", "estimate"):
                continue
            where = f"{r['board']}" + (f" [{r['runtime']}]" if r["runtime"] not in (None, "tflm") else "")
            if r["fits"] == "no":
                reasons.append(f"{model}/{variant} is required but does not fit on {where}: {r['fits_text']}")
            elif r["fits"] == "incompatible":
                reasons.append(f"{model}/{variant} is required but cannot run on {where}: {r['fits_text']}")
            else:
                reasons.append(f"{model}/{variant} is required but its firmware for {where} has no size.json "
                               f"(the firmware stage failed or did not run: see `doit firmware`)")
    if max_drop is not None:
        checked = sorted(required) or sorted({(r["model"], r["variant"]) for r in rows})
        for model, variant in checked:
            rs = [r for r in rows if r["model"] == model and r["variant"] == variant]
            if not rs:
                continue
            r = rs[0]
            label = _metric_label(r["metric"]) if r["metric"] else "metric"
            if r["value"] is None:
                reasons.append(f"{model}/{variant}: no metrics.json, so the accuracy gate cannot be checked "
                               f"(run `doit evaluate:{model}/{variant}`)")
            elif r["keras_value"] is None:
                reasons.append(f"{model}/{variant}: metrics.json has no Keras reference {label}, so the accuracy gate "
                               f"cannot be checked")
            elif r["drop"] > float(max_drop) + 1e-12:
                verb = "loses" if r["higher_is_better"] else "rises by"
                reasons.append(f"{model}/{variant} {verb} {r['drop']:.4g} {label} against the Keras reference "
                               f"({_fmt_metric(r['keras_value'])} -> {_fmt_metric(r['value'])}); "
                               f"allowed: {float(max_drop):g} (max_accuracy_drop)")
    return reasons


# --------------------------------------------------------------------------------------------
# formatting


def _metric_label(name: str | None) -> str:
    return METRIC_LABELS.get(name, name or "metric")


def _fmt_metric(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.4g}"


def _fmt_delta(v) -> str:
    if v is None:
        return "-"
    return f"{v:+.4f}" if abs(v) < 10 else f"{v:+.4g}"


def _kb(n) -> str:
    if n is None:
        return "-"
    n = int(n)
    if abs(n) < 1024:
        return f"{n} B"
    if abs(n) < 1024 * 1024:
        return f"{n / 1024:.1f}K"
    return f"{n / (1024 * 1024):.2f}M"


def _int(n) -> str:
    return "-" if n is None else f"{int(n):,}"


def _pct(p) -> str:
    return "-" if p is None else f"{p:.1f}%"


def _used(r: dict, what: str) -> str:
    """'used / limit (pct)' in bytes, the figures PlatformIO printed, so they can be checked by eye."""
    if r[f"{what}_used"] is None:
        return "-"
    limit = r[f"{what}_limit"]
    return f"{_int(r[f'{what}_used'])} / {_int(limit)} {_pct(r[f'{what}_pct'])}"


def _table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset(), max_width: dict | None = None) -> list[str]:
    max_width = max_width or {}
    cells = [[str(c) for c in row] for row in rows]
    for row in cells:
        for i, w in max_width.items():
            if len(row[i]) > w:
                row[i] = row[i][: w - 3] + "..."
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(vals):
        return "  ".join(v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(vals)).rstrip()

    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells]


def _by_model(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["model"], []).append(r)
    return out


def _model_title(rows: list[dict]) -> str:
    r = next((x for x in rows if x["metric"]), rows[0])
    if not r["metric"]:
        return f"{r['model']}  (no metrics yet)"
    better = "higher is better" if r["higher_is_better"] else "lower is better"
    return f"{r['model']}  ({r['task'] or '?'}; {_metric_label(r['metric'])}, {better})"


def _variant_label(r: dict) -> str:
    return r["variant"] + (" *" if r.get("required") else "")


def _fits_short(r: dict) -> str:
    return "missing (size.json)" if r["fits"] == "missing" else r["fits_text"]


def terminal_main(rows: list[dict]) -> list[str]:
    out = []
    show_runtime = any(r["runtime"] not in (None, "tflm") for r in rows)
    for model, rs in _by_model(rows).items():
        out.append(_model_title(rs))
        label = _metric_label(next((r["metric"] for r in rs if r["metric"]), None))
        headers = ["variant", "board"] + (["runtime"] if show_runtime else []) + [
            "tflite B", label, "vs keras", "flash used / limit", "RAM used / limit", "fits"]
        body = [[_variant_label(r), r["board"] or "-"] + ([r["runtime"] or "-"] if show_runtime else []) + [
                 _int(r["tflite_bytes"]), _fmt_metric(r["value"]), _fmt_delta(r["delta_vs_keras"]), _used(r, "flash"),
                 _used(r, "ram"), _fits_short(r)] for r in rs]
        k = 3 if show_runtime else 2
        out += ["  " + ln for ln in _table(headers, body, right=set(range(k, k + 5)),
                                            max_width={0: 14, 1: 20, k + 5: 60})]
        out.append("")
    if any(r.get("required") for r in rows):
        out.append("* required variant (CI gate)")
    if any(r["runtime"] == "tflm" and not r["estimate"] and (r.get("breakdown") or {}).get("flash", {}).get("inference") == 0
           for r in rows):
        out.append("tflm rows built offline hold the model and its arena but not the TFLM interpreter's code "
                   "(no TFLM sources offline): add the interpreter's flash when you link the TFLM library.")
    return out


def _size_rows(rows: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in rows:
        k = (r["model"], r["variant"])
        if k not in seen:
            seen.add(k)
            out.append(r)
    return out


def terminal_sizes(rows: list[dict]) -> list[str]:
    body = [[f"{r['model']}/{r['variant']}", _int(r["tflite_bytes"]), _int(r["data_bytes"]), _int(r["non_data_bytes"]),
             _int(r["arena_bytes"]), _int(r["params"]), _int(r["macs"]), _int(r["tflite_gzip_bytes"]),
             _ratio(r["ratio_vs_keras"])] for r in _size_rows(rows)]
    headers = ["model/variant", "tflite B", "data", "non-data", "arena", "params", "MACs", "gzip", "vs keras"]
    if any(r.get("aot_planned_bytes") is not None for r in rows):
        headers += ["AOT arena", "AOT instr/inf"]
        aot = {(r["model"], r["variant"]): r for r in rows if r.get("aot_planned_bytes") is not None}
        for line, r in zip(body, _size_rows(rows)):
            a = aot.get((r["model"], r["variant"]), {})
            line += [_int(a.get("aot_planned_bytes")), _int(a.get("aot_instructions"))]
    return _table(headers, body, right=set(range(1, len(headers))), max_width={0: 28})


def _ratio(v) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _fmt_change(field: str, ch: dict) -> str:
    if field == "fits":
        return f"fits {ch['old']} -> {ch['new']}"
    label = dict(DIFF_FIELDS)[field]
    fmt = _fmt_metric if field == "value" else _int
    d = ch["delta"]
    delta = "" if d is None else f" ({_fmt_delta(d) if field == 'value' else f'{int(d):+,}'})"
    return f"{label} {fmt(ch['old'])} -> {fmt(ch['new'])}{delta}"


def terminal_diff(changes: list[dict] | None, previous_note: str) -> list[str]:
    if changes is None:
        return [previous_note]
    out = [previous_note]
    width = max([len(c["key"]) for c in changes] + [10])
    unchanged = 0
    for c in changes:
        if c["status"] == "unchanged":
            unchanged += 1
        elif c["status"] in ("new", "removed"):
            out.append(f"  {c['key'].ljust(width)}  {c['status']}")
        else:
            out.append(f"  {c['key'].ljust(width)}  " + "; ".join(_fmt_change(f, ch) for f, ch in c["changes"].items()))
    out.append(f"  ({unchanged} row{'s' if unchanged != 1 else ''} unchanged)")
    return out


# --------------------------------------------------------------------------------------------
# files: markdown, csv, html with SVG plots


def _md_table(headers: list[str], body: list[list[str]]) -> list[str]:
    def esc(s):
        return str(s).replace("|", "\\|")

    return (["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
            + ["| " + " | ".join(esc(c) for c in row) + " |" for row in body])


def _main_wide(rs: list[dict]) -> tuple[list[str], list[list[str]]]:
    label = _metric_label(next((r["metric"] for r in rs if r["metric"]), None))
    headers = ["variant", "board", "runtime", "tflite B", label, "keras", "vs keras", "flash used", "flash limit",
               "flash %", "RAM used", "RAM limit", "RAM %", "fits", "missing"]
    body = [[_variant_label(r), r["board"] or "-", r["runtime"] or "-", _int(r["tflite_bytes"]), _fmt_metric(r["value"]),
             _fmt_metric(r["keras_value"]), _fmt_delta(r["delta_vs_keras"]), _int(r["flash_used"]),
             _int(r["flash_limit"]), _pct(r["flash_pct"]), _int(r["ram_used"]), _int(r["ram_limit"]),
             _pct(r["ram_pct"]), r["fits_text"], ", ".join(r["missing"]) or "-"] for r in rs]
    return headers, body


def _sizes_wide(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    headers = ["model/variant", "tflite B", "data B", "non-data B", "C source B", "tflite gzip B", "keras B",
               "keras gzip B", "tflite / keras", "params", "MACs", "arena B", "AOT arena B", "AOT instr/inference"]
    body = [[f"{r['model']}/{r['variant']}", _int(r["tflite_bytes"]), _int(r["data_bytes"]), _int(r["non_data_bytes"]),
             _int(r["c_source_bytes"]), _int(r["tflite_gzip_bytes"]), _int(r["keras_bytes"]),
             _int(r["keras_gzip_bytes"]), _ratio(r["ratio_vs_keras"]), _int(r["params"]), _int(r["macs"]),
             _int(r["arena_bytes"]), _int(r.get("aot_planned_bytes")), _int(r.get("aot_instructions"))]
            for r in _size_rows(rows)]
    return headers, body


def _breakdown_wide(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Where every byte goes, from the linked ELF (size.json breakdown)."""
    headers = ["model/variant", "board", "runtime", "flash: model", "inference", "application",
               "RAM: arena", "stack+heap", "application"]
    body = []
    for r in rows:
        b = r.get("breakdown") or {}
        if not b or r.get("estimate"):
            continue
        f, m = b.get("flash") or {}, b.get("ram") or {}
        body.append([f"{r['model']}/{r['variant']}", r["board"] or "-", r["runtime"] or "-",
                     _int(f.get("model")), _int(f.get("inference")), _int(f.get("application")),
                     _int(m.get("arena")), _int(m.get("stack_heap")), _int(m.get("application"))])
    return headers, body


def layer_tables(entries: list[dict]) -> dict[str, dict]:
    """Per variant: the analysis' per-layer table (op, shapes and dtypes, params, MACs, live bytes, peak)."""
    out: dict[str, dict] = {}
    for e in entries:
        key = f"{e.get('model')}/{e.get('variant')}"
        if key in out:
            continue
        a, _ = _load(_path(e, "analysis"))
        if not a or not isinstance(a.get("layers"), list):
            continue

        def shapes(ts):
            return " ".join(f"{t.get('dtype', '?')}{list(t.get('shape') or [])}" for t in ts or []
                            if not t.get("constant"))
        rows = [[str(layer.get("index")), str(layer.get("op")), shapes(layer.get("inputs")), shapes(layer.get("outputs")),
                 _int(layer.get("params")), _int(layer.get("macs")), _int(layer.get("alive_bytes")),
                 "<- peak" if layer.get("peak") else ""] for layer in a["layers"]]
        out[key] = {"peak_layer": a.get("peak_layer"), "peak_alive_bytes": a.get("peak_alive_bytes"), "rows": rows}
    return out


LAYER_HEADERS = ["#", "op", "inputs", "outputs", "params", "MACs", "live activation B", "peak"]


def _diff_lines(changes: list[dict] | None) -> list[list[str]]:
    if not changes:
        return []
    return [[c["key"], c["status"], "; ".join(_fmt_change(f, ch) for f, ch in c["changes"].items()) or "-"]
            for c in changes if c["status"] != "unchanged"]


def render_markdown(doc: dict) -> str:
    rows = doc["rows"]
    out = ["# doit-tinyml report", "",
           f"Fits with headroom: {doc['headroom'] * 100:.0f} % of each board's flash and RAM kept free.", ""]
    for model, rs in _by_model(rows).items():
        out += [f"## {_model_title(rs)}", ""]
        h, b = _main_wide(rs)
        out += _md_table(h, b) + [""]
    out += ["## Model sizes", ""]
    h, b = _sizes_wide(rows)
    out += _md_table(h, b) + [""]
    h, b = _breakdown_wide(rows)
    if b:
        out += ["## Where every byte goes (from the linked ELF)", ""] + _md_table(h, b) + [""]
    for key, t in (doc.get("layers") or {}).items():
        out += [f"## Layers of {key} (activation peak: layer {t['peak_layer']}, {_int(t['peak_alive_bytes'])} B)", ""]
        out += _md_table(LAYER_HEADERS, t["rows"]) + [""]
    out += ["## What to ship", ""] + [f"- {s['text']}" for s in doc["ship"]] + [""]
    out += ["## Changes since the previous report", "", doc["previous_note"], ""]
    d = _diff_lines(doc["diff"])
    if d:
        out += _md_table(["row", "status", "changes"], d) + [""]
    out += ["## CI gate", ""]
    out += ([f"- FAILED: {x}" for x in doc["gate_failures"]] or ["- passed"]) + [""]
    return "\n".join(out)


def render_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for r in rows:
        vals = []
        for f in CSV_FIELDS:
            v = r.get(f)
            if f == "missing":
                v = ";".join(v or [])
            vals.append("" if v is None else v)
        w.writerow(vals)
    return buf.getvalue()


PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    import math

    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def svg_scatter(points: list[dict], *, x_label: str, y_label: str, title: str, vlines: Iterable[tuple] = ()) -> str:
    """A small scatter plot as SVG text. points: {x, y, label, group}; vlines: (x, label, colour, dashed)."""
    W, H, L, R, T, B = 640, 340, 70, 130, 34, 50
    vlines = list(vlines)
    if not points:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="60" role="img">'
                f'<text x="10" y="30" font-family="sans-serif" font-size="13">{html.escape(title)}: no data</text></svg>')
    xs = [p["x"] for p in points] + [v[0] for v in vlines]
    ys = [p["y"] for p in points]
    x_lo, x_hi = 0.0, max(xs) * 1.08 or 1.0
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.15 or abs(y_hi) * 0.05 or 0.05
    y_lo, y_hi = y_lo - pad, y_hi + pad

    def sx(x):
        return L + (x - x_lo) / (x_hi - x_lo) * (W - L - R)

    def sy(y):
        return H - B - (y - y_lo) / (y_hi - y_lo) * (H - T - B)

    e = html.escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
             f'font-family="sans-serif" font-size="11" role="img" aria-label="{e(title)}">',
             f'<text x="{W / 2:.0f}" y="18" text-anchor="middle" font-size="13" font-weight="bold">{e(title)}</text>',
             f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#999"/>']
    for t in _nice_ticks(x_lo, x_hi):
        parts.append(f'<line x1="{sx(t):.1f}" y1="{H - B}" x2="{sx(t):.1f}" y2="{H - B + 4}" stroke="#666"/>'
                     f'<text x="{sx(t):.1f}" y="{H - B + 16}" text-anchor="middle">{t:g}</text>')
    for t in _nice_ticks(y_lo, y_hi):
        parts.append(f'<line x1="{L - 4}" y1="{sy(t):.1f}" x2="{L}" y2="{sy(t):.1f}" stroke="#666"/>'
                     f'<line x1="{L}" y1="{sy(t):.1f}" x2="{W - R}" y2="{sy(t):.1f}" stroke="#eee"/>'
                     f'<text x="{L - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    parts.append(f'<text x="{(L + W - R) / 2:.0f}" y="{H - 12}" text-anchor="middle">{e(x_label)}</text>')
    parts.append(f'<text transform="translate(16 {(T + H - B) / 2:.0f}) rotate(-90)" text-anchor="middle">{e(y_label)}</text>')
    for x, label, colour, dashed in vlines:
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        parts.append(f'<line class="limit" x1="{sx(x):.1f}" y1="{T}" x2="{sx(x):.1f}" y2="{H - B}" stroke="{colour}"{dash}/>'
                     f'<text x="{sx(x) - 3:.1f}" y="{T + 12}" text-anchor="end" fill="{colour}">{e(label)}</text>')
    groups = sorted({p["group"] for p in points})
    colours = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    for p in points:
        c = colours[p["group"]]
        if p.get("ship"):
            parts.append(f'<circle class="ship" cx="{sx(p["x"]):.1f}" cy="{sy(p["y"]):.1f}" r="9" fill="none" '
                         f'stroke="#000" stroke-width="1.5"/>')
        parts.append(f'<circle class="point" cx="{sx(p["x"]):.1f}" cy="{sy(p["y"]):.1f}" r="5" fill="{c}" fill-opacity="0.8">'
                     f'<title>{e(p["label"])}: {p["x"]:.1f} %, {p["y"]:.4g}</title></circle>'
                     f'<text x="{sx(p["x"]) + 7:.1f}" y="{sy(p["y"]) - 6:.1f}" fill="{c}">{e(p["short"])}</text>')
    lx = W - R + 14
    for i, g in enumerate(groups):  # legend, right of the plot
        y = T + 14 + 16 * i
        parts.append(f'<circle cx="{lx}" cy="{y - 4}" r="5" fill="{colours[g]}"/>'
                     f'<text x="{lx + 10}" y="{y}">{e(_shorten(g, 18))}</text>')
    if any(p.get("ship") for p in points):
        y = T + 14 + 16 * len(groups)
        parts.append(f'<circle cx="{lx}" cy="{y - 4}" r="7" fill="none" stroke="#000" stroke-width="1.5"/>'
                     f'<text x="{lx + 10}" y="{y}">ship</text>')
    parts.append("</svg>")
    return "".join(parts)


def plots(rows: list[dict], headroom: float, shipped: list[dict] = ()) -> list[tuple[str, str]]:
    """(title, svg) per model and resource: the metric against flash % and against RAM % of each board."""
    out = []
    chosen = {(s["board"], s["model"], s["variant"], s["runtime"]) for s in shipped if s.get("variant")}
    for model, rs in _by_model(rows).items():
        metric = next((r["metric"] for r in rs if r["metric"]), None)
        if metric is None:
            continue
        better = "higher is better" if next(r["higher_is_better"] for r in rs if r["metric"]) else "lower is better"
        for what, label in (("flash", "flash"), ("ram", "RAM")):
            pts = [{"x": r[f"{what}_pct"], "y": r["value"], "group": r["board"],
                    "label": f"{r['variant']} on {r['board']} ({r['runtime']})", "short": r["variant"],
                    "ship": (r["board"], r["model"], r["variant"], r["runtime"]) in chosen}
                   for r in rs if r[f"{what}_pct"] is not None and r["value"] is not None]
            title = f"{model}: {_metric_label(metric)} against {label}"
            out.append((title, svg_scatter(
                pts, x_label=f"{label} used, % of the board's limit", y_label=f"{_metric_label(metric)} ({better})",
                title=title, vlines=[(100.0, "limit", "#d62728", False),
                                     (100.0 * (1 - headroom), f"{headroom * 100:.0f} % headroom", "#ff7f0e", True)])))
    return out


def render_html(doc: dict) -> str:
    e = html.escape

    def table(headers, body):
        return ("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr></thead><tbody>"
                + "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in body)
                + "</tbody></table>")

    rows = doc["rows"]
    parts = ["<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>doit-tinyml report</title><style>",
             "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}"
             "td:first-child,th:first-child{text-align:left}.fail{color:#b00}.ok{color:#070}"
             ".plots{display:flex;flex-wrap:wrap;gap:1em}",
             "</style></head><body><h1>doit-tinyml report</h1>",
             f"<p>Fits with headroom: {doc['headroom'] * 100:.0f} % of each board's flash and RAM kept free.</p>"]
    for model, rs in _by_model(rows).items():
        parts.append(f"<h2>{e(_model_title(rs))}</h2>")
        parts.append(table(*_main_wide(rs)))
    parts.append("<h2>Trade-offs</h2><div class=\"plots\">")
    parts += [f"<figure>{svg}</figure>" for _, svg in doc["_plots"]]
    parts.append("</div><h2>Model sizes</h2>")
    parts.append(table(*_sizes_wide(rows)))
    h, b = _breakdown_wide(rows)
    if b:
        parts.append("<h2>Where every byte goes (from the linked ELF)</h2>")
        parts.append(table(h, b))
    for key, t in (doc.get("layers") or {}).items():
        parts.append(f"<h2>Layers of {e(key)} (activation peak: layer {t['peak_layer']}, "
                     f"{_int(t['peak_alive_bytes'])} B)</h2>")
        parts.append(table(LAYER_HEADERS, t["rows"]))
    parts.append("<h2>What to ship</h2><ul>" + "".join(f"<li>{e(s['text'])}</li>" for s in doc["ship"]) + "</ul>")
    parts.append(f"<h2>Changes since the previous report</h2><p>{e(doc['previous_note'])}</p>")
    d = _diff_lines(doc["diff"])
    if d:
        parts.append(table(["row", "status", "changes"], d))
    parts.append("<h2>CI gate</h2>")
    if doc["gate_failures"]:
        parts.append("<ul>" + "".join(f"<li class=\"fail\">FAILED: {e(x)}</li>" for x in doc["gate_failures"]) + "</ul>")
    else:
        parts.append("<p class=\"ok\">passed</p>")
    parts.append("</body></html>\n")
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# entry point


def run(entries: list[dict], out_dir: Path, *, headroom: float = 0.10, gates: dict | None = None,
        previous: Path | None = None, failed_dir: Path | None = None) -> int:
    """Print the report, write report.md/.json/.csv/.html into out_dir; return the exit code (1: a gate failed)."""
    if not isinstance(headroom, (int, float)) or not 0 <= headroom < 1:
        raise TinyMLError(f"report: headroom = {headroom!r}; give a fraction in [0, 1), e.g. 0.10 for 10 % "
                          "(the [report] headroom key in tinyml.toml)")
    out_dir = Path(out_dir)
    rows = collect(entries, failed_dir)
    required = {tuple(x) for x in (gates or {}).get("required") or ()}
    for r in rows:
        r["required"] = r["required"] or (r["model"], r["variant"]) in required
        r["fits_with_headroom"] = _fits_with_headroom(r, headroom) if r["board"] else None

    changes, note = None, "No previous report: this one is the baseline for the next comparison."
    if previous is not None and Path(previous).is_file():
        prev, status = _load(Path(previous))
        if prev is not None and isinstance(prev.get("rows"), list):
            changes = diff(rows, prev["rows"])
            note = f"Compared with the previous report ({previous}):"
        else:
            note = f"The previous report {previous} is unreadable; nothing to compare."

    doc = {"headroom": headroom, "rows": rows, "ship": ship(rows, headroom), "diff": changes,
           "layers": layer_tables(entries),
           "previous_note": note, "gate_failures": check_gates(rows, gates),
           "gates": {"required": sorted([list(x) for x in {tuple(x) for x in (gates or {}).get("required") or ()}]),
                     "max_accuracy_drop": (gates or {}).get("max_accuracy_drop")}}

    lines = ["", "doit-tinyml report", ""] + terminal_main(rows) + ["", "model sizes (bytes)"] + terminal_sizes(rows)
    h, b = _breakdown_wide(rows)
    if b:
        lines += ["", "where every byte goes (bytes, from the linked ELF; per-layer tables in report.md)"] + _table(h, b)
    lines += ["", "changes since the previous report"] + terminal_diff(changes, note) + [""] + [s["text"] for s in doc["ship"]]
    lines += [""] + ([f"GATE FAILED: {x}" for x in doc["gate_failures"]] or ["gate: passed"])
    print("\n".join(lines), flush=True)

    doc["_plots"] = plots(rows, headroom, doc["ship"])
    html_text = render_html(doc)
    del doc["_plots"]
    write_text(out_dir / "report.html", html_text)
    write_text(out_dir / "report.md", render_markdown(doc))
    write_text(out_dir / "report.csv", render_csv(rows))
    write_text(out_dir / "report.json", dumps_json(_finite(doc), where=str(out_dir / "report.json")))
    print(f"written: {out_dir / 'report.md'}, report.json, report.csv, report.html", flush=True)
    return 1 if doc["gate_failures"] else 0

