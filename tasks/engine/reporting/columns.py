"""Every column of the report, defined once for every format.

A row (collect.py, decide.py) is a dict of raw figures. A `Column` says how one of them is shown:
its header, its formatter, its alignment, the tables it belongs to and the views that show it.
render.py builds the terminal, markdown, html and csv tables from this list, in this order, and
report.json holds the rows themselves; nothing else names a column.

    tables: "main"      one row per model/variant/board/runtime (a table per model)
            "sizes"     one row per model/variant (the model's own bytes)
            "breakdown" the rows whose size.json has a linked-ELF breakdown (not estimates)
    views:  "terminal", "md", "html" (tables of formatted cells), "csv" (raw values, header = key),
            "json" (the row field in report.json)

A composite cell (`uses`) is formatted from other columns' values, e.g. the terminal's
"flash used / limit"; it is not a field itself, the figures it shows are (tests check that
report.json and report.csv carry every figure the terminal shows). Adding a column is one line:

    Column("latency_ms", "ms / inference", fmt_float, RIGHT),
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

TERMINAL, MD, HTML, CSV, JSON = "terminal", "md", "html", "csv", "json"
MAIN, SIZES, BREAKDOWN = "main", "sizes", "breakdown"
LEFT, RIGHT = "left", "right"

EVERYWHERE = frozenset({TERMINAL, MD, HTML, CSV, JSON})
FILES = frozenset({MD, HTML, CSV, JSON})        # all but the terminal
DATA = frozenset({CSV, JSON})                   # raw figures, no table
JSON_ONLY = frozenset({JSON})
SHOWN = frozenset({TERMINAL, MD, HTML})          # composite cells: tables only
WIDE = frozenset({MD, HTML})
TERMINAL_ONLY = frozenset({TERMINAL})

METRIC_LABELS = {"mae": "MAE", "rmse": "RMSE", "accuracy": "accuracy", "f1": "F1"}


# --------------------------------------------------------------------------------------------
# formatters: raw value(s) -> cell text ("-" for unknown)


def metric_label(name: str | None) -> str:
    return METRIC_LABELS.get(name, name or "metric")


def fmt_text(v) -> str:
    return "-" if v is None or v == "" else str(v)


def fmt_metric(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.4g}"


def fmt_delta(v) -> str:
    if v is None:
        return "-"
    return f"{v:+.4f}" if abs(v) < 10 else f"{v:+.4g}"


def fmt_int(n) -> str:
    return "-" if n is None else f"{int(n):,}"


def fmt_signed_int(n) -> str:
    return "-" if n is None else f"{int(n):+,}"


def fmt_pct(p) -> str:
    return "-" if p is None else f"{p:.1f}%"


def fmt_ratio(v) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def fmt_list(v) -> str:
    return ", ".join(v or []) or "-"


def fmt_used(used, limit, pct) -> str:
    """'used / limit pct' in bytes, the figures PlatformIO printed, so they can be checked by eye."""
    return "-" if used is None else f"{fmt_int(used)} / {fmt_int(limit)} {fmt_pct(pct)}"


def fmt_variant(variant, required) -> str:
    return f"{variant}{' *' if required else ''}"


def fmt_model_variant(model, variant) -> str:
    return f"{model}/{variant}"


def fmt_fits_short(fits, fits_text) -> str:
    return "missing (size.json)" if fits == "missing" else fits_text


def shorten(text: str, n: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def csv_list(v) -> str:
    return ";".join(v or [])


def table_metric_label(rows: list[dict]) -> str:
    """The header of the metric column: the label of the table's metric (MAE, accuracy, ...)."""
    return metric_label(next((r["metric"] for r in rows if r.get("metric")), None))


def _breakdown(part: str, key: str) -> Callable[[dict], Any]:
    def get(row: dict):
        b = row.get("breakdown")
        p = b.get(part) if isinstance(b, dict) else None
        return p.get(key) if isinstance(p, dict) else None
    return get


def _any_runtime_but_tflm(rows: list[dict]) -> bool:
    return any(r.get("runtime") not in (None, "tflm") for r in rows)


def _any_aot(rows: list[dict]) -> bool:
    return any(r.get("aot_planned_bytes") is not None for r in rows)


# --------------------------------------------------------------------------------------------
# the specification


@dataclass(frozen=True)
class Column:
    key: str                                  # the row field (csv header, report.json key); a name for a composite
    header: str | Callable[[list[dict]], str]  # md/html (and terminal unless `short`); callable: of the table's rows
    fmt: Callable[..., str] = fmt_text        # raw value (or the `uses` values) -> cell text
    align: str = LEFT
    views: frozenset = EVERYWHERE
    tables: tuple = (MAIN,)
    short: str | None = None                  # terminal header
    uses: tuple = ()                          # composite: formatted from these columns' values
    get: Callable[[dict], Any] | None = None  # the raw value when it is not row[key]
    width: int | None = None                  # terminal: longer cells are cut to this width
    terminal_if: Callable[[list[dict]], bool] | None = None  # terminal: shown only when true of all rows
    csv: Callable[[Any], Any] | None = None   # csv encoding of the raw value (default: the value, "" for None)
    diff: str | None = None                   # compared with the previous report, under this label
    delta: Callable[[Any], str] = fmt_signed_int  # the diff's delta format


MS = (MAIN, SIZES)
MB = (MAIN, BREAKDOWN)

COLUMNS: tuple[Column, ...] = (
    # ---- identity
    Column("model", "model", views=DATA),
    Column("variant", "variant", views=DATA),
    Column("required", "required", views=DATA),
    Column("variant_label", "variant", fmt_variant, views=SHOWN, uses=("variant", "required"), width=14),
    Column("model_variant", "model/variant", fmt_model_variant, views=SHOWN, tables=(SIZES, BREAKDOWN),
           uses=("model", "variant"), width=28),
    Column("board", "board", width=20, tables=MB),
    Column("runtime", "runtime", tables=MB, terminal_if=_any_runtime_but_tflm),
    Column("task", "task", views=DATA),
    # ---- the model and its accuracy
    Column("tflite_bytes", "tflite B", fmt_int, RIGHT, tables=MS, diff="tflite"),
    Column("metric", "metric", views=DATA),
    Column("value", table_metric_label, fmt_metric, RIGHT, diff="metric", delta=fmt_delta),
    Column("higher_is_better", "higher is better", views=DATA),
    Column("metric_runtime", "metric runtime", views=DATA),
    Column("keras_value", "keras", fmt_metric, RIGHT, views=FILES),
    Column("delta_vs_keras", "vs keras", fmt_delta, RIGHT),
    Column("drop", "drop vs keras", views=JSON_ONLY),
    Column("tflm_error", "TFLM error", views=JSON_ONLY),
    # ---- the board
    Column("flash_used", "flash used", fmt_int, RIGHT, views=FILES, diff="flash"),
    Column("flash_limit", "flash limit", fmt_int, RIGHT, views=FILES),
    Column("flash_pct", "flash %", fmt_pct, RIGHT, views=FILES),
    Column("flash_used_of_limit", "flash used / limit", fmt_used, RIGHT, views=TERMINAL_ONLY,
           uses=("flash_used", "flash_limit", "flash_pct")),
    Column("ram_used", "RAM used", fmt_int, RIGHT, views=FILES, diff="RAM"),
    Column("ram_limit", "RAM limit", fmt_int, RIGHT, views=FILES),
    Column("ram_pct", "RAM %", fmt_pct, RIGHT, views=FILES),
    Column("ram_used_of_limit", "RAM used / limit", fmt_used, RIGHT, views=TERMINAL_ONLY,
           uses=("ram_used", "ram_limit", "ram_pct")),
    Column("flash_over_by", "flash over by", views=JSON_ONLY),
    Column("ram_over_by", "RAM over by", views=JSON_ONLY),
    Column("fits", "fits", views=DATA),
    Column("fits_text", "fits", views=FILES),
    Column("fits_short", "fits", fmt_fits_short, views=TERMINAL_ONLY, uses=("fits", "fits_text"), width=60),
    Column("estimate", "estimate", views=DATA),
    Column("fits_with_headroom", "fits with headroom", views=DATA),
    Column("failed", "failed", views=JSON_ONLY),
    # ---- the model's own bytes
    Column("data_bytes", "data B", fmt_int, RIGHT, tables=(SIZES,), short="data"),
    Column("non_data_bytes", "non-data B", fmt_int, RIGHT, tables=(SIZES,), short="non-data"),
    Column("c_source_bytes", "C source B", fmt_int, RIGHT, views=FILES, tables=(SIZES,)),
    Column("arena_bytes", "arena B", fmt_int, RIGHT, tables=(SIZES,), short="arena"),
    Column("params", "params", fmt_int, RIGHT, tables=(SIZES,)),
    Column("macs", "MACs", fmt_int, RIGHT, tables=(SIZES,)),
    Column("tflite_gzip_bytes", "tflite gzip B", fmt_int, RIGHT, tables=(SIZES,), short="gzip"),
    Column("keras_bytes", "keras B", fmt_int, RIGHT, views=FILES, tables=(SIZES,)),
    Column("keras_gzip_bytes", "keras gzip B", fmt_int, RIGHT, views=FILES, tables=(SIZES,)),
    Column("ratio_vs_keras", "tflite / keras", fmt_ratio, RIGHT, tables=(SIZES,), short="vs keras"),
    Column("aot_planned_bytes", "AOT arena B", fmt_int, RIGHT, tables=(SIZES,), short="AOT arena",
           terminal_if=_any_aot),
    Column("aot_instructions", "AOT instr/inference", fmt_int, RIGHT, tables=(SIZES,), short="AOT instr/inf",
           terminal_if=_any_aot),
    Column("aot_verified", "AOT verified", views=JSON_ONLY),
    # ---- where every byte goes (size.json "breakdown", from the linked ELF)
    Column("breakdown", "breakdown", views=JSON_ONLY),
    Column("flash_model", "flash: model", fmt_int, RIGHT, views=SHOWN | {CSV}, tables=(BREAKDOWN,),
           get=_breakdown("flash", "model")),
    Column("flash_inference", "inference", fmt_int, RIGHT, views=SHOWN | {CSV}, tables=(BREAKDOWN,),
           get=_breakdown("flash", "inference")),
    Column("flash_application", "application", fmt_int, RIGHT, views=SHOWN | {CSV}, tables=(BREAKDOWN,),
           get=_breakdown("flash", "application")),
    Column("ram_arena", "RAM: arena", fmt_int, RIGHT, views=SHOWN | {CSV}, tables=(BREAKDOWN,),
           get=_breakdown("ram", "arena")),
    Column("ram_stack_heap", "stack+heap", fmt_int, RIGHT, views=SHOWN | {CSV}, tables=(BREAKDOWN,),
           get=_breakdown("ram", "stack_heap")),
    Column("ram_application", "application", fmt_int, RIGHT, views=SHOWN | {CSV}, tables=(BREAKDOWN,),
           get=_breakdown("ram", "application")),
    # ---- what is missing
    Column("missing", "missing", fmt_list, views=FILES, csv=csv_list),
)

BY_KEY: dict[str, Column] = {c.key: c for c in COLUMNS}
DIFFED: tuple[Column, ...] = tuple(c for c in COLUMNS if c.diff)


# --------------------------------------------------------------------------------------------
# using the specification


def table_rows(table: str, rows: list[dict]) -> list[dict]:
    """The rows a table shows: every row (main), one per model/variant (sizes), the linked-ELF breakdowns."""
    if table == SIZES:
        seen, out = set(), []
        for r in rows:
            if (r["model"], r["variant"]) not in seen:
                seen.add((r["model"], r["variant"]))
                out.append(r)
        return out
    if table == BREAKDOWN:
        return [r for r in rows if r.get("breakdown") and not r.get("estimate")]
    return list(rows)


def select(table: str | None, view: str, context: list[dict] = ()) -> list[Column]:
    """The columns `view` shows, in order; `table` None: every table's (csv, json).

    context: all the report's rows, for the terminal's optional columns (runtime, AOT).
    """
    return [c for c in COLUMNS
            if view in c.views and (table is None or table in c.tables)
            and (view != TERMINAL or c.terminal_if is None or c.terminal_if(list(context)))]


def raw(col: Column, row: dict):
    """The column's raw value in `row` (a tuple of values for a composite)."""
    if col.uses:
        return tuple(raw(BY_KEY[k], row) for k in col.uses)
    return col.get(row) if col.get else row.get(col.key)


def cell(col: Column, row: dict) -> str:
    v = raw(col, row)
    return col.fmt(*v) if col.uses else col.fmt(v)


def header(col: Column, view: str, rows: list[dict]) -> str:
    if view == CSV:
        return col.key
    h = col.short if view == TERMINAL and col.short else col.header
    return h(rows) if callable(h) else h


def csv_value(col: Column, row: dict):
    v = raw(col, row)
    if col.csv is not None:
        return col.csv(v)
    return "" if v is None else v
