"""End to end: a tiny project in a temporary folder, built with `doit` the way a user would.

One full build is shared (session fixture); each test copies it and changes one thing, then asserts
on exactly which tasks ran, on the artifacts, and on what the user sees.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from project import doit, executed, make_project, up_to_date

ALL_VARIANT_TASKS = {"convert", "evaluate", "analyze", "header"}


def test_full_build_writes_every_artifact(built):
    b = built / "build" / "sine"
    for rel in ["dataset.npz", "dataset.json", "trained.keras", "history.json"]:
        assert (b / rel).stat().st_size > 0, rel
    for v in ("float32", "int8"):
        for rel in ["model.tflite", "convert.json", "metrics.json", "analysis.json", "model_data.h", "model_data.cc"]:
            assert (b / v / rel).stat().st_size > 0, f"{v}/{rel}"
        for board, flash, ram in (("nano33ble", 983040, 262144), ("adafruit_pybadge_m4", 524288, 196608)):
            size = json.loads((b / v / board / "size.json").read_text())
            assert (size["flash_limit"], size["ram_limit"]) == (flash, ram)
            # the firmware embeds the model and a static arena of the measured size
            analysis = json.loads((b / v / "analysis.json").read_text())
            assert size["flash_used"] > (b / v / "model.tflite").stat().st_size
            assert size["ram_used"] >= analysis["arena"]["bytes"]
            assert (b / v / board / "firmware.elf").read_bytes()[:4] == b"\x7fELF"
    # int8 really is int8 at the edges, as asked
    analysis = json.loads((b / "int8" / "analysis.json").read_text())
    assert analysis["input"]["dtype"] == "int8" and analysis["output"]["dtype"] == "int8"
    header = (b / "int8" / "model_data.h").read_text()
    assert f"#define TINYML_ARENA_SIZE {analysis['arena']['bytes']}" in header
    assert not list((built / "build").rglob(".tmp-*")), "temporary files left behind"


def test_report_prints_every_variant_on_every_board(proj):
    out = doit(proj, "report").stdout
    # only the report: no doit status line for the report task, no up-to-date lines
    assert executed(out) == set() and up_to_date(out) == set(), out
    assert out.lstrip().startswith("doit-tinyml report"), out[:200]
    assert "\nwritten: build/report.md, report.json" in out  # relative to where doit runs, as the user types it
    for v in ("float32", "int8"):
        for board in ("nano33ble", "adafruit_pybadge_m4"):
            assert any(v in line and board in line for line in out.splitlines()), (v, board, out)
    assert "983,040" in out or "983040" in out
    report = json.loads((proj / "build" / "report.json").read_text())
    assert len(report["rows"]) == 4
    md = (proj / "build" / "report.md").read_text()
    assert md.count("|") > 20
    # where every byte goes: the model's flash share is exactly the .tflite, the arena exactly the header's
    tflite = (proj / "build/sine/int8/model.tflite").stat().st_size
    arena = json.loads((proj / "build/sine/int8/analysis.json").read_text())["arena"]["bytes"]
    line = next(ln for ln in out.splitlines() if ln.startswith("sine/int8") and "nano33ble" in ln)
    assert f"{tflite:,}" in line and f"{arena:,}" in line
    assert line.rstrip().endswith("ELF + interpreter estimate")  # no TFLM library in the tests: said so
    # per-layer table with the activation peak marked, once per variant
    assert md.count("## Layers of sine/") == 2 and md.count("<- peak") == 2


def test_second_doit_runs_nothing_and_never_imports_tensorflow(proj):
    proc = doit(proj, importtime=True)
    assert executed(proc.stdout) == set(), proc.stdout
    assert "firmware:sine/int8@nano33ble" in up_to_date(proc.stdout)
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time")}
    assert "tensorflow" not in imported and "tf_keras" not in imported and "platformio" not in imported
    assert "doit" in imported  # the import log was really captured
    # `doit report` runs only the report, still without TensorFlow
    proc = doit(proj, "report", importtime=True)
    assert executed(proc.stdout) == set() and "doit-tinyml report" in proc.stdout
    assert "tensorflow" not in {line.split("|")[-1].strip() for line in proc.stderr.splitlines()}


def test_identical_retrain_leaves_everything_downstream_alone(proj):
    before = {p: p.read_bytes() for p in (proj / "build" / "sine").rglob("*") if p.suffix in (".keras", ".tflite")}
    doit(proj, "forget", "train:sine")
    proc = doit(proj)
    assert executed(proc.stdout) == {"train:sine"}, proc.stdout
    after = {p: p.read_bytes() for p in before}
    assert after == before, "retraining with the same data and settings changed bytes"


def test_changed_dataset_rebuilds_its_whole_chain(proj):
    toml = proj / "tinyml.toml"
    toml.write_text(toml.read_text().replace("samples = 400", "samples = 420"))
    ran = executed(doit(proj).stdout)
    expected = {"dataset:sine", "train:sine"} | {f"{s}:sine/{v}" for s in ALL_VARIANT_TASKS for v in ("float32", "int8")}
    assert expected <= ran, ran
    assert {f"firmware:sine/{v}@{b}" for v in ("float32", "int8") for b in ("nano33ble", "adafruit_pybadge_m4")} <= ran


def test_changed_variant_setting_rebuilds_only_that_variant(proj):
    toml = proj / "tinyml.toml"
    toml.write_text(toml.read_text().replace("representative_samples = 50", "representative_samples = 60"))
    ran = executed(doit(proj).stdout)
    assert "convert:sine/int8" in ran
    assert all("/int8" in t for t in ran), f"tasks outside the int8 variant ran: {ran}"


def test_changed_sketch_rebuilds_only_firmware(proj):
    main = proj / "sketches" / "sine" / "src" / "main.cpp"
    main.write_text(main.read_text() + "\n// a comment the compiler sees\n")
    ran = executed(doit(proj).stdout)
    assert ran == {f"firmware:sine/{v}@{b}" for v in ("float32", "int8") for b in ("nano33ble", "adafruit_pybadge_m4")}


def test_added_board_adds_only_its_firmware_tasks(proj):
    toml = proj / "tinyml.toml"
    toml.write_text(toml.read_text().replace('"adafruit_pybadge_m4"]', '"adafruit_pybadge_m4", "nucleo_f446re"]'))
    ran = executed(doit(proj).stdout)
    assert ran == {"firmware:sine/float32@nucleo_f446re", "firmware:sine/int8@nucleo_f446re"}
    size = json.loads((proj / "build/sine/int8/nucleo_f446re/size.json").read_text())
    assert size["flash_limit"] == 524288 and size["ram_limit"] == 131072


def test_model_that_does_not_fit_is_reported_by_how_much(proj):
    toml = proj / "tinyml.toml"
    toml.write_text(toml.read_text() + "\n[boards.nano33ble]\nflash = 2000\n")
    proc = doit(proj)
    size = json.loads((proj / "build/sine/int8/nano33ble/size.json").read_text())
    assert size["fits"] is False and size["flash_over_by"] == size["flash_used"] - 2000 > 0
    assert "DOES NOT FIT" in proc.stdout and f"{size['flash_over_by']:,}" in proc.stdout
    # the build fails on it only when asked to
    toml.write_text(toml.read_text().replace('boards = ["nano33ble"', 'fail_if_too_big = true\nboards = ["nano33ble"'))
    proc = doit(proj, check=False)
    assert proc.returncode != 0
    assert "over by" in proc.stdout + proc.stderr and "Traceback" not in proc.stdout + proc.stderr


def test_build_killed_during_training_recovers(proj):
    toml = proj / "tinyml.toml"
    toml.write_text(toml.read_text().replace("epochs = 3", "epochs = 400"))
    trained = proj / "build/sine/trained.keras"
    old = trained.read_bytes()
    p = subprocess.Popen([sys.executable, "-m", "doit"], cwd=proj, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    deadline = time.time() + 120
    seen = ""
    while time.time() < deadline:
        line = p.stdout.readline()
        seen += line
        if "train:sine" in line:
            break
    assert "train:sine" in seen, seen
    time.sleep(4)  # well inside the 400 epochs
    assert p.poll() is None, "training finished before the kill: make it longer"
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    # the target is either the old complete model or absent, never half-written
    assert trained.read_bytes() == old
    with zipfile.ZipFile(trained) as z:
        assert z.testzip() is None
    toml.write_text(toml.read_text().replace("epochs = 400", "epochs = 4"))
    proc = doit(proj)
    assert "train:sine" in executed(proc.stdout)
    assert not list((proj / "build").rglob(".tmp-*")), "temporary files left behind after recovery"
    assert (proj / "build/sine/int8/nano33ble/size.json").exists()


HYBRID_AND_UNO = """
[project]
seed = 5

[models.wide]
task = "regression"
dataset = { source = "sine", params = { samples = 300 } }
model = { layers = [ { type = "dense", units = 64, activation = "relu" },
                     { type = "dense", units = 64, activation = "relu" }, { type = "dense", units = 1 } ] }
training = { epochs = 2 }

[models.wide.variants.float32]
[models.wide.variants.dynamic]
quantization = "dynamic"

[models.wide.firmware]
sketch = "sketches/sine"
boards = ["nano33ble", "uno"]
"""


def test_hybrid_variant_and_uno_overflow_are_reported_not_crashed(tmp_path):
    root = make_project(tmp_path / "p", HYBRID_AND_UNO)
    proc = doit(root)  # must succeed: neither problem is a build failure
    assert "Traceback" not in proc.stdout + proc.stderr
    analysis = json.loads((root / "build/wide/dynamic/analysis.json").read_text())
    assert analysis["hybrid"] is True and analysis["tflm_compatible"] is False
    assert any("int8" in (p.get("fix") or "") for p in analysis["problems"])
    assert "#define TINYML_TFLM_COMPATIBLE 0" in (root / "build/wide/dynamic/model_data.h").read_text()
    uno = json.loads((root / "build/wide/float32/uno/size.json").read_text())
    assert uno["estimate"] is True and uno["fits"] is False and uno["flash_over_by"] > 0
    assert executed(doit(root).stdout) == set()  # estimate-only boards are up to date too

    out = doit(root, "report").stdout
    dyn_rows = [ln for ln in out.splitlines() if ln.strip().startswith("dynamic") and "nano33ble" in ln]
    assert dyn_rows and "incompatible" in dyn_rows[0].lower(), out
    uno_row = next(ln for ln in out.splitlines() if ln.strip().startswith("float32") and "uno" in ln)
    assert "NO" in uno_row and f"{uno['flash_over_by']}" in uno_row.replace(",", "")


def test_aot_runtime_adds_only_aot_tasks_and_is_verified_against_tflm(proj):
    toml = proj / "tinyml.toml"
    toml.write_text(toml.read_text().replace('sketch = "sketches/sine"', 'sketch = "sketches/sine"\nruntime = ["tflm", "aot"]'))
    ran = executed(doit(proj).stdout)
    boards = ("nano33ble", "adafruit_pybadge_m4")
    assert ran == ({f"aot:sine/{v}" for v in ("float32", "int8")}
                   | {f"firmware:sine/{v}@{b}+aot" for v in ("float32", "int8") for b in boards}), ran
    aot = json.loads((proj / "build/sine/int8/aot.json").read_text())
    assert aot["passed"] and aot["int8_identical_fraction"] == 1.0 and aot["target"]["identical"]
    assert aot["planned_bytes"] <= aot["tflm_arena_target32_bytes"]
    assert aot["instructions_per_inference"] > 0
    tflm = json.loads((proj / "build/sine/int8/nano33ble/size.json").read_text())
    plain_c = json.loads((proj / "build/sine/int8/nano33ble.aot/size.json").read_text())
    assert plain_c["runtime"] == "aot" and plain_c["breakdown"]["flash"]["inference"] > 0
    assert plain_c["breakdown"]["ram"]["arena"] < tflm["breakdown"]["ram"]["arena"]
    out = doit(proj, "report").stdout
    rows = [ln.split() for ln in out.splitlines() if ln.strip().startswith("int8") and "nano33ble" in ln]
    assert sorted(r[r.index("nano33ble") + 1] for r in rows) == ["aot", "tflm"], out  # the runtime column


def test_report_only_settings_rebuild_nothing(proj):
    toml = proj / "tinyml.toml"
    toml.write_text(toml.read_text().replace('representative_samples = 50', 'representative_samples = 50\n'
                                             'required = true\ndescription = "the one to ship"'))
    assert executed(doit(proj).stdout) == set()


def test_a_change_in_a_stages_code_reruns_exactly_that_stage(proj, tmp_path):
    """Upgrading the plugin re-runs the stages whose code changed: a copy of the package, edited."""
    import shutil as _shutil

    import doit_tinyml

    pkg = tmp_path / "site"
    _shutil.copytree(Path(doit_tinyml.__file__).parent, pkg / "doit_tinyml",
                     ignore=_shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(pkg)}
    # the copy is another package file set, so every stage's code hash is the same as before
    assert executed(doit(proj, env=env).stdout) == set()
    header = pkg / "doit_tinyml" / "header.py"
    header.write_text(header.read_text() + "\n# a comment: new code, same output\n")
    ran = executed(doit(proj, env=env).stdout)
    assert ran == {"header:sine/float32", "header:sine/int8"}, ran   # same bytes: the firmware stays
    elf = pkg / "doit_tinyml" / "engine" / "elf.py"
    elf.write_text(elf.read_text() + "\n# the firmware stage's engine changed\n")
    ran = executed(doit(proj, env=env).stdout)
    assert ran and all(t.startswith("firmware:") for t in ran), ran


def test_a_variant_the_aot_compiler_refuses_is_up_to_date_after_one_run(tmp_path):
    """A hybrid (dynamic-range) variant with runtime "aot": the aot stage records why it cannot
    compile it and its firmware tasks build nothing; a second `doit` runs nothing."""
    root = make_project(tmp_path / "p", HYBRID_AND_UNO.replace('[models.wide.variants.float32]\n', '').replace(
        'boards = ["nano33ble", "uno"]', 'boards = ["nano33ble"]\nruntime = ["tflm", "aot"]'))
    first = executed(doit(root).stdout)
    assert {"aot:wide/dynamic", "firmware:wide/dynamic@nano33ble+aot"} <= first, first
    aot = json.loads((root / "build/wide/dynamic/aot.json").read_text())
    assert aot["supported"] is False and aot["reason"]
    assert not (root / "build/wide/dynamic/nano33ble.aot/firmware.elf").exists()
    assert executed(doit(root).stdout) == set()
