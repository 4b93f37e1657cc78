"""tinyml.toml validation: every mistake names the file, table and key, suggests the fix, and exits
non-zero without a traceback. These run `doit` on a project in a temporary folder, as a user would."""
from __future__ import annotations

import pytest

from project import EXAMPLES, TINY_SINE, copy_example, doit, make_project
from doit_tinyml import config

BASE = TINY_SINE.replace("{epochs}", "3")


def fails_with(tmp_path, toml: str, *needles: str) -> str:
    root = make_project(tmp_path / "p", toml)
    proc = doit(root, "list", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"
    return text


def test_demo_config_loads_with_its_documented_settings():
    project = config.load(config.Path(__file__).parents[1] / "tinyml.toml")
    (sine,) = project.models
    assert [v.name for v in sine.variants] == ["float32", "int8"]
    assert sine.variants[1].quantization == "int8" and sine.variants[1].io == "int8"
    assert sine.firmware.boards == ("nano33ble", "adafruit_pybadge_m4")
    assert project.boards["nano33ble"].flash == 983040 and project.boards["adafruit_pybadge_m4"].ram == 196608


def test_typo_in_a_key_suggests_the_right_one(tmp_path):
    fails_with(tmp_path, BASE.replace("epochs = 3", "epoch = 3"),
               "tinyml.toml", "[models.sine.training]", "'epoch'", "did you mean 'epochs'")


def test_unknown_table_and_layer_setting(tmp_path):
    fails_with(tmp_path, BASE + "\n[model.other]\nx = 1\n", "unknown top-level table [model]", "did you mean 'models'")
    fails_with(tmp_path, BASE.replace('units = 8, activation = "relu" },\n  { type = "dense", units = 8',
                                      'unit = 8, activation = "relu" },\n  { type = "dense", units = 8'),
               "layers[0]", "'unit'", "dense layer", "did you mean 'units'")


def test_wrong_type_says_what_is_allowed(tmp_path):
    fails_with(tmp_path, BASE.replace("batch_size = 32", 'batch_size = "32"'),
               "[models.sine.training] key 'batch_size'", "must be an integer", "'32'")
    fails_with(tmp_path, BASE.replace('quantization = "int8"', 'quantization = "int4"'),
               "[models.sine.variants.int8] key 'quantization'", "allowed: float32, dynamic, float16, int8, int16x8")
    fails_with(tmp_path, BASE.replace('io = "int8"', 'io = "int16"'),
               "key 'io'", "int8, uint8, float32")


def test_missing_file_and_unknown_board(tmp_path):
    fails_with(tmp_path, BASE.replace('source = "sine"', 'source = "data/missing.csv"\nlabel = "y"'),
               "[models.sine.dataset] key 'source'", "data/missing.csv", "not found")
    fails_with(tmp_path, BASE.replace('"nano33ble"', '"nano33bel"'), "nano33bel", "nano33ble")
    fails_with(tmp_path, BASE.replace('source = "sine"', 'source = "sinus"'), "'sinus'", "did you mean 'sine'")


def test_board_override_keys_are_checked(tmp_path):
    fails_with(tmp_path, BASE + "\n[boards.nano33ble]\nflsh = 1000\n", "flsh", "flash")


def test_config_values_reach_the_settings(tmp_path):
    root = make_project(tmp_path / "p", BASE + "\n[boards.nano33ble]\nram = 200000\n")
    project = config.load(root / "tinyml.toml")
    assert project.boards["nano33ble"].ram == 200000
    assert project.boards["nano33ble"].flash == 983040
    (m,) = project.models
    assert m.training.epochs == 3 and m.training.loss == "mse" and m.dataset.test_split == 0.2


@pytest.mark.parametrize("source, task, units", [("sklearn:breast_cancer", "binary", 1),
                                                 ("sklearn:digits", "multiclass", 10)])
def test_task_is_inferred_from_a_builtin_dataset(tmp_path, source, task, units):
    # sklearn datasets take no params: the sine's `params` line goes too (it would be refused)
    toml = (BASE.replace('task = "regression"\n', "").replace('source = "sine"', f'source = "{source}"')
            .replace("params = { samples = 400, noise = 0.05 }\n", "")
            .replace('{ type = "dense", units = 1 }', f'{{ type = "dense", units = {units}, activation = "softmax" }}'))
    root = make_project(tmp_path / "p", toml)
    assert config.load(root / "tinyml.toml").models[0].task == task


# --------------------------------------------------------------------------- issue 8: load-time inspection
def test_every_example_still_loads(tmp_path):
    # as a fresh clone has them: generated data (the .ts archive) made the way the example's README says
    for toml in sorted(EXAMPLES.glob("*/tinyml.toml")):
        copy = copy_example(toml.parent.name, tmp_path / toml.parent.name)
        assert config.load(copy / "tinyml.toml").models, toml


def _csv_project(tmp_path, rows: int):
    text = BASE.replace('source = "sine"\nparams = { samples = 400, noise = 0.05 }',
                        'source = "data/big.csv"\nlabel = "y"').replace("[models.sine.model]",
                                                                        "[models.sine.model]\ninput_shape = [2]")
    root = make_project(tmp_path / "p", text)
    (root / "data").mkdir()
    (root / "data" / "big.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 7},{i * 0.5}\n" for i in range(rows)))
    return root


def test_data_is_inspected_at_load_without_numpy(tmp_path):
    import subprocess
    import sys

    root = _csv_project(tmp_path, 50)
    code = ("import sys; from doit_tinyml import config; p = config.load('tinyml.toml'); "
            "assert p.models[0].model.input_shape == (2,); "
            "heavy = [m for m in ('numpy', 'tensorflow', 'tf_keras') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
    (root / "tinyml.toml").write_text((root / "tinyml.toml").read_text().replace("input_shape = [2]",
                                                                                  "input_shape = [3]"))
    with pytest.raises(config.ConfigError, match=r"input_shape': got \[3\], but each sample of data/big.csv has shape \[2\]"):
        config.load(root / "tinyml.toml")


def test_big_sources_are_scanned_once_and_rescanned_when_they_change(tmp_path, monkeypatch):
    from doit_tinyml.engine import data as dataset

    root = _csv_project(tmp_path, 300)
    monkeypatch.setattr(config._Context, "CACHE_MIN_BYTES", 100)
    calls = []
    real = dataset.inspect_csv
    monkeypatch.setattr(dataset, "inspect_csv", lambda *a: calls.append(a) or real(*a))
    config.load(root / "tinyml.toml")
    config.load(root / "tinyml.toml")
    assert len(calls) == 1 and (root / "build" / ".tinyml-sources.json").is_file()
    with open(root / "data" / "big.csv", "a") as f:
        f.write("1,2,x\n")   # now ragged? no: a text label in a regression; found because the file changed
    with pytest.raises(config.ConfigError, match="holds text"):
        config.load(root / "tinyml.toml")
    assert len(calls) == 2
