"""The column specification (tasks/engine/reporting/columns.py) is what every format shows.

Every column appears in each view it declares (terminal, md, html, csv, json), in the spec's order,
and report.json and report.csv carry every figure the terminal prints.
"""
from __future__ import annotations

import csv
import html
import json
import re

from doit_tinyml import report
from doit_tinyml.engine.reporting import columns as C, render
from doit_tinyml.engine import artifacts
from doit_tinyml.engine.io import write_json
from test_report import quick_plots, variant  # noqa: F401  (quick_plots: an autouse fixture)


def rich_project(build):
    """Two models, two runtimes, an AOT variant, ELF breakdowns, an estimate, a required variant, a failed build."""
    e = variant(build, "sine", "int8", required=True, boards={"nano33ble": (40000, 8000), "uno": (28000, 1600)})
    e += variant(build, "sine", "int8", runtime="aot", boards={"nano33ble": (30000, 6000), "uno": (20000, 1500, True)})
    e += variant(build, "sine", "float", value=0.05, keras=0.05, boards={"nano33ble": (50000, 9000), "uno": (36000, 1500)})
    e += variant(build, "kws", "int8", task="multiclass", value=0.9, keras=0.93, boards={"nano33ble": (70000, 20000)})
    e += variant(build, "tap", "float32", task="autoencoder", value=0.32, keras=0.33, boards={"nano33ble": (50000, 9000)},
                 metrics_extra={"accuracy": 0.8, "precision": 0.4, "recall": 0.27, "threshold": 0.12,
                                "reconstruction_error": "mae", "confusion_matrix": [[70, 6], [16, 8]],
                                "distinct_predictions": 2,
                                "voted": {"accuracy": 0.9, "precision": 0.6, "recall": 0.5, "f1": 0.54, "vote_window": 4,
                                          "vote_rule": "mean+k*std", "vote_k": 1.0, "vote_count_threshold": 1.7,
                                          "confusion_matrix": [[18, 2], [3, 2]]}})
    for width in (16, 256):  # a model sweep: two points, float32 and int8 each
        for q in ("float32", "int8"):
            e += variant(build, f"w{width}", q, value=0.05, keras=0.05, tflite=width * (160 if q == "float32" else 40),
                         boards={"nano33ble": (40000 + width, 8000 + width)},
                         sweep={"group": "w", "kind": "model", "values": {"units": width},
                                "keys": {"units": "model.layers[0].units"}})
    aot = build / "sine" / "int8" / "aot.json"
    artifacts.write(aot, artifacts.Aot(supported=True, planned_bytes=1234, instructions_per_inference=56789, passed=True))
    failed = build / "failed"
    write_json(failed / "firmware%3Akws%2Fint8%40nano33ble.json", {"stage": "firmware", "message": "compile error"})
    for x in e:
        x["chain"] = [f"firmware:{x['model']}/{x['variant']}@{x['board']}"]
        if (x["model"], x["variant"]) == ("sine", "int8"):
            x["aot"] = aot
        if x["board"] == "nano33ble" and x["model"] == "sine":
            s = artifacts.read_dict(x["size"], artifacts.Size)
            s["breakdown"] = {"flash": {"model": 3184, "inference": 0 if x["runtime"] == "tflm" else 5000,
                                        "application": 30000},
                              "ram": {"arena": 1328, "stack_heap": 4096, "application": 2000}}
            if x["runtime"] == "aot":  # a time per inference (an estimate from the AOT instruction count)
                s["latency_ms"], s["latency_basis"] = 1.25, {"band_ms": [0.9, 1.9], "instructions": 56789}
            artifacts.write(x["size"], artifacts.Size(**s))
    return e, failed


def run_rich(tmp_path, capsys):
    entries, failed = rich_project(tmp_path)
    report.run(entries, tmp_path, gates={}, previous=None, failed_dir=failed)
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "report.json").read_text())
    with open(tmp_path / "report.csv", newline="") as f:
        lines = list(csv.reader(f))
    return out, doc, lines


def shown(table, view):
    return [c for c in C.COLUMNS if table in c.tables and view in c.views]


def groups(rows):
    """The row sets the tables show, as (table, title, rows): one main table per model, sizes, breakdown
    (the figures and sweep tables: test_report_figures.py)."""
    out = [(C.MAIN, render.model_title(rs), rs) for rs in render.by_model(rows).values()]
    return out + [(C.SIZES, "Model sizes", C.table_rows(C.SIZES, rows)),
                  (C.BREAKDOWN, "Where every byte goes (from the linked ELF)", C.table_rows(C.BREAKDOWN, rows))]


def test_the_spec_is_consistent():
    keys = [c.key for c in C.COLUMNS]
    assert len(keys) == len(set(keys))
    for c in C.COLUMNS:
        assert c.views and c.views <= C.EVERYWHERE and set(c.tables) <= set(C.TABLES), c
        assert c.align in (C.LEFT, C.RIGHT)
        for k in c.uses:  # a composite is shown from other columns' figures, which the data files carry
            assert C.CSV in C.BY_KEY[k].views and C.JSON in C.BY_KEY[k].views, (c.key, k)
        if c.uses:
            assert not c.views & C.DATA, c.key


def test_every_column_appears_in_each_view_it_declares(tmp_path, capsys):
    out, doc, csv_lines = run_rich(tmp_path, capsys)
    rows = doc["rows"]
    assert all(c.terminal_if is None or c.terminal_if(rows) for c in C.COLUMNS)  # every optional column is on

    # terminal: each table's header line holds the spec's headers, in order
    lines = out.splitlines()
    header_lines = {C.MAIN: [ln for ln in lines if ln.startswith("  variant  ")],
                    C.SIZES: [ln for ln in lines if ln.startswith("model/variant") and "tflite B" in ln],
                    C.BREAKDOWN: [ln for ln in lines if ln.startswith("model/variant") and "flash: model" in ln]}
    for table, _, rs in groups(rows):
        line = header_lines[table].pop(0)
        headers = [C.header(c, C.TERMINAL, rs) for c in shown(table, C.TERMINAL)]
        assert re.fullmatch(r"\s*" + r"\s+".join(re.escape(h) for h in headers), line), (headers, line)

    # markdown and html: the table under each title has the spec's headers
    md = (tmp_path / "report.md").read_text()
    page = (tmp_path / "report.html").read_text()
    for table, title, rs in groups(rows):
        md_head = md.split(f"## {title}\n\n", 1)[1].splitlines()[0]
        assert [h.strip() for h in md_head.strip("|").split("|")] == [C.header(c, C.MD, rs) for c in shown(table, C.MD)]
        head = page.split(f"<h2>{html.escape(title)}</h2><table><thead><tr>", 1)[1].split("</tr>", 1)[0]
        assert ([html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", head)]
                == [C.header(c, C.HTML, rs) for c in shown(table, C.HTML)])

    # csv: one column per csv column, named by its key, one line per row
    assert csv_lines[0] == [c.key for c in C.COLUMNS if C.CSV in c.views]
    assert len(csv_lines) == len(rows) + 1

    # json: the rows hold exactly the json columns: every field a row has is specified
    json_keys = {c.key for c in C.COLUMNS if C.JSON in c.views}
    for r in rows:
        assert set(r) == json_keys


def _parse(text: str):
    """A csv cell back to its value ('' is None)."""
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def test_json_and_csv_carry_every_figure_the_terminal_shows(tmp_path, capsys):
    out, doc, csv_lines = run_rich(tmp_path, capsys)
    # report.json alone reproduces the terminal, character for character
    printed = out.split("\nwritten: ")[0]
    assert render.terminal(doc) == printed

    # report.csv: every terminal cell, formatted from the csv's own values, is the cell printed
    header, body = csv_lines[0], csv_lines[1:]
    terminal_cols = [c for c in C.COLUMNS if C.TERMINAL in c.views]
    for c in terminal_cols:
        assert set(c.uses or (c.key,)) <= set(header), f"report.csv lacks the figures of the terminal's {c.key!r}"
    checked = 0
    for line, row in zip(body, doc["rows"]):
        values = {k: _parse(v) for k, v in zip(header, line)}
        for c in terminal_cols:
            from_csv = c.fmt(*(values[k] for k in c.uses)) if c.uses else c.fmt(values[c.key])
            assert from_csv == C.cell(c, row), (c.key, row["model"], row["variant"], row["board"])
            if from_csv != "-":
                assert from_csv[:57] in printed or (c.width and len(from_csv) > c.width), (c.key, from_csv)
                checked += 1
    assert checked > 100


def test_a_failed_row_says_where_in_every_format(tmp_path, capsys):
    out, doc, csv_lines = run_rich(tmp_path, capsys)
    row = next(r for r in doc["rows"] if r["model"] == "kws")
    assert row["fits"] == "failed" and row["fits_text"].startswith("failed at firmware (firmware:kws/int8@nano33ble)")
    assert "failed at firmware" in out and "failed at firmware" in (tmp_path / "report.md").read_text()
    assert any("failed at firmware" in cell for line in csv_lines for cell in line)


def test_an_estimate_is_never_shown_as_a_measurement(tmp_path, capsys):
    out, doc, _ = run_rich(tmp_path, capsys)
    row = next(r for r in doc["rows"] if (r["model"], r["runtime"], r["board"]) == ("sine", "aot", "uno"))
    assert row["estimate"] is True and row["fits"] == "estimate" and row["fits_text"] == "yes (estimate)"
    line = next(ln for ln in out.splitlines() if " uno " in ln and " aot " in ln and ln.lstrip().startswith("int8"))
    assert "~20,000 / " in line and "~1,500 / " in line and line.rstrip().endswith("yes (estimate)")
    measured = next(ln for ln in out.splitlines() if " nano33ble " in ln and " aot " in ln and ln.lstrip().startswith("int8"))
    assert " 30,000 / " in measured and "~30,000" not in measured and "~6,000" not in measured


def test_the_byte_breakdown_says_where_its_bytes_come_from(tmp_path, capsys):
    out, doc, _ = run_rich(tmp_path, capsys)
    basis = {(r["model"], r["runtime"], r["board"]): r["breakdown_basis"] for r in doc["rows"]}
    assert basis[("sine", "tflm", "nano33ble")] == "ELF"
    assert basis[("sine", "aot", "uno")] in (None, "estimate, no build")  # never "ELF" for a board nothing built
    assert all(v != "ELF" for (m, rt, b), v in basis.items() if b == "uno")


def test_a_difference_that_rounds_to_zero_is_never_negative_zero():
    assert C.fmt_delta(-0.00001) == "+0.0000" and C.fmt_delta(-0.00006) == "-0.0001" and C.fmt_delta(None) == "-"
