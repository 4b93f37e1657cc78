"""The sweep view: one row per point (x variant x board), the swept values first, the quantized / float32
ratios, and plots of size, RAM, time and the metric against the swept value (PNG and SVG, deterministic)."""
from __future__ import annotations

import json

from doit_tinyml import report
from doit_tinyml.engine.reporting import decide, plots, render
from test_report import quick_plots, real_plots, table_line, variant  # noqa: F401  (fixtures)

NANO = {"nano33ble": (40000, 8000)}


def model_sweep(build, widths=(100, 3, 20), boards=NANO):
    """sine<W> models (one per point), each with a float32 and an int8 variant."""
    entries = []
    for w in widths:
        sweep = {"group": "sine", "kind": "model", "values": {"units": w}, "keys": {"units": "model.layers[0].units"}}
        for q, tflite, mae in (("float32", 1000 + 160 * w, 0.05), ("int8", 1000 + 40 * w, 0.06)):
            used = {b: (f + w * 10, r + w) for b, (f, r) in boards.items()}
            entries += variant(build, f"sine{w}", q, value=mae, keras=0.05, tflite=tflite, boards=used, sweep=sweep)
    return entries


def sweep_section(out: str, title: str) -> str:
    return out.split(title + "\n", 1)[1].split("\n\n", 1)[0]


def test_model_sweep_table(tmp_path, capsys):
    report.run(model_sweep(tmp_path), tmp_path, gates={}, previous=None)
    out = capsys.readouterr().out
    t = sweep_section(out, "Sweep sine (models; units = model.layers[0].units)")
    head = t.splitlines()[0].split()
    assert head[:4] == ["units", "variant", "board", "tflite"] and "ms/inf" in head and "tflite/f32" in head
    body = t.splitlines()[2:]
    assert [ln.split()[0] for ln in body] == ["3", "3", "20", "20", "100", "100"]   # numeric order of the points
    line = table_line(t, "100", "int8")
    assert "5,000" in line and "41,000" in line and "8,100" in line and "0.0600" in line   # tflite, flash, RAM, MAE
    assert "0.29x" in line                 # 5000 / 17000
    assert line.split()[-1] == "-"         # no time measured: no time ratio
    doc = json.loads((tmp_path / "report.json").read_text())
    r = next(r for r in doc["rows"] if r["model"] == "sine100" and r["variant"] == "int8")
    assert (r["sweep_group"], r["sweep_kind"], r["sweep_values"], r["sweep_keys"]) == (
        "sine", "model", {"units": 100}, {"units": "model.layers[0].units"})
    assert r["float_ratio_tflite"] == 5000 / 17000 and r["float_ratio_time"] is None and r["latency_ms"] is None
    csv_text = (tmp_path / "report.csv").read_text()
    assert "units=100" in csv_text
    md = (tmp_path / "report.md").read_text()
    assert "## Sweep sine (models; units = model.layers[0].units)" in md
    assert "| 100 | int8 | nano33ble | tflm | 5,000 | 0.0600 | 41,000 | 8,100 | - | 0.29x | - |" in md


def test_variant_sweep_pairs_with_the_models_float32(tmp_path, capsys):
    entries = variant(tmp_path, "m", "float32", tflite=8000, boards=NANO)
    for s in (0.5, 0.75):
        entries += variant(tmp_path, "m", f"pruned_{s}", quantization="int8", tflite=int(2000 / s), boards=NANO,
                           sweep={"group": "pruned", "kind": "variant", "values": {"sparsity": s},
                                  "keys": {"sparsity": "variants.pruned.steps[0].final_sparsity"}})
    report.run(entries, tmp_path, gates={}, previous=None)
    out = capsys.readouterr().out
    t = sweep_section(out, "Sweep m/pruned (variants; sparsity = variants.pruned.steps[0].final_sparsity)")
    assert len(t.splitlines()) == 4 and "float32" not in t          # the points only
    assert "0.50x" in table_line(t, "0.5", "pruned_0.5")            # 4000 / 8000
    assert "0.33x" in table_line(t, "0.75", "pruned_0.75")


def test_float_ratios_need_one_float32_sibling_and_times():
    def row(model, variant, q, tflite, ms, board="b", **kw):
        return {"model": model, "variant": variant, "quantization": q, "tflite_bytes": tflite, "latency_ms": ms,
                "board": board, "runtime": "tflm", "sweep_kind": None, "sweep_group": None, "sweep_values": None, **kw}

    rows = [row("a", "f", "float32", 4000, 2.0), row("a", "q", "int8", 1000, 0.5), row("a", "q", "int8", 1000, 0.5, "c"),
            row("b", "f1", "float32", 4000, 2.0), row("b", "f2", "float32", 4100, 2.0), row("b", "q", "int16x8", 2000, 1.0)]
    decide.pair_with_float(rows)
    assert (rows[1]["float_ratio_tflite"], rows[1]["float_ratio_time"]) == (0.25, 0.25)
    assert rows[2]["float_ratio_tflite"] is None      # no float32 on board c
    assert rows[5]["float_ratio_tflite"] is None      # two float32 variants: ambiguous, no ratio
    assert rows[0]["float_ratio_tflite"] is None      # float32 itself


def test_sweep_table_shows_time_when_size_json_has_it():
    base = {"model": "m", "board": "b", "runtime": "tflm", "required": False, "sweep_group": "g", "sweep_kind": "model",
            "sweep_values": {"lr": 0.01}, "sweep_keys": {"lr": "training.learning_rate"}, "value": 0.5, "metric": "mae",
            "tflite_bytes": 1000, "flash_used": 1, "ram_used": 1, "aot_instructions": None}
    rows = [{**base, "variant": "q", "latency_ms": 1.25, "float_ratio_tflite": 0.3, "float_ratio_time": 0.4}]
    [g] = render.sweeps(rows)
    lines = render.terminal_sweep(g, rows)
    assert lines[0].split()[:2] == ["lr", "variant"] and "1.25" in lines[2] and "0.40x" in lines[2]
    assert render.sweep_title(g) == "Sweep g (models; lr = training.learning_rate)"


def test_sweep_plots_follow_the_values():
    rows = report.collect([])
    assert plots.sweep_plots(rows) == []
    base = {"board": "b", "runtime": "tflm", "sweep_group": "g", "sweep_kind": "model", "sweep_keys": {"k": "x.k"},
            "metric": "mae", "higher_is_better": False, "value": 0.1, "tflite_bytes": 1000, "ram_used": 10,
            "latency_ms": None, "float_ratio_tflite": None, "float_ratio_time": None, "quantization": "float32"}
    wide = [{**base, "model": f"m{v}", "variant": "float32", "sweep_values": {"k": v}} for v in (1, 50)]
    [p] = plots.sweep_plots(wide)
    assert p.name == "sweep-g-vs-k" and p.log_x and not p.categories
    assert [s.xs for s in p.panels[0].series] == [(1.0, 50.0)]
    assert p.panels[2].series == () and "latency_ms" in p.panels[2].empty
    named = [{**base, "model": f"m{v}", "variant": "float32", "sweep_values": {"k": v}} for v in ("adam", "sgd")]
    [p] = plots.sweep_plots(named)
    assert p.categories == ("adam", "sgd") and not p.log_x


def test_sweep_plots_in_files_and_html(tmp_path, capsys, real_plots):
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "sweep-gone-vs-units.svg").write_text("old")
    report.run(model_sweep(tmp_path / "one"), tmp_path / "one", gates={}, previous=None)
    report.run(model_sweep(tmp_path / "two"), tmp_path / "two", gates={}, previous=None)
    for d in ("one", "two"):
        assert (tmp_path / d / "plots" / "sweep-sine-vs-units.png").read_bytes().startswith(b"\x89PNG")
    for ext in ("png", "svg"):   # identical artifacts, identical bytes
        a = (tmp_path / "one" / "plots" / f"sweep-sine-vs-units.{ext}").read_bytes()
        assert a == (tmp_path / "two" / "plots" / f"sweep-sine-vs-units.{ext}").read_bytes()
    svg = (tmp_path / "one" / "plots" / "sweep-sine-vs-units.svg").read_text()
    page = (tmp_path / "one" / "report.html").read_text()
    assert svg[svg.index("<svg"):] in page and "Sweeps against the swept value" in page
    for panel in (".tflite size", "RAM used", "time per inference", "MAE", "quantized / float32"):
        assert panel in svg, panel
    # a sweep no longer in the build loses its plot files
    report.run(model_sweep(tmp_path), tmp_path, gates={}, previous=None)
    assert not (tmp_path / "plots" / "sweep-gone-vs-units.svg").exists()
    capsys.readouterr()
