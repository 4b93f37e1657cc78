"""A data set's own test split: `test = "data/test.csv"` (or .npz, .ts), an .npz holding x_test/y_test,
a callable returning x_test/y_test. The test part is kept as given (never split, never shuffled),
normalisation statistics come from the training part only, and dataset.json says "split": "fixed"."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from doit_tinyml import config, dataset
from doit_tinyml.config import DatasetSettings
from doit_tinyml.engine import data
from doit_tinyml.engine.errors import TinyMLError
from project import make_project


def settings(source, kind, **kw) -> DatasetSettings:
    base = dict(params={}, label=None, features=None, test_split=None, normalize="standard", class_names=None)
    base.update(kw)
    return DatasetSettings(source=source, kind=kind, **base)


def run(tmp_path, ds, task):
    meta = dataset.run(ds, task, 2, tmp_path / "d.npz", tmp_path / "d.json")
    return meta, dataset.load(tmp_path / "d.npz")


def test_csv_with_its_own_test_file(tmp_path, monkeypatch):
    (tmp_path / "train.csv").write_text("temp,vib,state\n" + "".join(
        f"{20 + i % 7},{(i * 3) % 11},{'hot' if i % 2 else 'ok'}\n" for i in range(40)))
    # the test file: columns in another order, a class the training file has not seen ('cold')
    (tmp_path / "test.csv").write_text("state,vib,temp\n" + "".join(
        f"{['ok', 'hot', 'cold'][i % 3]},{i},{100 + i}\n" for i in range(9)))
    monkeypatch.chdir(tmp_path)
    meta, d = run(tmp_path, settings("train.csv", "csv", label="state", test="test.csv"), "multiclass")
    assert meta["split"] == "fixed" and meta["test_source"] == "test.csv"
    assert meta["counts"] == {"train": 40, "test": 9}
    assert meta["class_names"] == ["cold", "hot", "ok"] and meta["n_classes"] == 3   # sorted over both files
    assert d["y_test"].tolist() == [2, 1, 0] * 3                      # the test file's order
    np.testing.assert_allclose(d["x_train"].mean(0), 0, atol=1e-5)   # statistics from training only
    raw = d["x_test"] * meta["norm_b"] + meta["norm_a"]
    np.testing.assert_allclose(raw[:, 0], 100 + np.arange(9), atol=1e-3)   # temp, read by name
    np.testing.assert_allclose(raw[:, 1], np.arange(9), atol=1e-3)


def test_csv_regression_with_a_test_file_and_text_against_numbers(tmp_path, monkeypatch):
    (tmp_path / "a.csv").write_text("u,y\n" + "".join(f"{i},{2 * i}\n" for i in range(10)))
    (tmp_path / "b.csv").write_text("u,y\n5,10\n6,12\n")
    (tmp_path / "c.csv").write_text("u,y\n5,high\n6,low\n")
    monkeypatch.chdir(tmp_path)
    meta, d = run(tmp_path, settings("a.csv", "csv", label="y", test="b.csv", normalize="none"), "regression")
    assert d["y_test"].tolist() == [[10.0], [12.0]] and meta["counts"] == {"train": 10, "test": 2}
    with pytest.raises(TinyMLError, match="c.csv: the labels of c.csv are text but those of a.csv are numbers"):
        run(tmp_path, settings("a.csv", "csv", label="y", test="c.csv"), "regression")


def test_npz_with_x_test_and_y_test(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "s.npz", x=rng.normal(size=(30, 3)), y=np.arange(30) % 3,
             x_test=rng.normal(5, 1, size=(7, 3)), y_test=np.arange(7) % 3)
    monkeypatch.chdir(tmp_path)
    info = data.inspect_npz(tmp_path / "s.npz", "s.npz")
    assert info["n"] == 30 and info["n_test"] == 7 and (info["min"], info["max"]) == (0, 2)
    meta, d = run(tmp_path, settings("s.npz", "npz"), "multiclass")
    assert meta["split"] == "fixed" and meta["counts"] == {"train": 30, "test": 7}
    assert d["y_test"].tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert d["x_test"].mean() > 3                                      # normalised with the training statistics


@pytest.mark.parametrize("arrays, match", [
    ({"x_test": np.zeros((3, 2))}, "holds 'x_test' but no 'y_test'"),
    ({"x_test": np.zeros((3, 4)), "y_test": np.zeros(3)}, r"each sample of x_test has shape \[4\] but each sample of x"),
    ({"x_test": np.zeros((3, 2)), "y_test": np.zeros(4)}, "x_test has 3 samples but y_test has 4"),
    ({"x_test": np.zeros((3, 2)), "y_test": np.array([0, np.nan, 1])}, r"y_test\[1\] is nan"),
    ({"x_test": np.zeros((3, 2)), "y_test": np.array(["a", "b", "c"])}, "array 'y_test' holds text"),
])
def test_npz_test_arrays_are_checked_at_load(tmp_path, arrays, match):
    np.savez(tmp_path / "s.npz", x=np.zeros((10, 2)), y=np.zeros(10), **arrays)
    with pytest.raises(TinyMLError, match=match):
        data.inspect_npz(tmp_path / "s.npz", "s.npz")


def test_npz_test_file_and_autoencoder_keeps_normal_training_samples(tmp_path, monkeypatch):
    x = np.linspace(0, 1, 40, dtype="float32").reshape(20, 2)
    np.savez(tmp_path / "train.npz", x=x, y=(np.arange(20) % 5 == 0).astype("int32"))
    np.savez(tmp_path / "test.npz", x=x[:6] + 1, y=np.array([0, 1, 0, 0, 1, 0]))
    monkeypatch.chdir(tmp_path)
    meta, d = run(tmp_path, settings("train.npz", "npz", test="test.npz"), "autoencoder")
    assert meta["split"] == "fixed" and meta["counts"] == {"train": 16, "test": 6}   # 4 anomalies left out
    assert d["is_anomaly_test"].tolist() == [0, 1, 0, 0, 1, 0] and (d["y_test"] == d["x_test"]).all()


def test_callable_returning_its_own_test_set(tmp_path, monkeypatch):
    (tmp_path / "fixedsrc.py").write_text(
        "import numpy as np\n"
        "def load(n=12):\n"
        "    x = np.arange(n, dtype='float32')[:, None]\n"
        "    return {'x': x, 'y': x[:, 0] % 2, 'x_test': x[:4] + 100, 'y_test': np.array([1, 0, 1, 0]),\n"
        "            'class_names': ['even', 'odd']}\n"
        "def half():\n"
        "    return {'x': np.zeros((4, 1)), 'y': np.zeros(4), 'x_test': np.zeros((2, 1))}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        meta, d = run(tmp_path, settings("fixedsrc:load", "callable", test_split=0.2, normalize="none"), "binary")
        assert meta["split"] == "fixed" and meta["counts"] == {"train": 12, "test": 4}
        assert d["x_test"][:, 0].tolist() == [100, 101, 102, 103] and meta["class_names"] == ["even", "odd"]
        with pytest.raises(TinyMLError, match="returned x_test without y_test"):
            run(tmp_path, settings("fixedsrc:half", "callable"), "regression")
    finally:
        sys.modules.pop("fixedsrc", None)


TOML = """
[models.m]
task = "binary"

[models.m.dataset]
source = "data/train.csv"
label = "state"
{extra}

[models.m.model]
layers = [{{ type = "dense", units = 1, activation = "sigmoid" }}]

[models.m.training]
epochs = 2

[models.m.variants.float32]
"""


@pytest.mark.parametrize("extra, test_csv, match", [
    ('test = "data/test.csv"', "a,b,state\n1,2,x\n", None),
    ('test = "data/test.csv"', "b,a,state\n1,2,y\n", None),                        # column order does not matter
    ('test = "data/test.csv"\ntest_split = 0.3', "a,b,state\n1,2,x\n", "key 'test_split': cannot be combined with key 'test'"),
    ('test = "data/test.csv"', "a,c,state\n1,2,x\n", "columns differ from the training file data/train.csv: missing 'b'; "
                                                     "not in the training file 'c'"),
    ('test = "data/test.csv"\nfeatures = ["a"]', "a,c,state\n1,2,x\n", None),     # only the used columns must be there
    ('test = "data/test.csv"\nfeatures = ["a", "b"]', "a,c,state\n1,2,x\n", "missing 'b'"),
    ('test = "data/test.csv"', "a,b,state\n1,2,z\n", "holds 3 distinct labels but a binary model needs exactly 2"),
    ('test = "data/test.csv"', "a,b,state\n1,,x\n", r"key 'test': data/test.csv line 2: column 'b' is empty"),
    ('test = "data/train.csv"', "", "key 'test': 'data/train.csv' is the training file itself"),
    ('test = "data/missing.csv"', "", "key 'test': file 'data/missing.csv' not found"),
    ('test = "data/test.npz"', "", "key 'test': got 'data/test.npz'; the fixed test file must be a .csv file"),
    ('test = "build/test.csv"', "", "key 'test': 'build/test.csv' is inside the build folder 'build'"),
    ('test = "data/test.csv"\nparams = { shuffle = true }', "a,b,state\n1,2,x\n", "key 'params': shuffle = true picks"),
])
def test_loader_checks_the_fixed_test_file(tmp_path, extra, test_csv, match):
    root = make_project(tmp_path / "p", TOML.format(extra=extra), sketch=None)
    (root / "data").mkdir()
    (root / "data" / "train.csv").write_text("a,b,state\n" + "".join(f"{i},{i % 3},{'xy'[i % 2]}\n" for i in range(20)))
    if test_csv:
        (root / "data" / "test.csv").write_text(test_csv)
    (root / "build").mkdir()
    (root / "build" / "test.csv").write_text("a,b,state\n1,2,x\n")
    if match is None:
        (m,) = config.load(root / "tinyml.toml").models
        assert m.dataset.test == "data/test.csv" and m.dataset.test_split is None
        assert m.dataset.deps == ("data/train.csv", "data/test.csv")
        return
    with pytest.raises(config.ConfigError, match=match):
        config.load(root / "tinyml.toml")


def test_loader_npz_fixed_test(tmp_path):
    toml = TOML.format(extra="").replace('source = "data/train.csv"\nlabel = "state"', 'source = "data/s.npz"')
    root = make_project(tmp_path / "p", toml, sketch=None)
    (root / "data").mkdir()
    np.savez(root / "data" / "s.npz", x=np.zeros((10, 2)), y=np.arange(10) % 2, x_test=np.zeros((4, 2)),
             y_test=np.array([0, 1, 2, 1]))
    with pytest.raises(config.ConfigError, match="y goes up to 2 but binary labels are 0 and 1"):
        config.load(root / "tinyml.toml")   # the test labels count too
    np.savez(root / "data" / "s.npz", x=np.zeros((10, 2)), y=np.arange(10) % 2, x_test=np.zeros((4, 2)),
             y_test=np.array([0, 1, 0, 1]))
    (m,) = config.load(root / "tinyml.toml").models
    assert m.dataset.test_split is None and m.dataset.test is None
    (root / "tinyml.toml").write_text(toml.replace('source = "data/s.npz"', 'source = "data/s.npz"\ntest_split = 0.2'))
    with pytest.raises(config.ConfigError, match="key 'test_split': cannot be combined with a fixed test set: data/s.npz "
                                                 "holds x_test and y_test"):
        config.load(root / "tinyml.toml")
    np.savez(root / "data" / "t.npz", x=np.zeros((3, 2)), y=np.array([0, 1, 0]))
    (root / "tinyml.toml").write_text(toml.replace('source = "data/s.npz"', 'source = "data/s.npz"\ntest = "data/t.npz"'))
    with pytest.raises(config.ConfigError, match="key 'test': data/s.npz already holds x_test and y_test"):
        config.load(root / "tinyml.toml")
    (root / "tinyml.toml").write_text(toml.replace('source = "data/s.npz"', 'source = "sine"\ntest = "data/s.npz"'))
    with pytest.raises(config.ConfigError, match="key 'test': applies to file sources"):
        config.load(root / "tinyml.toml")


def test_editing_the_fixed_test_file_or_a_callables_module_rebuilds_the_dataset(tmp_path):
    """The data files and a callable's own modules are the dataset task's dependencies."""
    from project import doit, executed

    toml = """
[models.c]
task = "binary"
dataset = { source = "data/train.csv", test = "data/test.csv", label = "y" }
model = { layers = [{ type = "dense", units = 1, activation = "sigmoid" }] }
training = { epochs = 1 }
[models.c.variants.float32]

[models.g]
task = "regression"
dataset = { source = "mydata.loader:load" }
model = { layers = [{ type = "dense", units = 1 }] }
training = { epochs = 1 }
[models.g.variants.float32]
"""
    root = make_project(tmp_path / "p", toml, sketch=None)
    (root / "data").mkdir()
    rows = [f"{i % 7},{i % 3},{i % 2}\n" for i in range(40)]
    (root / "data" / "train.csv").write_text("a,b,y\n" + "".join(rows))
    (root / "data" / "test.csv").write_text("a,b,y\n" + "".join(rows[:10]))
    (root / "mydata").mkdir()
    (root / "mydata" / "__init__.py").write_text("")
    (root / "mydata" / "helpers.py").write_text("SCALE = 1.0\n")
    (root / "mydata" / "loader.py").write_text(
        "import numpy as np\nfrom .helpers import SCALE\n\n"
        "def load():\n    x = np.linspace(0, 1, 50, dtype='float32')[:, None]\n    return x, SCALE * x\n")
    env = {"PYTHONPATH": str(root)}
    assert {"dataset:c", "dataset:g"} <= executed(doit(root, "dataset", env=env).stdout)
    assert not executed(doit(root, "dataset", env=env).stdout)
    (root / "data" / "test.csv").write_text("a,b,y\n" + "".join(rows[:20]))
    (root / "mydata" / "helpers.py").write_text("SCALE = 2.0\n")   # a module the callable imports
    assert executed(doit(root, "dataset", env=env).stdout) == {"dataset:c", "dataset:g"}
