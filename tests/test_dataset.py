"""Dataset stage: every kind of source, seeded splits, normalisation from the training split only,
byte-deterministic output, and errors a person can act on. No TensorFlow here."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from doit_tinyml import dataset
from doit_tinyml.engine import data
from doit_tinyml.config import DatasetSettings
from doit_tinyml.engine.errors import TinyMLError


def settings(source, kind, **kw) -> DatasetSettings:
    base = dict(params={}, label=None, features=None, test_split=0.25, normalize="none", class_names=None)
    base.update(kw)
    return DatasetSettings(source=source, kind=kind, **base)


def run(tmp_path, ds, task, seed=1):
    meta = dataset.run(ds, task, seed, tmp_path / "d.npz", tmp_path / "d.json")
    return meta, dataset.load(tmp_path / "d.npz")


def test_sine_generator_is_seeded_and_byte_deterministic(tmp_path):
    ds = settings("sine", "generator", params={"samples": 200, "noise": 0.0})
    meta, d = run(tmp_path, ds, "regression")
    first = (tmp_path / "d.npz").read_bytes()
    assert meta["counts"] == {"train": 150, "test": 50}
    np.testing.assert_allclose(d["y_train"], np.sin(d["x_train"]), atol=1e-6)  # noise 0: exactly the sine
    run(tmp_path, ds, "regression")
    assert (tmp_path / "d.npz").read_bytes() == first
    run(tmp_path, ds, "regression", seed=2)
    assert (tmp_path / "d.npz").read_bytes() != first


def test_csv_with_text_labels_and_standard_normalisation(tmp_path, monkeypatch):
    rows = ["temp,vib,state"] + [f"{20 + i % 7},{(i * 3) % 11},{'hot' if i % 2 else 'ok'}" for i in range(40)]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    ds = settings("r.csv", "csv", label="state", normalize="standard")
    meta, d = run(tmp_path, ds, "binary")
    assert meta["class_names"] == ["hot", "ok"] and meta["n_classes"] == 2
    assert d["x_train"].shape == (30, 2) and d["y_train"].dtype == np.int32
    # statistics come from the training split only: its features are exactly standardised
    np.testing.assert_allclose(d["x_train"].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(d["x_train"].std(0), 1, atol=1e-5)
    assert meta["norm_a"] != [0.0, 0.0] and meta["normalize"] == "standard"


def test_csv_missing_label_column_suggests_the_closest(tmp_path, monkeypatch):
    (tmp_path / "r.csv").write_text("temp,state\n1,0\n2,1\n3,0\n4,1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TinyMLError, match="no column 'stat'.*did you mean 'state'"):
        run(tmp_path, settings("r.csv", "csv", label="stat"), "binary")
    assert not (tmp_path / "d.npz").exists()


def test_npz_source_and_minmax(tmp_path, monkeypatch):
    x = np.arange(60, dtype="float32").reshape(30, 2)
    np.savez(tmp_path / "src.npz", x=x, y=(x[:, 0] > 20).astype("int32"))
    monkeypatch.chdir(tmp_path)
    meta, d = run(tmp_path, settings("src.npz", "npz", normalize="minmax"), "binary")
    assert d["x_train"].min() >= 0 and d["x_train"].max() <= 1 + 1e-6
    assert meta["counts"]["train"] + meta["counts"]["test"] == 30


def test_callable_source_gets_its_params(tmp_path, monkeypatch):
    (tmp_path / "mydata.py").write_text(
        "import numpy as np\n"
        "def load(n=10):\n"
        "    x = np.linspace(0, 1, n, dtype='float32')[:, None]\n"
        "    return x, 3 * x[:, 0], None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    meta, d = run(tmp_path, settings("mydata:load", "callable", params={"n": 24}), "regression")
    assert meta["counts"] == {"train": 18, "test": 6}
    assert d["y_test"].shape == (6, 1)  # a 1-D regression target becomes one output column
    np.testing.assert_allclose(d["y_test"][:, 0], 3 * d["x_test"][:, 0], atol=1e-6)
    sys.modules.pop("mydata", None)


def test_bad_generator_params_name_the_generator(tmp_path):
    with pytest.raises(TinyMLError, match="'sine'.*samplez"):
        run(tmp_path, settings("sine", "generator", params={"samplez": 3}), "regression")


def test_tapping_autoencoder_trains_on_normal_data_only(tmp_path):
    ds = settings("tapping", "generator", params={"seconds": 120, "window": 25}, test_split=0.4)
    meta, d = run(tmp_path, ds, "autoencoder")
    assert d["x_train"].shape[1] == 75 and (d["y_train"] == d["x_train"]).all()
    labels = d["is_anomaly_test"]
    assert labels.shape == (len(d["x_test"]),) and 0 < labels.mean() < 1  # the test part mixes both
    assert json.loads((tmp_path / "d.json").read_text())["task"] == "autoencoder"


def test_digits_are_images(tmp_path):
    meta, d = run(tmp_path, settings("sklearn:digits", "generator"), "multiclass")
    assert d["x_train"].shape[1:] == (8, 8, 1) and meta["n_classes"] == 10
    assert meta["class_names"] == [str(i) for i in range(10)]


# --------------------------------------------------------------------------- issue 8: regression targets, bad data
def test_csv_regression_target_is_one_output_column(tmp_path, monkeypatch):
    rows = ["a,b,y"] + [f"{i},{i % 5},{2 * i - 1}" for i in range(20)]
    (tmp_path / "r.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    meta, d = run(tmp_path, settings("r.csv", "csv", label="y"), "regression")
    assert d["y_train"].shape == (15, 1) and meta["output_shape"] == [1]   # like a Dense(1) output


def test_npz_with_1d_x_and_y(tmp_path, monkeypatch):
    np.savez(tmp_path / "s.npz", x=np.linspace(0, 1, 20), y=np.linspace(0, 2, 20))
    monkeypatch.chdir(tmp_path)
    meta, d = run(tmp_path, settings("s.npz", "npz"), "regression")
    assert meta["input_shape"] == [1] and d["y_test"].shape == (5, 1)


@pytest.mark.parametrize("x, match", [
    (np.array([[1.0], [np.nan]] * 5), r"s.npz: 5 value\(s\) in x are NaN or infinite \(first: x\[1\] at \[0\]"),
    (np.array([[1.0], [1e300]] * 5), r"too large for float32, the type the model runs in \(first: x\[1\] at \[0\] = 1e\+300"),
])
def test_non_finite_data_stops_the_dataset_stage(tmp_path, monkeypatch, x, match):
    np.savez(tmp_path / "s.npz", x=x, y=np.zeros(10))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TinyMLError, match=match):
        run(tmp_path, settings("s.npz", "npz"), "regression")
    assert not (tmp_path / "d.npz").exists()


def test_class_names_must_cover_the_labels(tmp_path, monkeypatch):
    np.savez(tmp_path / "s.npz", x=np.zeros((12, 2)), y=np.arange(12) % 3)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TinyMLError, match="labels go up to 2 .* class_names lists only 2"):
        run(tmp_path, settings("s.npz", "npz", class_names=("a", "b")), "multiclass")
    meta, _ = run(tmp_path, settings("s.npz", "npz", class_names=("a", "b", "c", "d")), "multiclass")
    assert meta["n_classes"] == 4   # a class absent from the data keeps its output


def test_inspection_without_numpy_matches_the_stage(tmp_path):
    (tmp_path / "r.csv").write_bytes(b"\xef\xbb\xbfa,b,state\n1,2,ok\n\n3,4,hot\n")   # BOM, blank line
    info = data.inspect_csv(tmp_path / "r.csv", "state", None, "r.csv")
    assert info["n"] == 2 and info["sample_shape"] == [2] and info["labels"] == "text" and info["n_distinct"] == 2
    np.savez(tmp_path / "s.npz", x=np.zeros((6, 4, 2), "float32"), y=np.array([0, 1, 2, 0, 1, 2], ">i4"))
    info = data.inspect_npz(tmp_path / "s.npz", "s.npz")
    assert info["sample_shape"] == [4, 2] and info["labels"] == "integer" and (info["min"], info["max"]) == (0, 2)
    np.savez_compressed(tmp_path / "c.npz", x=np.zeros((3, 1)), y=np.array([0.5, np.inf, 1]))
    with pytest.raises(TinyMLError, match=r"y\[1\] is inf"):
        data.inspect_npz(tmp_path / "c.npz", "c.npz")
