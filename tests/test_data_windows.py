"""CSV time series cut into windows (`window`, `stride`): window labels (majority, any anomalous step,
last step), a split by time in which no training window overlaps a test window, a fixed test file
windowed the same way, and the loader's checks."""
from __future__ import annotations

import numpy as np
import pytest

from doit_tinyml import config, dataset
from doit_tinyml.config import DatasetSettings
from doit_tinyml.engine import data
from project import make_project


def settings(source, **kw) -> DatasetSettings:
    base = dict(kind="csv", params={}, label="state", features=None, test_split=0.25, normalize="none",
                class_names=None)
    base.update(kw)
    return DatasetSettings(source=source, **base)


def series(path, rows: int, label=lambda i: "walk" if (i // 20) % 2 else "idle"):
    """Column `step` holds the row number, so every window says which rows it was cut from."""
    lines = ["step,ax,state"] + [f"{i},{np.sin(i / 4):.4f},{label(i)}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(tmp_path, ds, task):
    meta = dataset.run(ds, task, 5, tmp_path / "d.npz", tmp_path / "d.json")
    return meta, dataset.load(tmp_path / "d.npz")


def test_window_arithmetic():
    assert data.window_count(100, 10, 5) == 19 and data.window_count(9, 10, 1) == 0 and data.window_count(10, 10, 3) == 1
    for n, window, stride, split in [(19, 10, 5, 0.25), (100, 16, 1, 0.2), (7, 4, 4, 0.3), (50, 8, 3, 0.5)]:
        n_train, n_test = data.time_split(n, window, stride, split)
        first_test = (n - n_test) * stride
        assert n_test == max(1, round(n * split))
        assert (n_train - 1) * stride + window <= first_test            # the last training window ends in time
        assert n_train == n - n_test or n_train * stride + window > first_test   # and no other one would fit


def test_window_labels():
    x = np.arange(12, dtype="float32").reshape(6, 2)
    y = np.array([0, 1, 1, 2, 2, 0], "int32")
    xw, yw = data.make_windows(x, y, 4, 2, "majority")
    assert xw.shape == (2, 4, 2) and xw[1, 0, 0] == 4                   # windows from rows 0-3 and 2-5
    assert yw.tolist() == [1, 2]                                         # [0 1 1 2] -> 1; [1 2 2 0] -> 2
    assert data.make_windows(x, np.array([0, 1, 1, 0, 0, 1]), 4, 2, "majority")[1].tolist() == [0, 0]   # tie: lowest
    assert data.make_windows(x, np.array([0, 0, 0, 1, 0, 0]), 3, 3, "any")[1].tolist() == [0, 1]
    last = data.make_windows(x, np.arange(6, dtype="float32").reshape(6, 1), 3, 1, "last")[1]
    assert last[:, 0].tolist() == [2, 3, 4, 5]


def test_classifier_windows_split_by_time_without_overlap(tmp_path, monkeypatch):
    series(tmp_path / "s.csv", 200)
    monkeypatch.chdir(tmp_path)
    meta, d = run(tmp_path, settings("s.csv", window=16, stride=8), "binary")
    assert meta["split"] == "time" and (meta["window"], meta["stride"]) == (16, 8)
    assert meta["input_shape"] == [16, 2] and meta["class_names"] == ["idle", "walk"]
    n = data.window_count(200, 16, 8)
    n_train, n_test = data.time_split(n, 16, 8, 0.25)
    assert meta["counts"] == {"train": n_train, "test": n_test}
    train_rows, test_rows = d["x_train"][:, :, 0], d["x_test"][:, :, 0]
    assert train_rows.max() < test_rows.min()                            # no row is in both parts
    assert (np.diff(train_rows[:, 0]) == 8).all()                        # time order, not shuffled
    # each window's label is the majority of its rows' labels (rows 20-39 are 'walk')
    first = train_rows[:, 0].astype(int)
    expect = [int(np.mean([(r // 20) % 2 for r in range(s, s + 16)]) > 0.5) for s in first]
    assert d["y_train"].tolist() == expect


def test_autoencoder_windows_train_on_normal_windows_only(tmp_path, monkeypatch):
    (tmp_path / "a.csv").write_text("x,y,anomaly\n" + "".join(
        f"{np.sin(i / 3):.4f},{np.cos(i / 3):.4f},{int(i in (50, 171))}\n" for i in range(240)))
    monkeypatch.chdir(tmp_path)
    meta, d = run(tmp_path, settings("a.csv", label="anomaly", window=10, stride=5, test_split=0.3), "autoencoder")
    assert meta["split"] == "time" and meta["input_shape"] == [10, 2] and meta["output_shape"] == [10, 2]
    n_train, n_test = data.time_split(data.window_count(240, 10, 5), 10, 5, 0.3)
    assert meta["counts"]["train"] == n_train - 2                        # the two windows holding row 50 are dropped
    assert d["is_anomaly_test"].tolist().count(1) == 2                   # any anomalous step makes the window anomalous
    assert (d["y_train"] == d["x_train"]).all()


def test_fixed_test_file_is_windowed_the_same_way(tmp_path, monkeypatch):
    series(tmp_path / "train.csv", 120)
    # the test file holds the same columns in another order: they are read by name
    (tmp_path / "test.csv").write_text("ax,state,step\n" + "".join(f"{np.cos(i):.4f},walk,{i}\n" for i in range(60)))
    monkeypatch.chdir(tmp_path)
    ds = settings("train.csv", test="test.csv", test_split=None, window=12, stride=6, features=("ax",))
    meta, d = run(tmp_path, ds, "binary")
    assert meta["split"] == "fixed" and meta["counts"] == {"train": data.window_count(120, 12, 6),
                                                           "test": data.window_count(60, 12, 6)}
    assert d["x_test"].shape == (9, 12, 1) and d["y_test"].tolist() == [1] * 9   # 'walk' is class 1 (sorted names)


TOML = """
[models.m]
task = "multiclass"

[models.m.dataset]
source = "data/s.csv"
label = "state"
{extra}

[models.m.model]
layers = [{{ type = "flatten" }}, {{ type = "dense", units = 2, activation = "softmax" }}]

[models.m.training]
epochs = 2

[models.m.variants.float32]
"""


@pytest.mark.parametrize("extra, match", [
    ("window = 16\nstride = 8", None),
    ("window = 16", None),
    ("stride = 4", "key 'stride': needs window"),
    ("window = 1", r"key 'window': got 1; must be in \[2, 100000\]"),
    ("window = 16\nstride = 0", r"key 'stride': got 0; must be in \[1, 100000\]"),
    ("window = 201", "key 'window': got 201, longer than the series: data/s.csv has 200 rows"),
    ("window = 16\nparams = { shuffle = true }", "key 'params': shuffle = true cannot be combined with window"),
    ("window = 100\nstride = 50\ntest_split = 0.5", "key 'test_split': got 0.5, which leaves no training window"),
])
def test_loader_checks_windows(tmp_path, extra, match):
    root = make_project(tmp_path / "p", TOML.format(extra=extra), sketch=None)
    (root / "data").mkdir()
    series(root / "data" / "s.csv", 200)
    if match is None:
        (m,) = config.load(root / "tinyml.toml").models
        assert m.dataset.window == 16 and m.dataset.stride == (8 if "stride" in extra else 16)
        return
    with pytest.raises(config.ConfigError, match=match):
        config.load(root / "tinyml.toml")


def test_loader_knows_the_window_shape(tmp_path):
    root = make_project(tmp_path / "p", TOML.format(extra="window = 16\nstride = 8\nfeatures = [\"ax\"]")
                        .replace('{ type = "flatten" }, ', "") + "\n", sketch=None)
    (root / "data").mkdir()
    series(root / "data" / "s.csv", 200)
    (root / "tinyml.toml").write_text((root / "tinyml.toml").read_text().replace(
        "[models.m.training]", "input_shape = [16, 2]\n\n[models.m.training]"))
    with pytest.raises(config.ConfigError, match=r"input_shape.*got \[16, 2\], but each sample of data/s.csv has shape "
                                                 r"\[16, 1\]"):
        config.load(root / "tinyml.toml")


def test_doit_dataset_cuts_an_anomaly_series(tmp_path):
    """As a user runs it: a sensor log with anomaly labels, windows for an autoencoder, `doit dataset`."""
    import json

    from project import doit, executed

    toml = """
[models.ae]
task = "autoencoder"

[models.ae.dataset]
source = "data/log.csv"
label = "anomaly"
window = 20
stride = 10
normalize = "standard"

[models.ae.model]
layers = [{ type = "flatten" }, { type = "dense", units = 8, activation = "relu" }, { type = "dense", units = 40 },
          { type = "reshape", target_shape = [20, 2] }]

[models.ae.training]
epochs = 2

[models.ae.variants.float32]
"""
    root = make_project(tmp_path / "p", toml, sketch=None)
    (root / "data").mkdir()
    (root / "data" / "log.csv").write_text("x,y,anomaly\n" + "".join(
        f"{np.sin(i / 5):.4f},{np.cos(i / 5):.4f},{int(400 <= i < 420)}\n" for i in range(500)))
    proc = doit(root, "dataset")
    assert "dataset:ae" in executed(proc.stdout), proc.stdout + proc.stderr
    meta = json.loads((root / "build" / "ae" / "dataset.json").read_text())
    assert meta["split"] == "time" and (meta["window"], meta["stride"]) == (20, 10)
    assert meta["input_shape"] == [20, 2] and meta["output_shape"] == [20, 2]
    d = np.load(root / "build" / "ae" / "dataset.npz")
    assert d["is_anomaly_test"].sum() == 3                         # the windows touching rows 400-419
