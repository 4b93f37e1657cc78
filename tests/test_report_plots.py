"""The trade-off plots (matplotlib, PNG and SVG) and the reporting engine's layering."""
from __future__ import annotations

from pathlib import Path

from doit_tinyml import report
from doit_tinyml.engine.reporting import plots
from test_report import quick_plots, real_plots, sine_project, variant  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]


def scatter(points=None):
    pts = points if points is not None else (plots.Point(6.1, 0.05, "nano33ble", "float", ship=True),
                                             plots.Point(86.8, 0.071, "uno", "int8"),
                                             plots.Point(111.6, 0.05, "uno", "float"))
    return plots.Scatter("sine-mae-vs-flash", "sine: MAE against flash", "flash used, % of the board's limit",
                         "MAE (lower is better)", points=pts,
                         vlines=(plots.VLine(100.0, "limit", plots.LIMIT_COLOUR, name="limit"),
                                 plots.VLine(90.0, "10 % headroom", plots.HEADROOM_COLOUR, True, "headroom")))


def test_identical_input_gives_identical_bytes(tmp_path, real_plots):
    a, b = plots.draw(scatter()), plots.draw(scatter())
    assert a.png == b.png and a.svg == b.svg
    assert a.png.startswith(b"\x89PNG\r\n\x1a\n") and b"<svg" in a.svg
    # no timestamp, no software version in either file
    assert b"<dc:date>" not in a.svg and b"Matplotlib v" not in a.svg
    assert b"Software" not in a.png and b"atplotlib" not in a.png
    # the whole stage: two builds with the same artifacts write the same plot files
    for d in ("one", "two"):
        report.run(sine_project(tmp_path / d), tmp_path / d, gates={}, previous=None)
    files = sorted(p.name for p in (tmp_path / "one" / "plots").iterdir())
    assert files == ["sine-mae-vs-flash.png", "sine-mae-vs-flash.svg", "sine-mae-vs-ram.png", "sine-mae-vs-ram.svg"]
    for name in files:
        assert (tmp_path / "one" / "plots" / name).read_bytes() == (tmp_path / "two" / "plots" / name).read_bytes()


def test_a_model_without_sizes_gets_an_empty_plot(real_plots):
    p = plots.draw(scatter(points=()))
    assert b"no data yet" in p.svg and p.png.startswith(b"\x89PNG")


def test_plots_follow_the_rows(tmp_path, capsys):
    entries = sine_project(tmp_path) + variant(tmp_path, "nometric", "int8", metrics=False, boards={"uno": (1, 1)})
    (tmp_path / "plots").mkdir()
    for name in ("gone-mae-vs-flash.png", "gone-mae-vs-ram.svg", "notes.txt"):
        (tmp_path / "plots" / name).write_text("x")
    report.run(entries, tmp_path, gates={}, previous=None)
    assert "plots/ (2 plots, PNG and SVG)" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "notes.txt", "sine-mae-vs-flash.png", "sine-mae-vs-flash.svg", "sine-mae-vs-ram.png", "sine-mae-vs-ram.svg"]
    specs = plots.tradeoffs(report.collect(entries), 0.1)
    assert [s.name for s in specs] == ["sine-mae-vs-flash", "sine-mae-vs-ram"]  # no metric: no plot
    assert len(specs[0].points) == 6 and not any(p.ship for p in specs[0].points)
