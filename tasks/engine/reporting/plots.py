"""The report's plots: trade-offs (each model's metric against flash % and RAM % of each board's limit)
and sweeps (size, RAM, time, the metric and the quantized / float32 ratios against a swept value).

`tradeoffs` and `sweep_plots` pick the points (plain data, no plotting library); `draw` renders a
`Scatter` or a `Panels` with matplotlib (Agg, imported here only: the no-op `doit` never draws) to PNG
and SVG bytes that depend only on the input: the SVG ids come from a fixed salt, and neither file
carries a date or a software version.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

from .columns import metric_label, shorten
from .render import by_model, fmt_swept, sweeps

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
LIMIT_COLOUR, HEADROOM_COLOUR = "#d62728", "#ff7f0e"
SWEEP_PREFIX = "sweep-"
MARKERS = ("o", "s", "^", "D", "v", "P")


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    group: str          # one colour per group (the board)
    short: str          # the label beside the point (the variant)
    ship: bool = False  # ringed: the variant to ship


@dataclass(frozen=True)
class VLine:
    x: float
    label: str
    colour: str
    dashed: bool = False
    name: str = "line"  # the SVG group id's suffix


@dataclass(frozen=True)
class Scatter:
    name: str           # file stem, e.g. sine-mae-vs-flash
    title: str
    x_label: str
    y_label: str
    points: tuple = ()
    vlines: tuple = field(default=())


@dataclass(frozen=True)
class Series:
    label: str
    xs: tuple
    ys: tuple
    dashed: bool = False
    colour: int = 0     # the variant's colour, the same in every panel
    marker: int = 0     # the board's (and runtime's) marker


@dataclass(frozen=True)
class Panel:
    title: str
    y_label: str
    series: tuple = ()
    empty: str = "no data"


@dataclass(frozen=True)
class Panels:
    """Several line plots against one shared x (a swept value), in one figure."""
    name: str           # file stem, e.g. sweep-sine-vs-units
    title: str
    x_label: str
    panels: tuple = ()
    categories: tuple = ()   # non-numeric swept values, in order: a point's x is its index
    log_x: bool = False


@dataclass(frozen=True)
class Plot:
    name: str
    title: str
    png: bytes
    svg: bytes


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)) or "_"


def tradeoffs(rows: list[dict], headroom: float, shipped: list[dict] = ()) -> list[Scatter]:
    """Per model with a metric and per resource (flash, RAM): the metric against % of each board's limit."""
    out = []
    chosen = {(s["board"], s["model"], s["variant"], s["runtime"]) for s in shipped if s.get("variant")}
    for model, rs in by_model(rows).items():
        metric = next((r["metric"] for r in rs if r["metric"]), None)
        if metric is None:
            continue
        label = metric_label(metric)
        better = "higher is better" if next(r["higher_is_better"] for r in rs if r["metric"]) else "lower is better"
        for what, resource in (("flash", "flash"), ("ram", "RAM")):
            points = tuple(Point(r[f"{what}_pct"], r["value"], r["board"], r["variant"],
                                 (r["board"], r["model"], r["variant"], r["runtime"]) in chosen)
                           for r in rs if r[f"{what}_pct"] is not None and r["value"] is not None)
            out.append(Scatter(
                name=slug(f"{model}-{metric}-vs-{what}"), title=f"{model}: {label} against {resource}",
                x_label=f"{resource} used, % of the board's limit", y_label=f"{label} ({better})", points=points,
                vlines=(VLine(100.0, "limit", LIMIT_COLOUR, name="limit"),
                        VLine(100.0 * (1 - headroom), f"{headroom * 100:.0f} % headroom", HEADROOM_COLOUR,
                              dashed=True, name="headroom"))))
    return out


def sweep_plots(rows: list[dict]) -> list[Panels]:
    """Per sweep group and swept key: tflite size, RAM, time, the metric and the quantized / float32
    ratios against the swept value; one line per variant (per board and runtime for RAM and time)."""
    out = []
    for g in sweeps(rows):
        rs = g["rows"]
        keys = list(g["keys"])
        boards = list(dict.fromkeys((r["board"], r["runtime"]) for r in rs if r["board"]))

        def base(r):
            return r["variant"] if g["kind"] == "model" else (r.get("quantization") or g["group"])

        colours = list(dict.fromkeys(base(r) for r in rs))
        metric = next((r["metric"] for r in rs if r["metric"]), None)
        for key in keys:
            values = [(r["sweep_values"] or {}).get(key) for r in rs]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None)
            cats: tuple = ()
            if not numeric:
                cats = tuple(dict.fromkeys(fmt_swept(v) for v in values))

            def x_of(r, key=key, numeric=numeric, cats=cats):
                v = (r["sweep_values"] or {}).get(key)
                if v is None:
                    return None
                return float(v) if numeric else float(cats.index(fmt_swept(v)))

            def label(r, per_board=False, key=key):
                text = base(r)
                rest = [f"{k}={fmt_swept((r['sweep_values'] or {}).get(k))}" for k in keys if k != key]
                if per_board and len(boards) > 1:
                    text += f" @ {r['board']}" + (f" [{r['runtime']}]" if r["runtime"] not in (None, "tflm") else "")
                return text + (f" ({', '.join(rest)})" if rest else "")

            def series(field, per_board, dashed=False, suffix=""):
                pts: dict[str, dict] = {}
                style: dict[str, tuple] = {}
                for r in rs:
                    x, y = x_of(r), r.get(field)
                    if x is None or y is None or (per_board and not r["board"]):
                        continue
                    name = label(r, per_board) + suffix
                    pts.setdefault(name, {}).setdefault(x, float(y))
                    style.setdefault(name, (colours.index(base(r)),
                                            boards.index((r["board"], r["runtime"])) if per_board else 0))
                return tuple(Series(name, tuple(sorted(p)), tuple(p[x] for x in sorted(p)), dashed, *style[name])
                             for name, p in pts.items())

            xs = [x for x in (x_of(r) for r in rs) if x is not None]
            log_x = bool(numeric and xs and min(xs) > 0 and max(xs) / min(xs) > 10)
            label_m = metric_label(metric)
            better = ""
            if metric:
                hib = next(r["higher_is_better"] for r in rs if r["metric"])
                better = " (higher is better)" if hib else " (lower is better)"
            what = f"{g['model']}/{g['group']}" if g["kind"] == "variant" else g["group"]
            out.append(Panels(
                name=slug(f"{SWEEP_PREFIX}{what.replace('/', '-')}-vs-{key}"),
                title=f"sweep {what}: against {key}" + (f" ({g['keys'][key]})" if g["keys"][key] != key else ""),
                x_label=key + (" (log scale)" if log_x else ""), categories=cats, log_x=log_x,
                panels=(Panel(".tflite size", "bytes", series("tflite_bytes", False), "no .tflite size yet"),
                        Panel("RAM used", "bytes", series("ram_used", True), "no firmware size yet"),
                        Panel("time per inference", "ms", series("latency_ms", True),
                              "no time measured (size.json has no latency_ms)"),
                        Panel(label_m, label_m + better, series("value", False), "no metrics yet"),
                        Panel("quantized / float32", "ratio",
                              series("float_ratio_tflite", False, suffix=": size")
                              + series("float_ratio_time", True, dashed=True, suffix=": time"),
                              "no float32 variant at these points"))))
    return out


def draw(s) -> Plot:
    """One `Scatter` or `Panels` as PNG and SVG bytes (identical input, identical bytes)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rc = {"svg.hashsalt": f"doit-tinyml:{s.name}", "svg.fonttype": "none", "font.size": 9,
          "axes.titlesize": 11, "axes.titleweight": "bold"}
    if isinstance(s, Panels):
        with matplotlib.rc_context(rc):
            fig = Figure(figsize=(12.0, 6.6), dpi=100)
            FigureCanvasAgg(fig)
            _panels(fig, s)
            return _save(fig, s)
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(7.2, 3.6), dpi=100)
        FigureCanvasAgg(fig)
        fig.subplots_adjust(left=0.1, right=0.75, bottom=0.14, top=0.9)  # fixed: the legend is right of the axes
        ax = fig.add_subplot()
        ax.set_title(s.title)
        ax.set_xlabel(s.x_label)
        ax.set_ylabel(s.y_label)
        if not s.points:
            ax.text(0.5, 0.5, "no data yet (needs metrics.json and size.json)", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            _scatter(ax, s)
        return _save(fig, s)


def _save(fig, s) -> Plot:
    png, svg = io.BytesIO(), io.BytesIO()
    fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None, "Title": s.title})
    fig.savefig(png, format="png", metadata={"Software": None})
    return Plot(s.name, s.title, png.getvalue(), svg.getvalue())


def _panels(fig, s: Panels) -> None:
    fig.suptitle(s.title, fontweight="bold")
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.09, top=0.9, wspace=0.28, hspace=0.42)
    axes = fig.subplots(2, 3).flatten()
    axes[-1].set_axis_off()
    for ax, panel in zip(axes, s.panels):
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(s.x_label)
        ax.set_ylabel(panel.y_label)
        if not panel.series:
            ax.text(0.5, 0.5, panel.empty, ha="center", va="center", transform=ax.transAxes, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ax.grid(color="#eeeeee", linewidth=0.8)
        ax.set_axisbelow(True)
        for line in panel.series:
            ax.plot(line.xs, line.ys, marker=MARKERS[line.marker % len(MARKERS)], markersize=4, linewidth=1.4,
                    color=PALETTE[line.colour % len(PALETTE)], linestyle="--" if line.dashed else "-",
                    label=shorten(line.label, 30), gid=f"{s.name}.{slug(panel.title)}.{slug(line.label)}")
        if s.log_x:
            ax.set_xscale("log")
        if s.categories:
            ax.set_xticks(range(len(s.categories)), [shorten(c, 12) for c in s.categories])
        else:  # the swept values themselves as ticks, when there are few enough to read
            xs = sorted({x for line in panel.series for x in line.xs})
            if len(xs) <= 12:
                ax.set_xticks(xs, [f"{x:g}" for x in xs])
                ax.minorticks_off()
        ax.legend(fontsize=7, frameon=False)


def _scatter(ax, s: Scatter) -> None:
    xs = [p.x for p in s.points] + [v.x for v in s.vlines]
    ys = [p.y for p in s.points]
    ax.set_xlim(0.0, max(xs) * 1.08 or 1.0)
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.15 or abs(y_hi) * 0.05 or 0.05
    ax.set_ylim(y_lo - pad, y_hi + pad)
    ax.grid(axis="y", color="#eeeeee", linewidth=0.8)
    ax.set_axisbelow(True)
    for v in s.vlines:
        ax.axvline(v.x, color=v.colour, linestyle="--" if v.dashed else "-", linewidth=1.2, gid=f"{s.name}.{v.name}")
        ax.text(v.x, 0.98, v.label + " ", transform=ax.get_xaxis_transform(), ha="right", va="top", color=v.colour)
    groups = sorted({p.group for p in s.points})
    for i, g in enumerate(groups):
        colour = PALETTE[i % len(PALETTE)]
        pts = [p for p in s.points if p.group == g]
        ax.scatter([p.x for p in pts], [p.y for p in pts], s=40, color=colour, alpha=0.85, zorder=3,
                   label=shorten(g, 18), gid=f"{s.name}.points.{slug(g)}")
        for p in pts:
            ax.annotate(p.short, (p.x, p.y), xytext=(6, 4), textcoords="offset points", color=colour, fontsize=8)
    ship = [p for p in s.points if p.ship]
    if ship:
        ax.scatter([p.x for p in ship], [p.y for p in ship], s=180, facecolors="none", edgecolors="black",
                   linewidths=1.5, zorder=4, label="ship", gid=f"{s.name}.ship")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, borderaxespad=0.0)
