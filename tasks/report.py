"""`doit report`: every variant on every board, flash and RAM against the board's limits, accuracy beside.

The stage: read the artifacts (engine/reporting/collect), decide fits, what to ship, the CI gates and
the changes since the previous report.json and the warnings (decide), print the terminal tables and
write report.md, report.json, report.csv and report.html (render, from one column specification:
columns.py), the trade-off plots build/plots/<model>-<metric>-vs-<flash|ram>.png/.svg and the sweep
plots build/plots/sweep-<group>-vs-<key>.png/.svg (plots), all atomically.
The report never recomputes a figure, never imports numpy or TensorFlow for its tables (matplotlib,
for the plots, only after the tables are printed), and never crashes on a missing artifact.
User guide: docs/report.md.
"""
from __future__ import annotations

from pathlib import Path

from .engine.reporting import collect as _collect, decide, plots, render
from .engine.errors import TinyMLError
from .engine import artifacts
from .engine.io import write_bytes, write_text

PLOTS_DIR = "plots"


def collect(entries: list[dict], failed_dir: Path | None = None) -> list[dict]:
    """One row per (model, variant, board, runtime), every figure read from an artifact, with its fits verdict."""
    return decide.judge(_collect.read(entries, failed_dir))


def run(entries: list[dict], out_dir: Path, *, headroom: float = 0.10, gates: dict | None = None,
        previous: Path | None = None, failed_dir: Path | None = None) -> int:
    """Print the report; write report.md/.json/.csv/.html and plots/ into out_dir; return 1 if a gate failed, else 0."""
    if not isinstance(headroom, (int, float)) or not 0 <= headroom < 1:
        raise TinyMLError(f"report: headroom = {headroom!r}; give a fraction in [0, 1), e.g. 0.10 for 10 % "
                          "(the [report] headroom key in tinyml.toml)")
    out_dir = Path(out_dir)
    settings = decide.gate_settings(gates)
    rows = decide.judge(_collect.read(entries, failed_dir), headroom=headroom, required=settings["required"])

    prev_rows, status = _collect.previous_rows(previous)
    changes, note = None, "No previous report: this one is the baseline for the next comparison."
    if status == "ok":
        changes, note = decide.diff(rows, prev_rows), f"Compared with the previous report ({_shown(previous)}):"
    elif status == "unreadable":
        note = f"The previous report {_shown(previous)} is unreadable; nothing to compare."

    doc = {"headroom": headroom, "rows": rows, "ship": decide.ship(rows, headroom), "diff": changes,
           "layers": render.layer_tables(_collect.layers(entries)), "previous_note": note,
           "gate_failures": decide.check_gates(rows, gates), "gates": settings,
           "warnings": decide.warning_list(rows)}
    print(render.terminal(doc), flush=True)

    write_text(out_dir / "report.md", render.markdown(doc))
    write_text(out_dir / "report.csv", render.csv_text(rows))
    artifacts.write(out_dir / "report.json", artifacts.Report(**render.finite(doc)))
    drawn = [plots.draw(s) for s in plots.tradeoffs(rows, headroom, doc["ship"])]  # imports matplotlib
    swept = [plots.draw(s) for s in plots.sweep_plots(rows)]
    for p in drawn + swept:
        write_bytes(out_dir / PLOTS_DIR / f"{p.name}.png", p.png)
        write_bytes(out_dir / PLOTS_DIR / f"{p.name}.svg", p.svg)
    _remove_stale_plots(out_dir / PLOTS_DIR, {p.name for p in drawn + swept})
    write_text(out_dir / "report.html", render.html_page(doc, [(p.title, p.svg.decode("utf-8")) for p in drawn],
                                                         [(p.title, p.svg.decode("utf-8")) for p in swept]))
    written = f"written: {_shown(Path(out_dir) / 'report.md')}, report.json, report.csv, report.html"
    if drawn or swept:
        written += f", {PLOTS_DIR}/ ({len(drawn) + len(swept)} plots, PNG and SVG)"
    print(written, flush=True)
    return 1 if doc["gate_failures"] else 0


def _shown(path: Path) -> Path:
    """`path` as the user would type it: relative to where doit runs when it is below it."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return Path(path)


def _remove_stale_plots(folder: Path, names: set[str]) -> None:
    """Plots of models, metrics or sweeps no longer in the build (only files this stage names)."""
    if folder.is_dir():
        for f in folder.glob("*-vs-*.*"):
            ours = f.stem.rsplit("-vs-", 1)[1] in ("flash", "ram") or f.stem.startswith(plots.SWEEP_PREFIX)
            if f.suffix in (".png", ".svg") and f.stem not in names and ours:
                f.unlink(missing_ok=True)
