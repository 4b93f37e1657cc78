"""What people compare, and what the report warns about.

Per task the test-split figures (regression MAE and RMSE; classification accuracy, precision, recall,
F1; anomaly detection the same with and without voting, and the error threshold), the Keras baseline as
weights-only HDF5, full names, warnings for degenerate figures that also keep them from the ship line.
"""
from __future__ import annotations

import csv
import html
import json
import re

from doit_tinyml import report
from doit_tinyml.engine.reporting import columns as C, render
from test_report import quick_plots, table_line, variant  # noqa: F401  (quick_plots: an autouse fixture)

NANO = {"nano33ble": (40000, 8000)}


def binary_extra(cm, distinct=2, **kw):
    return {"accuracy": 0.9, "precision": 0.8, "recall": 0.7, "f1": 0.75, "average": "binary",
            "confusion_matrix": cm, "distinct_predictions": distinct, **kw}


def anomaly_extra(voted_cm=((18, 2), (3, 2)), rule="mean+k*std", **kw):
    return {"accuracy": 0.8, "precision": 0.4, "recall": 0.27, "f1": 0.32, "threshold": 0.1234,
            "reconstruction_error": "mae", "confusion_matrix": [[70, 6], [16, 8]], "distinct_predictions": 2,
            "voted": {"accuracy": 0.88, "precision": 0.5, "recall": 0.4, "f1": 0.44, "vote_window": 4,
                      "vote_rule": rule, "vote_k": 1.0 if rule != "max" else None, "vote_count_threshold": 1.7,
                      "confusion_matrix": [list(r) for r in voted_cm], "distinct_predictions": 2}, **kw}


def run(entries, tmp_path, capsys, **kw):
    code = report.run(entries, tmp_path, gates=kw.pop("gates", {}), previous=None, **kw)
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "report.json").read_text())
    with open(tmp_path / "report.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    return code, out, doc, lines


# ------------------------------------------------------------------ the figures per task


def test_figures_per_task_in_every_format(tmp_path, capsys):
    entries = (variant(tmp_path, "sine", "int8", value=0.071, metrics_extra={"rmse": 0.09}, boards=NANO)
               + variant(tmp_path, "cancer", "int8", task="binary", value=0.9, keras=0.92, boards=NANO,
                         metrics_extra=binary_extra([[60, 4], [6, 30]]))
               + variant(tmp_path, "kws", "int8", task="multiclass", value=0.91, keras=0.93, boards=NANO,
                         metrics_extra={"precision": 0.905, "recall": 0.899, "f1": 0.9011, "average": "macro",
                                        "confusion_matrix": [[30, 1, 0], [2, 30, 1], [1, 1, 34]]})
               + variant(tmp_path, "tap", "float32", task="autoencoder", value=0.32, keras=0.33, boards=NANO,
                         metrics_extra=anomaly_extra()))
    code, out, doc, lines = run(entries, tmp_path, capsys)
    assert code == 0
    reg = out.split("Test-split figures: regression\n")[1].split("\n\n")[0]
    assert "MAE" in reg and "RMSE" in reg and "precision" not in reg
    assert "0.0710" in table_line(reg, "sine/int8") and "0.0900" in table_line(reg, "sine/int8")
    b = out.split("Test-split figures: binary classification\n")[1].split("\n\n")[0]
    assert re.search(r"accuracy\s+precision\s+recall\s+F1", b) and "MAE" not in b and "voted" not in b
    assert all(x in table_line(b, "cancer/int8") for x in ("0.9000", "0.8000", "0.7000", "0.7500"))
    assert "precision (macro)" in out.split("Test-split figures: multiclass")[1].split("\n\n")[0]
    a = out.split("Test-split figures: anomaly detection (autoencoder)\n")[1].split("\n\n")[0]
    for h in ("accuracy", "precision", "recall", "F1", "voted acc", "voted prec", "voted rec", "voted F1", "threshold"):
        assert h in a.splitlines()[0], h
    line = table_line(a, "tap/float32")
    assert all(x in line for x in ("0.8000", "0.4000", "0.2700", "0.3200", "0.8800", "0.5000", "0.4400", "0.1234", "mae"))

    rows = {r["model"]: r for r in doc["rows"]}
    assert (rows["sine"]["mae"], rows["sine"]["rmse"]) == (0.071, 0.09)
    assert (rows["cancer"]["precision"], rows["cancer"]["recall"], rows["cancer"]["f1"]) == (0.8, 0.7, 0.75)
    t = rows["tap"]
    assert (t["f1"], t["voted_f1"], t["anomaly_threshold"], t["anomaly_error"]) == (0.32, 0.44, 0.1234, "mae")
    assert (t["vote_rule"], t["vote_k"], t["vote_window"], t["vote_count_threshold"]) == ("mean+k*std", 1.0, 4, 1.7)
    by = {r["model"]: r for r in lines}
    assert by["tap"]["voted_f1"] == "0.44" and by["cancer"]["recall"] == "0.7" and by["sine"]["rmse"] == "0.09"

    # markdown and html: one table per task, with the columns of that task, in the spec's order
    md = (tmp_path / "report.md").read_text()
    page = (tmp_path / "report.html").read_text()
    for task, rs in render.by_task(doc["rows"]).items():
        title = render.figures_title(task)
        want = [C.header(c, C.MD, rs) for c in C.select(C.FIGURES, C.MD, doc["rows"], rs)]
        head = md.split(f"## {title}\n\n", 1)[1].splitlines()[0]
        assert [h.strip() for h in head.strip("|").split("|")] == want
        ph = page.split(f"<h2>{html.escape(title)}</h2><table><thead><tr>", 1)[1].split("</tr>", 1)[0]
        assert [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", ph)] == want
    assert "groups of 4, flagged &gt; mean + 1 * std (T = 1.7)" in page


def test_sizes_compare_with_the_weights_only_keras_model(tmp_path, capsys):
    """The baseline is the trained model's weights as HDF5 (history.json), not the .keras file with its optimizer."""
    entries = variant(tmp_path, "m", "int8", tflite=25000, trained_bytes=131759, h5_bytes=96634, boards=NANO)
    code, out, doc, lines = run(entries, tmp_path, capsys)
    header = next(ln for ln in out.splitlines() if ln.startswith("model/variant") and "tflite B" in ln)
    for h in ("C array", "gzip", "keras h5", "h5 gzip", "vs h5", "gzip vs h5"):
        assert h in header, h
    line = table_line(out, "m/int8", "25,000")
    assert "96,634" in line and "48,317" in line and "150,000" in line   # h5, its gzip, the C array
    assert "25.9%" in line and "4.1%" in line                            # 25000 / 96634, 2000 / 48317
    r = doc["rows"][0]
    assert (r["keras_h5_bytes"], r["keras_h5_gzip_bytes"], r["keras_bytes"]) == (96634, 48317, 131759)
    assert r["ratio_vs_keras"] == 25000 / 96634 and lines[0]["c_source_bytes"] == "150000"
    # an entry that does not name history.json gets the one beside trained.keras
    assert report.collect([{k: v for k, v in e.items() if k != "history"} for e in entries])[0]["keras_h5_bytes"] == 96634


def test_long_names_and_reasons_are_never_cut(tmp_path, capsys):
    """A long name wraps in its cell; a long reason ends in a note number and is printed whole below the table
    (every row stays one line, so a reader or a script can take it line by line)."""
    name = "prune_cluster_qat_sparsity_075_clusters_16"
    reason = ("Input type: FLOAT32 with filter type: INT8 not supported. | Node FULLY_CONNECTED (number 0) failed "
              "to prepare with status 1")
    entries = (variant(tmp_path, "sine", name, boards=NANO)
               + variant(tmp_path, "sine", "hybrid", tflm_error=reason, boards=NANO))
    code, out, doc, lines = run(entries, tmp_path, capsys)
    main = out.split("Test-split figures")[0]
    assert "prune_cluster_qat_" in main and "sparsity_075_" in main and "clusters_16" in main  # wrapped after "_"
    assert out.count("...") == len(re.findall(r"\.\.\. \[\d\]", out)) == 1   # only a note's mark
    assert "incompatible (TFLM: Input type: FLOAT32 with filter ... [1]" in table_line(main, "hybrid", "nano33ble")
    assert main.split("\n\n  [1] ")[1].split("\n\n")[0].split() == f"incompatible (TFLM: {reason})".split()
    assert f"sine/{name}" in out                                                  # whole in the ship line
    assert max(len(ln) for ln in main.splitlines()) <= 170
    row = next(r for r in doc["rows"] if r["variant"] == "hybrid")
    assert row["fits_text"] == f"incompatible (TFLM: {reason})"
    assert f"| {name} |" in (tmp_path / "report.md").read_text()


def test_wrap_keeps_every_character():
    assert render.wrap("int8_with_a_rather_long_name", 12) == ["int8_with_a_", "rather_long_", "name"]
    assert render.wrap("incompatible (TFLM: a b c)", 15) == ["incompatible", "(TFLM: a b c)"]
    assert render.wrap("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    assert render.wrap("short", 10) == ["short"]


# ------------------------------------------------------------------ warnings


def test_no_positive_in_the_test_split_means_no_ship_decision(tmp_path, capsys):
    cm = [[100, 0], [0, 0]]
    entries = (variant(tmp_path, "m", "float32", task="binary", value=1.0, keras=1.0, boards=NANO,
                       metrics_extra=binary_extra(cm, distinct=1, f1=0.0, precision=0.0, recall=0.0))
               + variant(tmp_path, "m", "int8", task="binary", value=1.0, keras=1.0, boards=NANO,
                         metrics_extra=binary_extra(cm, distinct=1, f1=0.0, precision=0.0, recall=0.0)))
    code, out, doc, lines = run(entries, tmp_path, capsys)
    assert code == 0
    ship = table_line(out, "Ship: nano33ble")
    assert ship.startswith("Ship: nano33ble -> no ship decision for m: the test split has no positive (class 1) sample")
    warnings = out.split("\nwarnings\n")[1].split("\n\n")[0]
    assert "m (every variant): the test split has no positive (class 1) sample" in warnings
    assert "m (every variant): predicts class 0 for every test sample (a constant prediction)" in warnings
    assert doc["ship"][0]["variant"] is None
    w = doc["warnings"]
    assert {x["variant"] for x in w} == {None} and all(x["blocks_ship"] for x in w)
    assert "no positive" in lines[0]["warnings"] and "constant prediction" in lines[0]["ship_blocked_by"]
    assert "## Warnings" in (tmp_path / "report.md").read_text()


def test_a_constant_prediction_is_not_shipped_but_its_sibling_is(tmp_path, capsys):
    entries = (variant(tmp_path, "m", "float32", task="binary", value=0.64, keras=0.64, boards=NANO,
                       metrics_extra=binary_extra([[64, 0], [36, 0]], distinct=1))
               + variant(tmp_path, "m", "int8", task="binary", value=0.60, keras=0.64, boards=NANO,
                         metrics_extra=binary_extra([[50, 14], [26, 10]])))
    code, out, doc, lines = run(entries, tmp_path, capsys)
    assert "Ship: nano33ble -> m/int8 (accuracy 0.6000" in out
    assert "m/float32: predicts class 0 for every test sample (a constant prediction); not recommended to ship" in out


def test_anomaly_warnings_and_a_voting_hint(tmp_path, capsys):
    entries = (variant(tmp_path, "tap", "float32", task="autoencoder", value=0.32, keras=0.33, boards=NANO,
                       metrics_extra=anomaly_extra(voted_cm=((18, 0), (7, 0)), rule="max"))
               + variant(tmp_path, "tap", "int8", task="autoencoder", value=0.0, keras=0.33, boards=NANO,
                         metrics_extra=anomaly_extra(confusion_matrix=[[76, 0], [24, 0]], distinct_predictions=1)))
    code, out, doc, lines = run(entries, tmp_path, capsys)
    assert "tap/int8: flags no test sample as anomalous (a constant prediction)" in out
    assert ('tap/float32: voting flags no group (rule max), so the voted figures are constant: try [anomaly] '
            'vote_threshold = "mean+k*std"') in out
    assert "Ship: nano33ble -> tap/float32 (F1 0.3200" in out   # the voting hint does not block it


def test_a_figure_that_is_not_finite_is_a_warning(tmp_path, capsys):
    entries = variant(tmp_path, "sine", "int8", boards=NANO, metrics_extra={"rmse": 0.5})
    path = tmp_path / "sine" / "int8" / "metrics.json"
    path.write_text(path.read_text().replace('"rmse": 0.5', '"rmse": Infinity'))
    code, out, doc, lines = run(entries, tmp_path, capsys)
    assert "sine/int8: metrics.json holds rmse that is not a finite number; not recommended to ship" in out
    assert "Ship: nano33ble -> no ship decision for sine: metrics.json holds rmse" in out
    assert doc["rows"][0]["rmse"] is None


def test_an_empty_class_warns_without_blocking(tmp_path, capsys):
    entries = variant(tmp_path, "kws", "int8", task="multiclass", value=0.9, keras=0.9, boards=NANO,
                      metrics_extra={"confusion_matrix": [[5, 0, 0], [0, 4, 1], [0, 0, 0]], "distinct_predictions": 2})
    code, out, doc, lines = run(entries, tmp_path, capsys)
    assert "kws/int8: class 2 has no test sample: macro precision, recall and F1 count it as 0" in out
    assert "Ship: nano33ble -> kws/int8" in out and doc["warnings"][0]["blocks_ship"] is False


def sweep_of(width):
    return {"group": "sine", "kind": "model", "values": {"units": width}, "keys": {"units": "model.layers[0].units"}}


def test_early_stopping_far_above_its_sweep_siblings(tmp_path, capsys):
    entries = []
    for width, loss, stopped in ((8, 0.010, True), (16, 0.012, True), (32, 0.040, True), (64, 0.030, False)):
        entries += variant(tmp_path, f"sine{width}", "int8", boards=NANO, sweep=sweep_of(width),
                           history={"epochs": 200, "epochs_run": 30, "early_stopped": stopped, "best_val_loss": loss})
    # not in a sweep: no siblings, nothing to compare with
    entries += variant(tmp_path, "alone", "int8", boards=NANO,
                       history={"epochs": 200, "epochs_run": 3, "early_stopped": True, "best_val_loss": 9.0})
    code, out, doc, lines = run(entries, tmp_path, capsys)
    warned = {w["model"] for w in doc["warnings"]}
    # sine32: 0.040 > 2 x median(0.010, 0.012, 0.030) = 0.024; sine64 is as high but ran every epoch
    assert warned == {"sine32"}
    assert ("sine32/int8: training stopped early (epoch 30 of 200) at validation loss 0.04, 3.3x the median of its "
            "sweep siblings in sine (0.012)") in out
    assert "Ship: nano33ble -> no ship decision for sine32: training stopped early" in out
    assert "Ship: nano33ble -> alone/int8" in out and "Ship: nano33ble -> sine64/int8" in out
    r = next(r for r in doc["rows"] if r["model"] == "sine32")
    assert (r["epochs"], r["epochs_run"], r["early_stopped"], r["best_val_loss"]) == (200, 30, True, 0.04)


def test_everything_the_terminal_shows_is_in_json_and_csv(tmp_path, capsys):
    entries = (variant(tmp_path, "tap", "float32", task="autoencoder", value=0.32, keras=0.33, boards=NANO,
                       metrics_extra=anomaly_extra())
               + variant(tmp_path, "m", "int8", task="binary", value=0.9, keras=0.9, boards=NANO,
                         metrics_extra=binary_extra([[100, 0], [0, 0]], distinct=1)))
    code, out, doc, lines = run(entries, tmp_path, capsys)
    assert render.terminal(doc) == out.split("\nwritten: ")[0]
    for c in C.select(C.FIGURES, C.TERMINAL):
        for k in c.uses or (c.key,):
            assert k in lines[0], k
    assert all(w["text"] in " | ".join(r["warnings"] for r in lines) for w in doc["warnings"])
