"""The trade-off plots: each model's metric against flash % and against RAM % of each board's limit.

`tradeoffs` picks the points (plain data, no plotting library); `draw` renders one `Scatter` with
matplotlib (Agg, imported here only: the no-op `doit` never draws) to PNG and SVG bytes that depend
only on the input: the SVG ids come from a fixed salt, and neither file carries a date or a
software version. A future view (e.g. a metric against a swept setting) is another `Scatter`.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

from .columns import metric_label, shorten
from .render import by_model

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
LIMIT_COLOUR, HEADROOM_COLOUR = "#d62728", "#ff7f0e"


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


def draw(s: Scatter) -> Plot:
    """One scatter plot as PNG and SVG bytes (identical input, identical bytes)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rc = {"svg.hashsalt": f"doit-tinyml:{s.name}", "svg.fonttype": "none", "font.size": 9,
          "axes.titlesize": 11, "axes.titleweight": "bold"}
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
        png, svg = io.BytesIO(), io.BytesIO()
        fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None, "Title": s.title})
        fig.savefig(png, format="png", metadata={"Software": None})
    return Plot(s.name, s.title, png.getvalue(), svg.getvalue())


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
