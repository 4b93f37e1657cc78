""".ts time-series archives (sktime/aeon format, as the UEA & UCR archives ship them): the pure-Python
reader, its errors (file and line), the dataset stage with the archive's own TRAIN/TEST files, and one
build through doit (dataset, train, convert)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from doit_tinyml import config, dataset
from doit_tinyml.config import DatasetSettings
from doit_tinyml.engine import data
from doit_tinyml.engine.errors import TinyMLError
from project import doit, executed, make_project

REAL_HEADER = """#The data was derived from a smart watch worn by four people (comment lines start with '#')
#
@problemName BasicMotions
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength true
@seriesLength 4
@classLabel true Standing Running Walking Badminton

@data
"""


def write_ts(path: Path, x: np.ndarray, labels, classes, *, name="Tiny", header_case=str) -> Path:
    """A .ts file of x (n, length, dims) with one label per case, in the archives' layout."""
    n, length, dims = x.shape
    head = [f"@problemName {name}", "@timeStamps false", "@missing false",
            f"@univariate {'true' if dims == 1 else 'false'}", f"@dimensions {dims}", "@equalLength true",
            f"@seriesLength {length}", f"@classLabel true {' '.join(map(str, classes))}", "@data"]
    head = [header_case(h.split()[0]) + h[len(h.split()[0]):] for h in head]
    rows = [":".join(",".join(f"{v:.6g}" for v in x[i, :, d]) for d in range(dims)) + f":{labels[i]}" for i in range(n)]
    path.write_text("\n".join(head + rows) + "\n")
    return path


def settings(source, **kw) -> DatasetSettings:
    base = dict(kind="ts", params={}, label=None, features=None, test_split=0.25, normalize="none", class_names=None)
    base.update(kw)
    return DatasetSettings(source=source, **base)


# --------------------------------------------------------------------------- the reader
def test_reads_a_real_archive_layout_channels_last(tmp_path):
    (tmp_path / "a.ts").write_text(REAL_HEADER + "1,2,3,4:10,20,30,40:Walking\n"
                                   "\n  0.5, 1.5 ,2.5,3.5:5e1,6E1,70,80:Standing   \n"
                                   "# a comment between cases\n"
                                   "-1,-2,-3,-4:1,1,1,1:Badminton\n")
    info = data.read_ts(tmp_path / "a.ts", "a.ts", keep=True)
    assert (info["n"], info["length"], info["dims"]) == (3, 4, 2) and info["sample_shape"] == [4, 2]
    assert info["class_names"] == ["Standing", "Running", "Walking", "Badminton"]   # @classLabel order
    assert info["y"] == [2, 0, 3] and info["labels"] == "text" and info["n_classes"] == 4
    assert info["problem"] == "BasicMotions"
    # the stage turns it into (n, length, dims): dimension d of case i is x[i, :, d]
    x, y, names, test = dataset._load_source(settings(str(tmp_path / "a.ts")), None)
    assert x.shape == (3, 4, 2) and test is None
    np.testing.assert_array_equal(x[0, :, 1], [10, 20, 30, 40])
    np.testing.assert_array_equal(x[1, :, 0], [0.5, 1.5, 2.5, 3.5])


def test_header_keywords_are_case_insensitive_and_numeric_labels_match(tmp_path):
    x = np.arange(24, dtype=float).reshape(4, 6, 1)
    write_ts(tmp_path / "u.ts", x, ["1.0", "2", "1", "3.0"], [1, 2, 3], header_case=str.lower)
    info = data.read_ts(tmp_path / "u.ts", "u.ts", keep=True)
    assert info["y"] == [0, 1, 0, 2] and info["sample_shape"] == [6, 1]
    # labels 0..K-1 in order are the class ids themselves: the loader reports them as integers
    write_ts(tmp_path / "z.ts", x, [0, 1, 1, 0], [0, 1])
    info = data.inspect_ts(tmp_path / "z.ts", "z.ts")
    assert (info["labels"], info["min"], info["max"]) == ("integer", 0, 1) and "data" not in info


def test_regression_archive_with_target_label(tmp_path):
    (tmp_path / "r.ts").write_text("@problemName R\n@timeStamps false\n@univariate true\n@equalLength true\n"
                                   "@seriesLength 3\n@targetLabel true\n@data\n1,2,3:0.5\n4,5,6:1.25\n")
    info = data.read_ts(tmp_path / "r.ts", "r.ts", keep=True)
    assert info["class_names"] is None and info["y"] == [0.5, 1.25] and info["labels"] == "number"


CASES = REAL_HEADER + "1,2,3,4:10,20,30,40:Walking\n1,2,3,4:5,6,7,8:Running\n"    # cases on lines 13 and 14


@pytest.mark.parametrize("changes, match", [
    ([("1,2,3,4:10", "1,2,3:10")], r"a.ts line 13: dimension 1 has 3 values but line 9 says @seriesLength 4; this "
                                   r"reader needs equal-length series"),
    ([("@seriesLength 4\n", ""), ("5,6,7,8", "5,6,7")], r"a.ts line 13: dimension 2 has 3 values but line 12's "
                                                          r"series have 4"),
    ([("@equalLength true", "@equalLength false")], r"a.ts line 8: @equalLength false"),
    ([("@classLabel true Standing Running Walking Badminton", "@classLabel false")],
     r"a.ts: no class labels \(line 10 says @classLabel false\)"),
    ([("@classLabel true Standing Running Walking Badminton", "")], r"a.ts: no class labels \(there is no @classLabel"),
    ([("@classLabel true Standing Running Walking Badminton", "@classLabel true")], "line 10: @classLabel true lists "
                                                                                     "no labels"),
    ([(":Walking", "")], r"a.ts line 13: 1 dimension\(s\) but line 7 says @dimensions 2.*is the label missing"),
    ([(":Walking", ":Jogging")], r"a.ts line 13: class label 'Jogging' is not one of the classes"),
    ([("1,2,3,4:10", "1,2,?,4:10")], r"a.ts line 13: dimension 1, value 3 is '\?', a missing value"),
    ([("10,20,30,40", "10,20,NaN,40")], r"a.ts line 13: dimension 2, value 3 is 'NaN', not a finite number"),
    ([("1,2,3,4:10", "1,2,,4:10")], r"a.ts line 13: dimension 1, value 3 is empty"),
    ([("1,2,3,4:10", "(0,1),(1,2),(2,3),(3,4):10")], r"value 1 is '\(0', not a number \(time stamps"),
    ([("@timeStamps false", "@timeStamps true")], r"a.ts line 4: @timeStamps true"),
    ([("@timeStamps false", "@timeStamps maybe")], r"a.ts line 4: @timestamps must be followed by true or false"),
    ([("@data\n", "")], r"a.ts line 12: '1,2,3,4:10,20,30,40:Walking' comes before the @data line"),
    ([("1,2,3,4:10,20,30,40:Walking\n1,2,3,4:5,6,7,8:Running\n", "")], r"a.ts: no cases after @data \(line 12\)"),
])
def test_mistakes_name_the_file_and_line(tmp_path, changes, match):
    text = CASES
    for old, new in changes:
        assert old in text
        text = text.replace(old, new, 1)
    (tmp_path / "a.ts").write_text(text)
    with pytest.raises(TinyMLError, match=match):
        data.inspect_ts(tmp_path / "a.ts", "a.ts")
    with pytest.raises(TinyMLError, match=match):      # the stage reads with the same parser
        dataset._load_source(settings(str(tmp_path / "a.ts")), None)


# --------------------------------------------------------------------------- the archive's own TRAIN / TEST files
def archive(folder: Path, n_train=24, n_test=12, length=16, dims=3, seed=0, test_classes=None):
    """A tiny multivariate archive: class 0 rises, class 1 falls, class 2 oscillates (plus noise)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)

    def make(n):
        y = np.arange(n) % 3
        base = np.stack([t, 1 - t, np.sin(6 * np.pi * t)])[y]           # (n, length)
        x = base[:, :, None] * np.arange(1, dims + 1) + 0.05 * rng.standard_normal((n, length, dims))
        return x, y

    names = ["rise", "fall", "wave"]
    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    write_ts(folder / "TINY_TRAIN.ts", xtr, [names[i] for i in ytr], names)
    write_ts(folder / "TINY_TEST.ts", xte, [names[i] for i in yte], test_classes or names)
    return xtr, ytr, xte, yte


def test_fixed_test_file_keeps_its_order_and_normalises_from_training_only(tmp_path, monkeypatch):
    xtr, ytr, xte, yte = archive(tmp_path)
    monkeypatch.chdir(tmp_path)
    ds = settings("TINY_TRAIN.ts", test="TINY_TEST.ts", test_split=None, normalize="standard")
    meta = dataset.run(ds, "multiclass", 3, tmp_path / "d.npz", tmp_path / "d.json")
    d = dataset.load(tmp_path / "d.npz")
    assert meta["split"] == "fixed" and meta["test_source"] == "TINY_TEST.ts"
    assert meta["counts"] == {"train": 24, "test": 12} and meta["input_shape"] == [16, 3]
    assert meta["class_names"] == ["rise", "fall", "wave"] and meta["n_classes"] == 3
    np.testing.assert_array_equal(d["y_test"], yte)                  # the test file's order, untouched
    np.testing.assert_allclose(d["x_train"].mean(axis=(0, 1)), 0, atol=1e-5)   # per dimension, training part
    np.testing.assert_allclose(d["x_test"] * meta["norm_b"] + meta["norm_a"], xte, atol=1e-4)
    assert sorted(d["y_train"].tolist()) == sorted(ytr.tolist())     # all of TRAIN trains, shuffled (seeded)
    assert json.loads((tmp_path / "d.json").read_text())["split"] == "fixed"


def test_test_file_classes_map_by_name(tmp_path, monkeypatch):
    archive(tmp_path, test_classes=["wave", "rise", "fall"])          # the test file declares another order
    monkeypatch.chdir(tmp_path)
    ds = settings("TINY_TRAIN.ts", test="TINY_TEST.ts", test_split=None)
    dataset.run(ds, "multiclass", 3, tmp_path / "d.npz", tmp_path / "d.json")
    np.testing.assert_array_equal(dataset.load(tmp_path / "d.npz")["y_test"], np.arange(12) % 3)


TOML = """
[models.m]
task = "multiclass"

[models.m.dataset]
source = "data/TINY_TRAIN.ts"
test = "data/TINY_TEST.ts"
normalize = "standard"

[models.m.model]
layers = [
  { type = "conv1d", filters = 4, kernel_size = 3, activation = "relu" },
  { type = "global_average_pooling1d" },
  { type = "dense", units = 3, activation = "softmax" },
]

[models.m.training]
epochs = 3
batch_size = 8

[models.m.variants.float32]

[models.m.variants.int8]
quantization = "int8"
"""


def test_loader_checks_the_pair(tmp_path):
    root = make_project(tmp_path / "p", TOML, sketch=None)
    (root / "data").mkdir()
    archive(root / "data")
    (m,) = config.load(root / "tinyml.toml").models
    assert m.dataset.kind == "ts" and m.dataset.test == "data/TINY_TEST.ts" and m.dataset.test_split is None
    assert m.dataset.deps == ("data/TINY_TRAIN.ts", "data/TINY_TEST.ts")
    bad = [(TOML.replace("units = 3,", "units = 4,"), "output layer has 4 units but the model has 3 classes"),
           (TOML.replace('normalize = "standard"', 'normalize = "standard"\ntest_split = 0.2'),
            "key 'test_split': cannot be combined with key 'test'"),
           (TOML.replace('test = "data/TINY_TEST.ts"', 'test = "data/other.csv"'), "must be a .ts file like the source")]
    for text, match in bad:
        (root / "tinyml.toml").write_text(text)
        with pytest.raises(config.ConfigError, match=match):
            config.load(root / "tinyml.toml")
    # a test file of another shape, or with classes the training file does not have
    (root / "tinyml.toml").write_text(TOML)
    archive(root / "data", dims=2)
    archive(tmp_path, dims=3)
    (root / "data" / "TINY_TRAIN.ts").write_bytes((tmp_path / "TINY_TRAIN.ts").read_bytes())
    with pytest.raises(config.ConfigError, match=r"key 'test': each sample of data/TINY_TEST.ts has shape \[16, 2\] "
                                                 r"but each sample of data/TINY_TRAIN.ts has \[16, 3\]"):
        config.load(root / "tinyml.toml")
    archive(root / "data", test_classes=["rise", "fall", "wave", "jump"])
    with pytest.raises(config.ConfigError, match="declares classes the training file data/TINY_TRAIN.ts does not: 'jump'"):
        config.load(root / "tinyml.toml")


@pytest.mark.slow
def test_ts_archive_trains_and_converts_through_doit(tmp_path):
    root = make_project(tmp_path / "p", TOML, sketch=None)
    (root / "data").mkdir()
    archive(root / "data", n_train=30, n_test=15)
    proc = doit(root, "convert")
    assert {"dataset:m", "train:m", "convert:m/float32", "convert:m/int8"} <= executed(proc.stdout), proc.stdout
    meta = json.loads((root / "build" / "m" / "dataset.json").read_text())
    assert meta["split"] == "fixed" and meta["input_shape"] == [16, 3] and meta["counts"] == {"train": 30, "test": 15}
    assert (root / "build" / "m" / "int8" / "model.tflite").stat().st_size > 0
    assert not executed(doit(root, "convert").stdout)     # nothing changed: nothing runs
