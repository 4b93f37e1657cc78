"""The report as text: terminal, markdown, csv, html and json, every table built from columns.py.

`doc` is what report.json holds: headroom, rows, ship, diff, layers, previous_note, gate_failures,
gates, warnings. Nothing here reads a file or decides a verdict. The sweep tables are built from the
rows' sweep fields, so report.json alone reproduces the terminal.
"""
from __future__ import annotations

import csv
import html
import io
import math

from ..io import dumps_json
from . import columns as C
from .columns import BREAKDOWN, CSV, FIGURES, HTML, MAIN, MD, SIZES, SWEEP, TERMINAL, fmt_int

NOTE_WIDTH = 110  # the notes below a table (the whole fits reasons)
LAYER_HEADERS = ["#", "op", "inputs", "outputs", "params", "MACs", "live activation B", "peak"]
DIFF_HEADERS = ["row", "status", "changes"]


# --------------------------------------------------------------------------------------------
# row sets and titles


def by_model(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["model"], []).append(r)
    return out


def model_title(rows: list[dict]) -> str:
    r = next((x for x in rows if x["metric"]), rows[0])
    if not r["metric"]:
        return f"{r['model']}  (no metrics yet)"
    better = "higher is better" if r["higher_is_better"] else "lower is better"
    return f"{r['model']}  ({r['task'] or '?'}; {C.metric_label(r['metric'])}, {better})"


def cells(table: str, view: str, rows: list[dict], context: list[dict]) -> tuple[list, list[str], list[list[str]]]:
    """(columns, headers, body) of `table` over `rows` as `view` shows it; context: all rows of the report."""
    cols = C.select(table, view, context, rows if table in (FIGURES,) else None)
    return cols, [C.header(c, view, rows) for c in cols], [[C.cell(c, r) for c in cols] for r in rows]


def by_task(rows: list[dict]) -> dict[str, list[dict]]:
    """The figures tables: one per task, one row per model/variant with metrics."""
    out: dict[str, list[dict]] = {}
    for r in C.table_rows(FIGURES, rows):
        out.setdefault(r.get("task") or "?", []).append(r)
    return out


def figures_title(task: str) -> str:
    return f"Test-split figures: {C.TASK_TITLES.get(task, task)}"


# --------------------------------------------------------------------------------------------
# sweeps


def fmt_swept(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "-" if v is None else str(v)
    return f"{v:g}"


def _sort_key(v):
    return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v))


def sweeps(rows: list[dict]) -> list[dict]:
    """Per sweep group: {group, kind, model (variant sweeps), keys {short: dotted}, rows (sorted by point)}."""
    groups: dict[tuple, dict] = {}
    for r in C.table_rows(SWEEP, rows):
        kind = r.get("sweep_kind") or "model"
        ident = (kind, r["sweep_group"], r["model"] if kind == "variant" else None)
        g = groups.setdefault(ident, {"group": r["sweep_group"], "kind": kind, "model": ident[2], "keys": {},
                                      "rows": []})
        for k in r.get("sweep_values") or {}:
            g["keys"].setdefault(k, (r.get("sweep_keys") or {}).get(k, k))
        g["rows"].append(r)
    for g in groups.values():
        order = list(g["keys"])
        g["rows"].sort(key=lambda r: ([_sort_key((r["sweep_values"] or {}).get(k)) for k in order],
                                      r["variant"], r["board"] or "", r["runtime"] or ""))
    return list(groups.values())


def sweep_title(g: dict) -> str:
    what = f"{g['model']}/{g['group']}" if g["kind"] == "variant" else g["group"]
    swept = ", ".join(f"{k} = {dotted}" if k != dotted else k for k, dotted in g["keys"].items())
    return f"Sweep {what} ({g['kind']}s; {swept})"


def sweep_cells(g: dict, view: str, context: list[dict]) -> tuple[list, list[str], list[list[str]]]:
    """(columns, headers, body) of a sweep table: the swept values first, then the spec's sweep columns."""
    cols, headers, body = cells(SWEEP, view, g["rows"], context)
    keys = list(g["keys"])
    return (cols, keys + headers,
            [[fmt_swept((r["sweep_values"] or {}).get(k)) for k in keys] + line for r, line in zip(g["rows"], body)])


# --------------------------------------------------------------------------------------------
# terminal


def wrap(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width`: broken at a space, else after '/', '_', '-' or ',', else mid-word;
    every character is kept but the spaces at the breaks."""
    out = []
    text = " ".join(str(text).split()) if " " in str(text) else str(text)
    while len(text) > width:
        cut = text.rfind(" ", 0, width + 1)   # words first; inside a long word after / _ - ,
        if cut < width // 2:
            cut = max([cut] + [text.rfind(ch, 0, width) for ch in "/_-,"])
        if cut < width // 3:
            cut = width
            out.append(text[:cut])
            text = text[cut:]
        elif text[cut] == " ":
            out.append(text[:cut])
            text = text[cut + 1:]
        else:
            out.append(text[:cut + 1])
            text = text[cut + 1:]
    return out + [text]


def text_table(headers: list[str], body: list[list[str]], right=frozenset(), max_width: dict | None = None
               ) -> list[str]:
    """A plain-text table: padded columns two spaces apart, a dashed rule; a cell longer than max_width[i]
    is wrapped onto continuation lines (never cut)."""
    max_width = max_width or {}
    lines_of_rows = []
    for row in body:
        parts = [wrap(str(c), max_width[i]) if i in max_width else [str(c)] for i, c in enumerate(row)]
        height = max(len(p) for p in parts) if parts else 1
        lines_of_rows += [[p[k] if k < len(p) else "" for p in parts] for k in range(height)]
    widths = [max([len(h)] + [len(row[i]) for row in lines_of_rows]) for i, h in enumerate(headers)]

    def line(vals):
        return "  ".join(v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(vals)).rstrip()

    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in lines_of_rows]


def terminal_table(table: str, rows: list[dict], context: list[dict]) -> list[str]:
    """The table's lines; a note column's long cells end in "... [n]" and the whole texts follow the table,
    after an empty line, as "[n] text"."""
    cols, headers, body = cells(table, TERMINAL, rows, context)
    notes: list[str] = []
    for i, c in enumerate(cols):
        if c.overflow != "note" or not c.width:
            continue
        for line in body:
            text = line[i]
            if len(text) <= c.width:
                continue
            if text not in notes:
                notes.append(text)
            mark = f" ... [{notes.index(text) + 1}]"
            head = text[: c.width - len(mark)]
            head = head[: head.rfind(" ")] if " " in head else head
            line[i] = head.rstrip(" ,;:|(") + mark
    lines = text_table(headers, body, right={i for i, c in enumerate(cols) if c.align == C.RIGHT},
                       max_width={i: c.width for i, c in enumerate(cols) if c.width and c.overflow == "wrap"})
    if notes:
        lines.append("")
        for n, text in enumerate(notes, 1):
            first, *rest = wrap(text, NOTE_WIDTH)
            lines += [f"[{n}] {first}"] + [" " * (len(str(n)) + 3) + x for x in rest]
    return lines


def terminal_sweep(g: dict, context: list[dict]) -> list[str]:
    cols, headers, body = sweep_cells(g, TERMINAL, context)
    n = len(g["keys"])
    return text_table(headers, body, right=set(range(n)) | {n + i for i, c in enumerate(cols) if c.align == C.RIGHT},
                      max_width={n + i: c.width for i, c in enumerate(cols) if c.width})


def warning_lines(warnings: list[dict]) -> list[str]:
    out = []
    for w in warnings or []:
        who = f"{w['model']}/{w['variant']}" if w.get("variant") else f"{w['model']} (every variant)"
        out.append(f"{who}: {w['text']}" + ("; not recommended to ship" if w.get("blocks_ship") else ""))
    return out


def gate_lines(doc: dict) -> list[str]:
    if doc["gate_failures"]:
        return [f"GATE FAILED: {x}" for x in doc["gate_failures"]]
    if not any(r.get("required") for r in doc["rows"]) and not (doc.get("gates") or {}).get("required"):
        return ["gate: passed (no variant is marked required, so nothing is gated)"]
    return ["gate: passed"]


def terminal_main(rows: list[dict]) -> list[str]:
    out = []
    for rs in by_model(rows).values():
        out.append(model_title(rs))
        out += ["  " + ln if ln else "" for ln in terminal_table(MAIN, rs, rows)]
        out.append("")
    if any(r.get("required") for r in rows):
        out.append("* required variant (CI gate)")
    out += latency_lines(rows)
    if any(r["runtime"] == "tflm" and not r["estimate"] and (r.get("breakdown") or {}).get("flash", {}).get("inference") == 0
           for r in rows):
        out.append("tflm rows built offline hold the model and its arena but not the TFLM interpreter's code "
                   "(no TFLM sources offline): add the interpreter's flash when you link the TFLM library.")
    return out


def latency_lines(rows: list[dict]) -> list[str]:
    """What the time column's marks mean, and each row's measurement note (not measured, stale, skipped)."""
    out = []
    if any(r.get("latency_ms") is not None for r in rows):
        out.append(C.LATENCY_LEGEND)
    for r in rows:
        if r.get("latency_note"):
            where = f"{r['model']}/{r['variant']}" + (f" [{r['runtime']}]" if r.get("runtime") not in (None, "tflm") else "")
            out.append(f"time on {r['board']}, {where}: {r['latency_note']}")
    return out


def format_change(field: str, ch: dict) -> str:
    if field == "fits":
        return f"fits {ch['old']} -> {ch['new']}"
    col = C.BY_KEY[field]
    d = ch["delta"]
    delta = "" if d is None else f" ({col.delta(d)})"
    return f"{col.diff} {col.fmt(ch['old'])} -> {col.fmt(ch['new'])}{delta}"


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
            out.append(f"  {c['key'].ljust(width)}  " + "; ".join(format_change(f, ch) for f, ch in c["changes"].items()))
    out.append(f"  ({unchanged} row{'s' if unchanged != 1 else ''} unchanged)")
    return out


def terminal(doc: dict) -> str:
    """What `doit report` prints."""
    rows = doc["rows"]
    lines = ["", "doit-tinyml report", ""] + terminal_main(rows)
    for task, rs in by_task(rows).items():
        lines += ["", figures_title(task)] + terminal_table(FIGURES, rs, rows)
    lines += ["", "model sizes (bytes; keras h5: the trained model's weights alone, as HDF5)"]
    lines += terminal_table(SIZES, C.table_rows(SIZES, rows), rows)
    b = C.table_rows(BREAKDOWN, rows)
    if b:
        lines += ["", "where every byte goes (bytes, from the linked ELF; \"ELF + interpreter estimate\": the TFLM "
                  "interpreter added from the table of real links; \"estimate, no build\": a board the local "
                  "platform cannot build; per-layer tables in report.md)"]
        lines += terminal_table(BREAKDOWN, b, rows)
    for g in sweeps(rows):
        lines += ["", sweep_title(g)] + terminal_sweep(g, rows)
    if doc.get("warnings"):
        lines += ["", "warnings"] + ["  " + w for w in warning_lines(doc["warnings"])]
    lines += ["", "changes since the previous report"] + terminal_diff(doc["diff"], doc["previous_note"])
    lines += [""] + [s["text"] for s in doc["ship"]]
    lines += [""] + gate_lines(doc)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# the files: sections shared by markdown and html


def layer_tables(layers: dict[str, dict]) -> dict[str, dict]:
    """collect.layers -> per variant {peak_layer, peak_alive_bytes, rows}: the per-layer table as text."""
    def shapes(ts):
        return " ".join(f"{t.get('dtype', '?')}{list(t.get('shape') or [])}" for t in ts or []
                        if not t.get("constant"))

    return {key: {"peak_layer": t["peak_layer"], "peak_alive_bytes": t["peak_alive_bytes"],
                  "rows": [[str(la.get("index")), str(la.get("op")), shapes(la.get("inputs")), shapes(la.get("outputs")),
                            fmt_int(la.get("params")), fmt_int(la.get("macs")), fmt_int(la.get("alive_bytes")),
                            "<- peak" if la.get("peak") else ""] for la in t["layers"]]}
            for key, t in layers.items()}


def diff_lines(changes: list[dict] | None) -> list[list[str]]:
    if not changes:
        return []
    return [[c["key"], c["status"], "; ".join(format_change(f, ch) for f, ch in c["changes"].items()) or "-"]
            for c in changes if c["status"] != "unchanged"]


def _sections(doc: dict, view: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, body) of each table the files show, in order."""
    rows = doc["rows"]
    out = []
    for rs in by_model(rows).values():
        out.append((model_title(rs),) + cells(MAIN, view, rs, rows)[1:])
    for task, rs in by_task(rows).items():
        out.append((figures_title(task),) + cells(FIGURES, view, rs, rows)[1:])
    out.append(("Model sizes",) + cells(SIZES, view, C.table_rows(SIZES, rows), rows)[1:])
    b = C.table_rows(BREAKDOWN, rows)
    if b:
        out.append(("Where every byte goes (from the linked ELF)",) + cells(BREAKDOWN, view, b, rows)[1:])
    for g in sweeps(rows):
        out.append((sweep_title(g),) + sweep_cells(g, view, rows)[1:])
    for key, t in (doc.get("layers") or {}).items():
        out.append((f"Layers of {key} (activation peak: layer {t['peak_layer']}, {fmt_int(t['peak_alive_bytes'])} B)",
                    LAYER_HEADERS, t["rows"]))
    return out


def headroom_note(doc: dict) -> str:
    return f"Fits with headroom: {doc['headroom'] * 100:.0f} % of each board's flash and RAM kept free."


# --------------------------------------------------------------------------------------------
# markdown


def md_table(headers: list[str], body: list[list[str]]) -> list[str]:
    def esc(s):
        return str(s).replace("|", "\\|")

    return (["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
            + ["| " + " | ".join(esc(c) for c in row) + " |" for row in body])


def markdown(doc: dict) -> str:
    out = ["# doit-tinyml report", "", headroom_note(doc), ""]
    for title, h, b in _sections(doc, MD):
        out += [f"## {title}", ""] + md_table(h, b) + [""]
    lat = latency_lines(doc["rows"])
    if lat:
        out += ["## Time per inference", ""] + [f"- {x}" for x in lat] + [""]
    if doc.get("warnings"):
        out += ["## Warnings", ""] + [f"- {w}" for w in warning_lines(doc["warnings"])] + [""]
    out += ["## What to ship", ""] + [f"- {s['text']}" for s in doc["ship"]] + [""]
    out += ["## Changes since the previous report", "", doc["previous_note"], ""]
    d = diff_lines(doc["diff"])
    if d:
        out += md_table(DIFF_HEADERS, d) + [""]
    out += ["## CI gate", ""]
    out += ([f"- FAILED: {x}" for x in doc["gate_failures"]] or [f"- {gate_lines(doc)[0].replace('gate: ', '')}"]) + [""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# csv and json


def csv_text(rows: list[dict]) -> str:
    """One line per row, every csv column's raw value (header: the row field)."""
    cols = C.select(None, CSV)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c.key for c in cols])
    for r in rows:
        w.writerow([C.csv_value(c, r) for c in cols])
    return buf.getvalue()


def finite(obj):
    """A copy with every NaN or infinity (from an older, non-strict artifact) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def json_text(doc: dict, where: str = "report.json") -> str:
    return dumps_json(finite(doc), where=where)


# --------------------------------------------------------------------------------------------
# html


def html_table(headers: list[str], body: list[list[str]]) -> str:
    e = html.escape
    return ("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in body)
            + "</tbody></table>")


def inline_svg(svg: str) -> str:
    """An SVG file's text from its <svg> element on (no XML prolog or doctype), to inline in html."""
    i = svg.find("<svg")
    return svg[i:] if i >= 0 else svg


def html_page(doc: dict, figures: list[tuple[str, str]] = (), sweep_figures: list[tuple[str, str]] = ()) -> str:
    """report.html; figures: (title, svg text) of the trade-off plots; sweep_figures: of the sweep plots."""
    e = html.escape
    sections = _sections(doc, HTML)
    n_main = len(by_model(doc["rows"]))
    parts = ["<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>doit-tinyml report</title><style>",
             "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}"
             "td:first-child,th:first-child{text-align:left}.fail{color:#b00}.ok{color:#070}"
             ".plots{display:flex;flex-wrap:wrap;gap:1em}",
             "</style></head><body><h1>doit-tinyml report</h1>",
             f"<p>{headroom_note(doc)}</p>"]
    for title, h, b in sections[:n_main]:
        parts.append(f"<h2>{e(title)}</h2>" + html_table(h, b))
    lat = latency_lines(doc["rows"])
    if lat:
        parts.append("<h2>Time per inference</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in lat) + "</ul>")
    parts.append("<h2>Trade-offs</h2><div class=\"plots\">")
    parts += [f"<figure>{inline_svg(svg)}</figure>" for _, svg in figures]
    parts.append("</div>")
    for title, h, b in sections[n_main:]:
        parts.append(f"<h2>{e(title)}</h2>" + html_table(h, b))
    if sweep_figures:
        parts.append("<h2>Sweeps against the swept value</h2><div class=\"plots\">")
        parts += [f"<figure>{inline_svg(svg)}</figure>" for _, svg in sweep_figures]
        parts.append("</div>")
    if doc.get("warnings"):
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li class=\"fail\">{e(w)}</li>"
                                                         for w in warning_lines(doc["warnings"])) + "</ul>")
    parts.append("<h2>What to ship</h2><ul>" + "".join(f"<li>{e(s['text'])}</li>" for s in doc["ship"]) + "</ul>")
    parts.append(f"<h2>Changes since the previous report</h2><p>{e(doc['previous_note'])}</p>")
    d = diff_lines(doc["diff"])
    if d:
        parts.append(html_table(DIFF_HEADERS, d))
    parts.append("<h2>CI gate</h2>")
    if doc["gate_failures"]:
        parts.append("<ul>" + "".join(f"<li class=\"fail\">FAILED: {e(x)}</li>" for x in doc["gate_failures"]) + "</ul>")
    else:
        parts.append(f"<p class=\"ok\">{e(gate_lines(doc)[0].replace('gate: ', ''))}</p>")
    parts.append("</body></html>\n")
    return "".join(parts)

