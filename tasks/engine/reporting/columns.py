"""Every column of the report, defined once for every format.

A row (collect.py, decide.py) is a dict of raw figures. A `Column` says how one of them is shown:
its header, its formatter, its alignment, the tables it belongs to and the views that show it.
render.py builds the terminal, markdown, html and csv tables from this list, in this order, and
report.json holds the rows themselves; nothing else names a column.

    tables: "main"      one row per model/variant/board/runtime (a table per model)
            "figures"   one row per model/variant (a table per task): the test-split figures people
                        compare; a column with `tasks` shows only in the tables of those tasks
            "sizes"     one row per model/variant (the model's own bytes)
            "breakdown" the rows whose size.json has a linked-ELF breakdown (not estimates)
            "sweep"     one row per sweep point x variant x board/runtime (a table per sweep group,
                        after the swept values, which render.py puts first)
    views:  "terminal", "md", "html" (tables of formatted cells), "csv" (raw values, header = key),
            "json" (the row field in report.json)

A composite cell (`uses`) is formatted from other columns' values, e.g. the terminal's
"flash used / limit"; it is not a field itself, the figures it shows are (tests check that
report.json and report.csv carry every figure the terminal shows). A cell longer than `width` is
wrapped onto more lines in the terminal (names), or (`overflow = "note"`: the fits reasons, so each
row stays one line) ends in a note number and is printed whole below the table. Nothing is cut.
Adding a column is one line:

    Column("latency_ms", "ms / inference", fmt_float, RIGHT),
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..latency import fmt_ms

TERMINAL, MD, HTML, CSV, JSON = "terminal", "md", "html", "csv", "json"
MAIN, SIZES, BREAKDOWN, FIGURES, SWEEP = "main", "sizes", "breakdown", "figures", "sweep"
TABLES = (MAIN, FIGURES, SIZES, BREAKDOWN, SWEEP)
LEFT, RIGHT = "left", "right"

EVERYWHERE = frozenset({TERMINAL, MD, HTML, CSV, JSON})
FILES = frozenset({MD, HTML, CSV, JSON})        # all but the terminal
DATA = frozenset({CSV, JSON})                   # raw figures, no table
JSON_ONLY = frozenset({JSON})
SHOWN = frozenset({TERMINAL, MD, HTML})          # composite cells: tables only
WIDE = frozenset({MD, HTML})
TERMINAL_ONLY = frozenset({TERMINAL})

METRIC_LABELS = {"mae": "MAE", "rmse": "RMSE", "accuracy": "accuracy", "f1": "F1"}
CLASSIFY = frozenset({"binary", "multiclass", "autoencoder"})
REGRESS = frozenset({"regression"})
ANOMALY = frozenset({"autoencoder"})
TASK_TITLES = {"regression": "regression", "binary": "binary classification",
               "multiclass": "multiclass classification (macro averages)",
               "autoencoder": "anomaly detection (autoencoder)"}


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
    if abs(v) < 10:
        v = round(v, 4) + 0.0  # no "-0.0000": a difference that rounds to zero is +0.0000
        return f"{v:+.4f}"
    return f"{v:+.4g}"


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


def fmt_latency(v, kind=None) -> str:
    """'1.23 m' measured on the board, '~1.23' an estimate (from a QEMU instruction count)."""
    if v is None:
        return "-"
    return f"{fmt_ms(v)} m" if kind == "measured" else f"~{fmt_ms(v)}"


def fmt_latency_band(ms, low, high, kind=None, why=None) -> str:
    """'1.23 measured' (on the board), '~1.23 (0.9-1.8)' (an estimate and its band, in ms), or why there is no
    figure: '- (no TFLM library)'."""
    if ms is None:
        return f"- ({why})" if why else "-"
    if kind == "measured":
        return f"{fmt_ms(ms)} measured"
    band = f" ({fmt_ms(low)}-{fmt_ms(high)})" if low is not None and high is not None else ""
    return f"~{fmt_ms(ms)}{band}"


LATENCY_LEGEND = ("ms / inference: '~x (low-high)' an estimate from the instruction profile counted under QEMU, with "
                  "the band the truth lies in; 'x measured' the median on the board itself (measure stage)")


def fmt_times(v) -> str:
    """A ratio as a factor: 0.27x."""
    return "-" if v is None else f"{v:.2f}x"


def fmt_vote(rule, k, window, t, error) -> str:
    """How the voted figures were decided: 'groups of 25, flagged > mean + 1 * std (T = 1.70)'."""
    if error:
        return f"not voted: {error}"
    if not window:
        return "-"
    what = {"max": "max", "mean+k*std": f"mean + {k:g} * std" if isinstance(k, (int, float)) else "mean + k * std"}
    t = f" (T = {t:.3g})" if isinstance(t, (int, float)) else ""
    return f"groups of {window}, flagged > {what.get(rule, rule or '?')}{t}"


def csv_sweep_values(v) -> str:
    return ";".join(f"{k}={x}" for k, x in (v or {}).items())


def csv_texts(v) -> str:
    return " | ".join(v or [])


def _precision_header(rows: list[dict]) -> str:
    return "precision (macro)" if any(r.get("average") == "macro" for r in rows) else "precision"


def fmt_used(used, limit, pct, estimate=False) -> str:
    """'used / limit pct' in bytes, the figures PlatformIO printed, so they can be checked by eye; '~used'
    when the figure is (partly) estimated (size.json "estimate": true)."""
    return "-" if used is None else f"{'~' if estimate else ''}{fmt_int(used)} / {fmt_int(limit)} {fmt_pct(pct)}"


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


def _any_latency(rows: list[dict]) -> bool:
    return any(r.get("latency_ms") is not None or r.get("latency_why") for r in rows)


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
    width: int | None = None                  # terminal: longer cells are wrapped to this width, or with
    overflow: str = "wrap"                    #   "note": shown up to a note number, whole in a note below
    tasks: frozenset | None = None            # shown in tables only when one of the table's rows has such a task
    terminal_if: Callable[[list[dict]], bool] | None = None  # terminal: shown only when true of all rows
    csv: Callable[[Any], Any] | None = None   # csv encoding of the raw value (default: the value, "" for None)
    diff: str | None = None                   # compared with the previous report, under this label
    delta: Callable[[Any], str] = fmt_signed_int  # the diff's delta format


MS = (MAIN, SIZES, SWEEP)
MB = (MAIN, BREAKDOWN, SWEEP)
FIG = (FIGURES,)

COLUMNS: tuple[Column, ...] = (
    # ---- identity
    Column("model", "model", views=DATA),
    Column("variant", "variant", views=DATA),
    Column("required", "required", views=DATA),
    Column("variant_label", "variant", fmt_variant, views=SHOWN, uses=("variant", "required"), width=18,
           tables=(MAIN, SWEEP)),
    Column("model_variant", "model/variant", fmt_model_variant, views=SHOWN, tables=(FIGURES, SIZES, BREAKDOWN),
           uses=("model", "variant"), width=28),
    Column("board", "board", width=20, tables=MB),
    Column("runtime", "runtime", tables=MB, terminal_if=_any_runtime_but_tflm),
    Column("task", "task", views=DATA),
    Column("quantization", "quantization", views=DATA),
    Column("sweep_group", "sweep group", views=DATA),
    Column("sweep_kind", "sweep kind", views=DATA),
    Column("sweep_values", "swept values", views=DATA, csv=csv_sweep_values),
    Column("sweep_keys", "swept keys", views=JSON_ONLY),
    # ---- the model and its accuracy
    Column("tflite_bytes", "tflite B", fmt_int, RIGHT, tables=MS, diff="tflite"),
    Column("metric", "metric", views=DATA),
    Column("value", table_metric_label, fmt_metric, RIGHT, diff="metric", delta=fmt_delta, tables=(MAIN, SWEEP)),
    Column("higher_is_better", "higher is better", views=DATA),
    Column("metric_runtime", "figures from", tables=FIG, short="from"),
    Column("test_samples", "test samples", fmt_int, RIGHT, tables=FIG, short="samples"),
    Column("mae", "MAE", fmt_metric, RIGHT, tables=FIG, tasks=REGRESS),
    Column("rmse", "RMSE", fmt_metric, RIGHT, tables=FIG, tasks=REGRESS),
    Column("accuracy", "accuracy", fmt_metric, RIGHT, tables=FIG, tasks=CLASSIFY),
    Column("precision", _precision_header, fmt_metric, RIGHT, tables=FIG, tasks=CLASSIFY),
    Column("recall", "recall", fmt_metric, RIGHT, tables=FIG, tasks=CLASSIFY),
    Column("f1", "F1", fmt_metric, RIGHT, tables=FIG, tasks=CLASSIFY),
    Column("average", "average", views=DATA),
    Column("voted_accuracy", "voted accuracy", fmt_metric, RIGHT, tables=FIG, tasks=ANOMALY, short="voted acc"),
    Column("voted_precision", "voted precision", fmt_metric, RIGHT, tables=FIG, tasks=ANOMALY, short="voted prec"),
    Column("voted_recall", "voted recall", fmt_metric, RIGHT, tables=FIG, tasks=ANOMALY, short="voted rec"),
    Column("voted_f1", "voted F1", fmt_metric, RIGHT, tables=FIG, tasks=ANOMALY),
    Column("anomaly_threshold", "error threshold", fmt_metric, RIGHT, tables=FIG, tasks=ANOMALY, short="threshold"),
    Column("anomaly_error", "error", tables=FIG, tasks=ANOMALY),
    Column("vote_rule", "vote rule", views=DATA),
    Column("vote_k", "vote k", views=DATA),
    Column("vote_window", "vote window", views=DATA),
    Column("vote_count_threshold", "vote count threshold", views=DATA),
    Column("vote_error", "vote error", views=DATA),
    Column("voting", "voting", fmt_vote, views=WIDE, tables=FIG, tasks=ANOMALY,
           uses=("vote_rule", "vote_k", "vote_window", "vote_count_threshold", "vote_error")),
    Column("distinct_predictions", "distinct predictions", fmt_int, RIGHT, views=FILES, tables=FIG),
    Column("keras_value", "keras", fmt_metric, RIGHT, views=FILES),
    Column("delta_vs_keras", "vs keras", fmt_delta, RIGHT),
    Column("drop", "drop vs keras", views=JSON_ONLY),
    Column("tflm_error", "TFLM error", views=JSON_ONLY),
    # ---- the board
    Column("flash_used", "flash used", fmt_int, RIGHT, views=FILES, diff="flash", tables=(MAIN, SWEEP)),
    Column("flash_limit", "flash limit", fmt_int, RIGHT, views=FILES),
    Column("flash_pct", "flash %", fmt_pct, RIGHT, views=FILES),
    Column("flash_used_of_limit", "flash used / limit", fmt_used, RIGHT, views=TERMINAL_ONLY,
           uses=("flash_used", "flash_limit", "flash_pct", "estimate")),
    Column("ram_used", "RAM used", fmt_int, RIGHT, views=FILES, diff="RAM", tables=(MAIN, SWEEP)),
    Column("ram_limit", "RAM limit", fmt_int, RIGHT, views=FILES),
    Column("ram_pct", "RAM %", fmt_pct, RIGHT, views=FILES),
    Column("ram_used_of_limit", "RAM used / limit", fmt_used, RIGHT, views=TERMINAL_ONLY,
           uses=("ram_used", "ram_limit", "ram_pct", "estimate")),
    Column("sweep_flash", "flash B", fmt_int, RIGHT, views=TERMINAL_ONLY, tables=(SWEEP,), uses=("flash_used",)),
    Column("sweep_ram", "RAM B", fmt_int, RIGHT, views=TERMINAL_ONLY, tables=(SWEEP,), uses=("ram_used",)),
    Column("latency_ms", "ms / inference", views=DATA),
    Column("latency_sweep", "ms / inference", fmt_latency, RIGHT, views=SHOWN, tables=(SWEEP,), short="ms/inf",
           uses=("latency_ms", "latency_kind")),
    Column("latency_low_ms", "ms / inference low", views=DATA),
    Column("latency_high_ms", "ms / inference high", views=DATA),
    Column("latency_kind", "ms / inference is", views=DATA),
    Column("latency_why", "no ms / inference because", views=DATA),
    Column("latency_note", "ms / inference note", views=DATA),
    Column("latency_cell", "ms / inference", fmt_latency_band, RIGHT, views=SHOWN, tables=(MAIN,),
           uses=("latency_ms", "latency_low_ms", "latency_high_ms", "latency_kind", "latency_why"), short="ms/inf",
           terminal_if=_any_latency),
    Column("latency_basis", "latency basis", views=JSON_ONLY),
    Column("max_latency_ms", "max ms / inference", views=DATA),
    Column("flash_over_by", "flash over by", views=JSON_ONLY),
    Column("ram_over_by", "RAM over by", views=JSON_ONLY),
    Column("fits", "fits", views=DATA),
    Column("fits_text", "fits", views=FILES),
    Column("fits_short", "fits", fmt_fits_short, views=TERMINAL_ONLY, uses=("fits", "fits_text"), width=60,
           overflow="note"),
    Column("estimate", "estimate", views=DATA),
    Column("fits_with_headroom", "fits with headroom", views=DATA),
    Column("failed", "failed", views=JSON_ONLY),
    # ---- the model's own bytes
    Column("data_bytes", "data B", fmt_int, RIGHT, tables=(SIZES,), short="data"),
    Column("non_data_bytes", "non-data B", fmt_int, RIGHT, tables=(SIZES,), short="non-data"),
    Column("c_source_bytes", "C array B", fmt_int, RIGHT, tables=(SIZES,), short="C array"),
    Column("arena_bytes", "arena B", fmt_int, RIGHT, tables=(SIZES,), short="arena"),
    Column("params", "params", fmt_int, RIGHT, tables=(SIZES,)),
    Column("macs", "MACs", fmt_int, RIGHT, tables=(SIZES,)),
    Column("tflite_gzip_bytes", "tflite gzip B", fmt_int, RIGHT, tables=(SIZES,), short="gzip"),
    Column("keras_h5_bytes", "keras h5 B", fmt_int, RIGHT, tables=(SIZES,), short="keras h5"),
    Column("keras_h5_gzip_bytes", "keras h5 gzip B", fmt_int, RIGHT, tables=(SIZES,), short="h5 gzip"),
    Column("ratio_vs_keras", "tflite / keras h5", fmt_ratio, RIGHT, tables=(SIZES,), short="vs h5"),
    Column("gzip_ratio_vs_keras", "tflite gzip / keras h5 gzip", fmt_ratio, RIGHT, tables=(SIZES,),
           short="gzip vs h5"),
    Column("compressed_h5_bytes", "compressed h5 B", fmt_int, RIGHT, views=FILES, tables=(SIZES,)),
    Column("compressed_h5_gzip_bytes", "compressed h5 gzip B", fmt_int, RIGHT, views=FILES, tables=(SIZES,)),
    Column("keras_bytes", "keras file B", views=DATA),
    Column("keras_gzip_bytes", "keras file gzip B", views=DATA),
    Column("aot_planned_bytes", "AOT arena B", fmt_int, RIGHT, tables=(SIZES,), short="AOT arena",
           terminal_if=_any_aot),
    Column("aot_instructions", "AOT instr/inference", fmt_int, RIGHT, tables=(SIZES,), short="AOT instr/inf",
           terminal_if=_any_aot),
    Column("float_ratio_tflite", "tflite vs float32", fmt_times, RIGHT, tables=(SWEEP,), short="tflite/f32"),
    Column("float_ratio_time", "time vs float32", fmt_times, RIGHT, tables=(SWEEP,), short="time/f32"),
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
    Column("breakdown_basis", "from", tables=(BREAKDOWN,)),
    # ---- training (history.json)
    Column("epochs", "epochs", views=DATA),
    Column("epochs_run", "epochs run", views=DATA),
    Column("early_stopped", "early stopped", views=DATA),
    Column("best_val_loss", "best val loss", views=DATA),
    # ---- what is missing, what is wrong
    Column("missing", "missing", fmt_list, views=FILES, csv=csv_list),
    Column("warnings", "warnings", views=DATA, csv=csv_texts),
    Column("ship_blocked_by", "ship blocked by", views=DATA, csv=csv_texts),
)

BY_KEY: dict[str, Column] = {c.key: c for c in COLUMNS}
DIFFED: tuple[Column, ...] = tuple(c for c in COLUMNS if c.diff)


# --------------------------------------------------------------------------------------------
# using the specification


def table_rows(table: str, rows: list[dict]) -> list[dict]:
    """The rows a table shows: every row (main), one per model/variant (figures, sizes), the linked-ELF
    breakdowns, the rows of a sweep point (sweep)."""
    if table == FIGURES:
        return [r for r in table_rows(SIZES, rows) if r.get("metric")]
    if table == SWEEP:
        return [r for r in rows if r.get("sweep_group")]
    if table == SIZES:
        seen, out = set(), []
        for r in rows:
            if (r["model"], r["variant"]) not in seen:
                seen.add((r["model"], r["variant"]))
                out.append(r)
        return out
    if table == BREAKDOWN:
        return [r for r in rows if (r.get("breakdown") or {}).get("flash")]
    return list(rows)


def select(table: str | None, view: str, context: list[dict] = (), rows: list[dict] | None = None) -> list[Column]:
    """The columns `view` shows, in order; `table` None: every table's (csv, json).

    context: all the report's rows, for the terminal's optional columns (runtime, AOT);
    rows: the table's rows, for the columns of some tasks only (none given: every column).
    """
    tasks = None if rows is None else {r.get("task") for r in rows}
    return [c for c in COLUMNS
            if view in c.views and (table is None or table in c.tables)
            and (view != TERMINAL or c.terminal_if is None or c.terminal_if(list(context)))
            and (table is None or c.tasks is None or tasks is None or bool(c.tasks & tasks))]


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
