"""`doit report`: tables, diff, ship recommendation, CI gate, files, plots, lazy imports.

The inputs are artifacts written in the contract format of docs/ARTIFACTS.md (as the stages write
them), in a temporary build folder; the report reads them from disk like in a real build.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from doit_tinyml import report
from doit_tinyml.engine.errors import TinyMLError
from doit_tinyml.engine import artifacts
from doit_tinyml.engine.io import write_json
from doit_tinyml.engine.reporting import plots

ROOT = Path(__file__).resolve().parents[1]
BOARDS = {"nano33ble": (983040, 262144), "uno": (32256, 2048)}


@pytest.fixture(autouse=True)
def quick_plots(request, monkeypatch):
    """matplotlib takes a few tenths of a second a plot: a test that does not look at them gets a stand-in."""
    if "real_plots" in request.fixturenames:
        return

    def draw(s):
        svg = f'<svg xmlns="http://www.w3.org/2000/svg"><title>{s.title}</title></svg>'
        return plots.Plot(s.name, s.title, b"\x89PNG stand-in", svg.encode())

    monkeypatch.setattr(plots, "draw", draw)


@pytest.fixture
def real_plots():
    """The plots are drawn by matplotlib (see quick_plots)."""


DEFAULTS = {
    "metrics": {"task": "regression", "counts": {"test": 100}, "tflite_bytes": 3184, "primary": {}, "litert": {},
                "tflm": {}, "keras": None, "agreement": None},
    "analysis": {"tflite_bytes": 3184, "tflite_gzip_bytes": 2000, "flatbuffer": {}, "ops": [], "op_count": 0,
                 "n_subgraphs": 1, "input": {}, "output": {}, "inputs": [], "outputs": [], "params": 0, "macs": 0,
                 "hybrid": False, "float16": False, "arena": None, "arena_margin": 0.1, "tflm_compatible": True,
                 "problems": [], "layers": [], "peak_layer": None, "peak_alive_bytes": 0},
    "convert": {"converter": "keras", "chosen": "keras", "quantization": "int8", "io": "int8", "qat": False,
                "representative_samples": 100, "tflite_bytes": 3184, "keras_bytes": 20000, "methods": {},
                "errors": {}},
    "size": {"breakdown": {}},
}
RECORD = {"metrics": artifacts.Metrics, "analysis": artifacts.Analysis, "convert": artifacts.Convert,
          "size": artifacts.Size}


def put(path: Path, kind: str, fields: dict) -> None:
    """Write an artifact record as its stage would: the given fields over plausible defaults."""
    artifacts.write(path, RECORD[kind](**{**DEFAULTS[kind], **fields}))


def variant(build: Path, model: str, name: str, *, task="regression", value=0.07, keras=0.068,
            tflite=3184, boards=None, runtime="tflm", analysis=True, metrics=True, tflm_error=None,
            tflm_compatible=True, required=False, trained_bytes=20000, h5_bytes=20000, history=None,
            metrics_extra=None, quantization=None, sweep=None) -> list[dict]:
    """Write one variant's artifacts; return its report entries (one per board, as tasks/dag.py builds them).

    h5_bytes: the trained model's weights-only HDF5 (history.json), the baseline the sizes compare with;
    history: more history.json fields; metrics_extra: more fields of the primary runtime's block;
    quantization: convert.json's (default: the variant name); sweep: the entry's sweep point.
    """
    vd = build / model / name
    primary = {"regression": ("mae", False), "multiclass": ("accuracy", True), "binary": ("accuracy", True),
               "autoencoder": ("f1", True)}[task]
    trained = build / model / "trained.keras"
    trained.parent.mkdir(parents=True, exist_ok=True)
    trained.write_bytes(b"k" * trained_bytes)
    write_json(build / model / "history.json", {"loss": [1.0, 0.5], "val_loss": [1.1, 0.6], "epochs_run": 2,
                                                "params": 321, "weights_h5_bytes": h5_bytes,
                                                "weights_h5_gzip_bytes": h5_bytes // 2, **(history or {})})
    if metrics:
        rt = "litert" if tflm_error else "tflm"
        block = {primary[0]: value, **(metrics_extra or {})}
        put(vd / "metrics.json", "metrics", {
            "task": task, "primary": {"name": primary[0], "value": value, "higher_is_better": primary[1], "runtime": rt},
            "keras": {primary[0]: keras}, "litert": block,
            "tflm": {"error": tflm_error} if tflm_error else block,
            "agreement": {"max_abs_error_vs_keras": 0.01}})
    if analysis:
        put(vd / "analysis.json", "analysis", {
            "tflite_bytes": tflite, "flatbuffer": {"data_bytes": tflite - 1000, "non_data_bytes": 1000},
            "ops": ["FULLY_CONNECTED"], "n_subgraphs": 1, "params": 321, "macs": 288, "hybrid": False,
            "arena": {"host_bytes": 1520, "target32_bytes": 1200, "margin": 0.1, "bytes": 1328},
            "tflm_compatible": tflm_compatible,
            "problems": [] if tflm_compatible else [{"op": "FULLY_CONNECTED", "message": "hybrid weights (float input, int8 filter)",
                                                      "fix": "quantization = \"int8\""}]})
    put(vd / "convert.json", "convert", {"converter": "keras", "chosen": "keras", "quantization": quantization or name,
                                         "tflite_bytes": tflite, "keras_bytes": trained_bytes})
    (vd / "model_data.cc").write_text("x" * (tflite * 6))
    base = {"model": model, "variant": name, "required": required, "task": task, "metrics": vd / "metrics.json",
            "analysis": vd / "analysis.json", "convert": vd / "convert.json", "compress": None, "aot": None,
            "header": vd / "model_data.cc", "trained": trained, "history": build / model / "history.json",
            "sweep": sweep}
    if not boards:
        return [{**base, "board": None, "runtime": None, "size": None}]
    entries = []
    for board, used in boards.items():
        size = vd / board / runtime / "size.json"
        if used is not None:
            flash, ram = used[0], used[1]
            estimate = len(used) > 2 and used[2]
            fl, rl = BOARDS[board]
            put(size, "size", {"board": board, "runtime": runtime, "estimate": estimate, "flash_used": flash,
                              "flash_limit": fl, "ram_used": ram, "ram_limit": rl, "fits": flash <= fl and ram <= rl,
                              "flash_over_by": max(0, flash - fl), "ram_over_by": max(0, ram - rl),
                              "breakdown": {}})
        entries.append({**base, "board": board, "runtime": runtime, "size": size})
    return entries


def sine_project(build: Path) -> list[dict]:
    return (variant(build, "sine", "float", value=0.050, keras=0.050, tflite=3900,
                    boards={"nano33ble": (60000, 9000), "uno": (36000, 1500)})
            + variant(build, "sine", "int8", value=0.071, keras=0.050, tflite=3184,
                      boards={"nano33ble": (40000, 8000), "uno": (28000, 1600)})
            + variant(build, "sine", "int16", value=0.055, keras=0.050, tflite=3500,
                      boards={"nano33ble": (50000, 8500), "uno": (31000, 1900)}))


def table_line(out: str, *words: str) -> str:
    hits = [ln for ln in out.splitlines() if all(w in ln for w in words)]
    assert len(hits) == 1, (words, hits)
    return hits[0]


# ------------------------------------------------------------------ the table


def test_terminal_table_and_files(tmp_path, capsys):
    entries = sine_project(tmp_path) + variant(tmp_path, "kws", "int8", task="multiclass", value=0.91, keras=0.93,
                                               tflite=18000, boards={"nano33ble": (120000, 40000)})
    code = report.run(entries, tmp_path, headroom=0.10, gates={}, previous=None)
    out = capsys.readouterr().out
    assert code == 0
    line = table_line(out, "int8", "nano33ble", "0.0710")
    assert "+0.0210" in line                      # MAE rose by 0.021 against Keras
    assert "40,000 / 983,040 4.1%" in line and "8,000 / 262,144 3.1%" in line and line.rstrip().endswith("yes")
    uno = table_line(out, "float", "uno")
    assert "NO (+3,744 B flash over)" in uno      # 36000 - 32256
    assert "kws  (multiclass; accuracy, higher is better)" in out
    assert "-0.0200" in table_line(out, "int8", "nano33ble", "0.9100", "18,000")
    assert "/ 32,256" in uno and "/ 2,048" in uno   # the Uno's limits, on its own row
    main = out.split("model sizes")[0]
    assert max(len(ln) for ln in main.splitlines()) <= 120
    sizes = table_line(out, "sine/int8", "3,184")
    assert "2,184" in sizes and "1,000" in sizes and "1,328" in sizes and "15.9%" in sizes  # 3184 / 20000

    doc = json.loads((tmp_path / "report.json").read_text())
    assert len(doc["rows"]) == 7
    r = next(r for r in doc["rows"] if r["variant"] == "int8" and r["board"] == "uno")
    assert (r["flash_used"], r["flash_limit"], r["fits"], r["tflite_bytes"]) == (28000, 32256, "yes", 3184)
    assert r["c_source_bytes"] == 3184 * 6 and r["keras_bytes"] == 20000
    with open(tmp_path / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7 and rows[0]["model"] == "sine" and rows[0]["flash_limit"] == "983040"
    md = (tmp_path / "report.md").read_text()
    assert "## Model sizes" in md and "| int8 | uno | tflm | 3,184 | 0.0710 | 0.0500 | +0.0210 | 28,000 | 32,256 |" in md
    assert not list(tmp_path.glob(".tmp-*"))


def test_missing_and_incompatible_artifacts_never_crash(tmp_path, capsys):
    entries = (variant(tmp_path, "sine", "hybrid", tflm_error="Input type: FLOAT32 with filter type: INT8 not supported.",
                       tflm_compatible=False, boards={"nano33ble": None})
               + variant(tmp_path, "sine", "int8", metrics=False, analysis=False, boards={"nano33ble": None})
               + variant(tmp_path, "sine", "float", boards=None))
    (tmp_path / "sine" / "float" / "convert.json").write_text("{ truncated")
    code = report.run(entries, tmp_path, gates={}, previous=None)
    out = capsys.readouterr().out
    assert code == 0
    assert "incompatible (FULLY_CONNECTED: hybrid weights" in table_line(out, "hybrid", "nano33ble")  # cut to fit the terminal
    line = table_line(out, "int8", "nano33ble")
    assert "missing (size.json)" in line and " - " in line
    rows = {r["variant"]: r for r in json.loads((tmp_path / "report.json").read_text())["rows"]}
    assert rows["int8"]["missing"] == ["analysis", "metrics", "size"]
    assert rows["float"]["missing"] == ["convert"] and rows["float"]["fits"] == "-"
    assert rows["hybrid"]["metric_runtime"] == "litert"
    assert rows["hybrid"]["fits_text"] == "incompatible (FULLY_CONNECTED: hybrid weights (float input, int8 filter))"
    assert rows["hybrid"]["fits"] == "incompatible"


def test_odd_artifact_contents_show_as_unknown(tmp_path, capsys):
    [e] = variant(tmp_path, "sine", "int8", boards={"nano33ble": (40000, 8000)})
    write_json(e["metrics"], {"primary": ["not", "a", "dict"], "keras": None})  # not the metrics record
    write_json(e["analysis"], {"tflite_bytes": "big", "tflm_compatible": False, "problems": ["custom op FOO"]})
    write_json(e["size"], {"flash_used": None, "fits": None})
    (tmp_path / "prev.json").write_text("[1, 2]")
    assert report.run([e], tmp_path, gates={}, previous=tmp_path / "prev.json") == 0
    out = capsys.readouterr().out
    assert "The previous report" in out and "unreadable" in out
    row = json.loads((tmp_path / "report.json").read_text())["rows"][0]
    assert row["value"] is None and row["flash_used"] is None and row["tflite_bytes"] == 3184  # from convert.json
    assert row["missing"] == ["analysis", "metrics", "size"] and row["fits"] == "missing"


# ------------------------------------------------------------------ diff against the previous report


def test_diff_against_previous_report(tmp_path, capsys):
    entries = sine_project(tmp_path)
    report.run(entries, tmp_path, gates={}, previous=tmp_path / "report.json")
    assert "No previous report" in capsys.readouterr().out

    # retrain: int8 gets better and bigger; int16 goes; a new variant comes
    entries = [e for e in entries if e["variant"] != "int16"]
    entries = [e for e in entries if e["variant"] != "int8"] + variant(
        tmp_path, "sine", "int8", value=0.065, keras=0.050, tflite=3200,
        boards={"nano33ble": (40016, 8000), "uno": (28016, 1600)})
    entries += variant(tmp_path, "sine", "pruned", value=0.06, boards={"nano33ble": (39000, 8000)})
    report.run(entries, tmp_path, gates={}, previous=tmp_path / "report.json")
    out = capsys.readouterr().out
    line = table_line(out, "sine/int8 @ nano33ble", "->")
    assert "tflite 3,184 -> 3,200 (+16)" in line
    assert "metric 0.0710 -> 0.0650 (-0.0060)" in line
    assert "flash 40,000 -> 40,016 (+16)" in line and "RAM" not in line
    assert "removed" in table_line(out, "sine/int16 @ uno")
    assert "new" in table_line(out, "sine/pruned @ nano33ble")
    assert "(2 rows unchanged)" in out  # float on both boards
    doc = json.loads((tmp_path / "report.json").read_text())
    st = {d["key"]: d["status"] for d in doc["diff"]}
    assert st["sine/float @ nano33ble"] == "unchanged" and st["sine/int16 @ nano33ble"] == "removed"
    assert doc["diff"][[d["key"] for d in doc["diff"]].index("sine/int8 @ uno")]["changes"]["value"]["delta"] == pytest.approx(-0.006)


# ------------------------------------------------------------------ what to ship


def test_ship_picks_most_accurate_variant_that_fits_with_headroom(tmp_path, capsys):
    entries = sine_project(tmp_path)
    # on nano33ble everything fits: the most accurate (lowest MAE) is float
    # on uno float is too big, int16 fits but leaves less than 10 % RAM (1900 / 2048 = 92.8 %): int8 ships
    report.run(entries, tmp_path, headroom=0.10, gates={}, previous=None)
    out = capsys.readouterr().out
    assert "Ship: nano33ble -> sine/float (MAE 0.0500, flash 6.1 %, RAM 3.4 %)" in out
    assert "Ship: uno -> sine/int8 (MAE 0.0710, flash 86.8 %, RAM 78.1 %)" in out
    # with 5 % headroom int16 (flash 96.1 %) still does not qualify; with 0 it does
    report.run(entries, tmp_path, headroom=0.0, gates={}, previous=None)
    assert "Ship: uno -> sine/int16 (MAE 0.0550" in capsys.readouterr().out


def test_ship_higher_is_better_and_nothing_fits(tmp_path, capsys):
    entries = (variant(tmp_path, "kws", "a", task="multiclass", value=0.90, keras=0.92, boards={"uno": (30000, 1000)})
               + variant(tmp_path, "kws", "b", task="multiclass", value=0.85, keras=0.92, boards={"uno": (20000, 1000)})
               + variant(tmp_path, "big", "float", boards={"uno": (90000, 9000)}))
    report.run(entries, tmp_path, headroom=0.05, gates={}, previous=None)
    out = capsys.readouterr().out
    assert "Ship: uno -> kws/a (accuracy 0.9000" in out
    assert "Ship: uno -> nothing of big fits with 5 % headroom" in out


# ------------------------------------------------------------------ CI gate


def test_gate_required_variant_must_fit(tmp_path, capsys):
    entries = sine_project(tmp_path)
    assert report.run(entries, tmp_path, gates={"required": [("sine", "int8")]}, previous=None) == 0
    assert "gate: passed" in capsys.readouterr().out
    code = report.run(entries, tmp_path, gates={"required": [("sine", "float"), ("sine", "int8")]}, previous=None)
    out = capsys.readouterr().out
    assert code == 1
    assert "GATE FAILED: sine/float is required but does not fit on uno: NO (+3,744 B flash over)" in out
    assert "int8 is required" not in out
    assert report.run(entries, tmp_path, gates={"required": [("sine", "nope")]}, previous=None) == 1
    assert "sine/nope is required but is not in this build" in capsys.readouterr().out
    # the required flag on an entry (from tinyml.toml) works as well
    flagged = [dict(e, required=(e["variant"] == "float")) for e in entries]
    assert report.run(flagged, tmp_path, gates={}, previous=None) == 1
    assert "float *" in capsys.readouterr().out


def test_gate_required_without_size_fails(tmp_path, capsys):
    entries = variant(tmp_path, "sine", "int8", boards={"nano33ble": None})
    assert report.run(entries, tmp_path, gates={"required": [["sine", "int8"]]}, previous=None) == 1
    assert "sine/int8 is required but its firmware for nano33ble has no size.json" in capsys.readouterr().out


def test_gate_accuracy_drop(tmp_path, capsys):
    entries = (variant(tmp_path, "kws", "int8", task="multiclass", value=0.90, keras=0.93, boards={"nano33ble": (1, 1)})
               + variant(tmp_path, "kws", "float", task="multiclass", value=0.93, keras=0.93))
    int8 = {"required": [("kws", "int8")]}
    assert report.run(entries, tmp_path, gates={"max_accuracy_drop": 0.05, **int8}, previous=None) == 0
    capsys.readouterr()
    assert report.run(entries, tmp_path, gates={"max_accuracy_drop": 0.02, **int8}, previous=None) == 1
    out = capsys.readouterr().out
    assert "GATE FAILED: kws/int8 loses 0.03 accuracy against the Keras reference (0.9300 -> 0.9000); allowed: 0.02" in out
    assert "kws/float" not in out.split("GATE")[1]
    # only required variants are gated
    assert report.run(entries, tmp_path, gates={"max_accuracy_drop": 0.02, "required": [("kws", "float")]},
                      previous=None) == 0
    capsys.readouterr()
    # with no variant marked required nothing is gated: a weak experimental variant does not fail the build
    assert report.run(entries, tmp_path, gates={"max_accuracy_drop": 0.02}, previous=None) == 0
    out = capsys.readouterr().out
    assert "gate: passed (no variant is marked required, so nothing is gated)" in out and "GATE FAILED" not in out
    # for an error metric the gate is on a rise
    reg = variant(tmp_path, "sine", "int8", value=0.081, keras=0.05, required=True)
    assert report.run(reg, tmp_path, gates={"max_accuracy_drop": 0.02}, previous=None) == 1
    assert "sine/int8 rises by 0.031 MAE" in capsys.readouterr().out
    nometrics = variant(tmp_path, "sine", "q", metrics=False, required=True)
    assert report.run(nometrics, tmp_path, gates={"max_accuracy_drop": 0.02}, previous=None) == 1
    assert "sine/q: no metrics.json" in capsys.readouterr().out


def test_runtime_column_only_when_runtimes_differ(tmp_path, capsys):
    entries = variant(tmp_path, "sine", "int8", boards={"nano33ble": (40000, 8000)})
    report.run(entries, tmp_path, gates={}, previous=None)
    assert "runtime" not in table_line(capsys.readouterr().out, "variant", "board")
    entries += variant(tmp_path, "sine", "int8", boards={"nano33ble": (30000, 6000)}, runtime="aot")
    report.run(entries, tmp_path, gates={}, previous=None)
    out = capsys.readouterr().out
    assert "runtime" in table_line(out, "variant", "board")
    assert "aot" in table_line(out, "int8", "30,000 /")
    assert "Ship: nano33ble -> sine/int8 [aot] (MAE 0.0700, flash 3.1 %" in out  # same MAE: smaller flash wins


def test_headroom_validation(tmp_path):
    with pytest.raises(TinyMLError, match="headroom"):
        report.run([], tmp_path, headroom=10, gates={}, previous=None)


# ------------------------------------------------------------------ html and plots


def test_html_holds_svg_tradeoff_plots(tmp_path, capsys, real_plots):
    entries = sine_project(tmp_path) + variant(tmp_path, "sine", "nosize", boards={"uno": None})
    report.run(entries, tmp_path, headroom=0.2, gates={}, previous=None)
    text = (tmp_path / "report.html").read_text()
    assert text.count("<svg") == 2 and "sine: MAE against flash" in text and "sine: MAE against RAM" in text
    ns = "{http://www.w3.org/2000/svg}"

    def marks(g):  # what a group draws: <use> of a marker, or a <path> of its own (not the marker definitions)
        defined = {id(e) for d in g.iter(ns + "defs") for e in d.iter()}
        return [e for e in g.iter() if e.tag in (ns + "use", ns + "path") and id(e) not in defined]

    for svg in text.split("<svg")[1:]:
        root = ET.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")  # well-formed XML
        groups = {g.get("id") or "": g for g in root.iter(ns + "g")}   # matplotlib: one group per artist, id = its gid
        points = [m for gid, g in groups.items() if ".points." in gid for m in marks(g)]
        assert len(points) == 6  # 3 variants x 2 boards; the one without size.json is not plotted
        assert len([gid for gid in groups if gid.endswith((".limit", ".headroom"))]) == 2
        assert len(marks(groups[next(gid for gid in groups if gid.endswith(".ship"))])) == 1  # the variant to ship
        assert "20 % headroom" in "".join(root.itertext())
    assert "<table>" in text and "Ship: nano33ble -&gt; sine/float" in text
    for name in ("sine-mae-vs-flash", "sine-mae-vs-ram"):   # the same plots as files
        assert (tmp_path / "plots" / f"{name}.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        svg = (tmp_path / "plots" / f"{name}.svg").read_text()
        assert svg[svg.index("<svg"):] in text


def test_entries_with_paths_dict(tmp_path, capsys):
    [e] = variant(tmp_path, "sine", "int8", boards={"nano33ble": (40000, 8000)})
    keys = ("metrics", "analysis", "size", "convert", "compress")
    entry = {"model": "sine", "variant": "int8", "board": "nano33ble", "paths": {k: e[k] for k in keys}}
    assert report.collect([entry])[0]["flash_used"] == 40000


# ------------------------------------------------------------------ stays light


def test_report_prints_before_importing_anything_heavy(tmp_path):
    """The tables need neither numpy nor TensorFlow; matplotlib (and its numpy) comes after, for the plots."""
    entries = variant(tmp_path, "sine", "int8", boards={"nano33ble": (40000, 8000)})
    for e in entries:
        for k, v in list(e.items()):
            if isinstance(v, Path):
                e[k] = str(v)
    code = (
        "import builtins, sys, json\nimport doit_tinyml.report as r\n"
        "heavy = ('numpy', 'tensorflow', 'tf_keras', 'matplotlib')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "assert not bad, bad\n"
        "seen = []\n"
        "def spy(*a, **k):\n"
        "    seen.append([m for m in heavy if m in sys.modules])\n"
        "    builtins.print(*a, **k)\n"
        "r.print = spy\n"
        f"r.run(json.loads({json.dumps(json.dumps(entries))}), {str(tmp_path)!r}, gates={{}}, previous=None)\n"
        "assert seen[0] == [], seen\n"
        "bad = [m for m in ('tensorflow', 'tf_keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Ship: nano33ble -> sine/int8" in proc.stdout
    assert (tmp_path / "plots" / "sine-mae-vs-flash.svg").is_file()


def test_a_metric_that_is_not_a_number_is_never_shipped(tmp_path, capsys):
    """An older, non-strict metrics.json holding NaN: the row says so, the ship line skips it, report.json stays JSON."""
    entries = (variant(tmp_path, "sine", "float", value=0.050, keras=0.050, boards={"nano33ble": (40000, 8000)})
               + variant(tmp_path, "sine", "broken", value=0.01, keras=0.050, boards={"nano33ble": (30000, 7000)}))
    path = tmp_path / "sine" / "broken" / "metrics.json"
    path.write_text(path.read_text().replace('"value": 0.01', '"value": NaN'))
    assert report.run(entries, tmp_path) == 0
    out = capsys.readouterr().out
    ship = next(ln for ln in out.splitlines() if ln.startswith("Ship: nano33ble"))
    assert "sine/float" in ship and "broken" not in ship
    doc = json.loads((tmp_path / "report.json").read_text())  # strict: would raise on NaN
    row = next(r for r in doc["rows"] if r["variant"] == "broken")
    assert row["fits"] == "failed" and "not a finite number" in row["fits_text"]


def test_artifacts_are_strict_json(tmp_path):
    with pytest.raises(TinyMLError, match=r"metrics\.json: the figure at tflm\.mae is not a finite number"):
        write_json(tmp_path / "metrics.json", {"tflm": {"mae": float("nan")}})
    assert not (tmp_path / "metrics.json").exists()
