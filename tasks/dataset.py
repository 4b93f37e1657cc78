"""Dataset stage: source (generator, CSV, .npz or callable) -> dataset.npz + dataset.json.

Seeded and byte-deterministic: the same source and settings give the same bytes, so doit's md5
check leaves training alone when nothing really changed.
"""
from __future__ import annotations

import importlib
import zipfile
from pathlib import Path

from .engine.data import (GENERATOR_PARAMS, GENERATORS, DEFAULT_TEST_SPLIT, check_params, class_index,  # noqa: F401
                          inspect_npz, make_windows, read_csv_columns, read_ts, time_split)
from .engine.errors import TinyMLError
from .engine import artifacts
from .engine.io import read_npz, write_npz


# --------------------------------------------------------------------------- loading sources
def _load_source(ds, rng):
    """Return (x, y, class_names or None, test): test is (x_test, y_test) for a fixed test set, else None."""
    display = ds.source
    test = None
    if ds.kind == "generator":
        # `shuffle` is read by run() (autoencoder test split), not by the generator
        params = {k: v for k, v in ds.params.items() if k != "shuffle"}
        schema = {k: v for k, v in GENERATOR_PARAMS.get(ds.source, {}).items() if k != "shuffle"}
        problem = check_params(params, schema, f"generator {ds.source!r}")
        if problem:
            raise TinyMLError(f"dataset generator {ds.source!r}: {problem}")
        out = GENERATORS[ds.source](rng, **params)
    elif ds.kind == "callable":
        mod, fn = ds.source.split(":")
        try:
            func = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as e:
            raise TinyMLError(f"dataset source {ds.source!r} cannot be imported: {_one_line(e)}") from None
        try:
            out = func(**ds.params)
        except TinyMLError:
            raise
        except TypeError as e:
            raise TinyMLError(f"dataset source {ds.source!r} rejected params {ds.params!r}: {_one_line(e)}") from None
        display = f"dataset source {ds.source!r}"
        if isinstance(out, dict) and ("x_test" in out or "y_test" in out):
            if "x_test" not in out or "y_test" not in out:
                raise TinyMLError(f"{display}: returned {'x_test' if 'x_test' in out else 'y_test'} without "
                                  f"{'y_test' if 'x_test' in out else 'x_test'}; a fixed test set needs both")
            test = (_numeric(out["x_test"], "x_test", display), _numeric(out["y_test"], "y_test", display))
    elif ds.kind == "npz":
        info = inspect_npz(Path(ds.source), ds.source, read_labels_up_to=0)   # dtypes, shapes, lengths
        out = _read_npz(ds.source, ("x", "y"))
        if info.get("n_test"):
            test = _read_npz(ds.source, ("x_test", "y_test"))
        elif ds.test:
            inspect_npz(Path(ds.test), ds.test, read_labels_up_to=0)
            test = _read_npz(ds.test, ("x", "y"))
    elif ds.kind == "ts":
        out, test = _read_ts(ds)
    else:  # csv
        out, test = _read_csv(ds)
    if isinstance(out, dict):
        if "x" not in out or "y" not in out:
            raise TinyMLError(f"{display}: returned a dict without 'x' and 'y' (keys: {', '.join(map(str, out))})")
        out = (out["x"], out["y"], out.get("class_names"))
    if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
        raise TinyMLError(f"{display}: must return (x, y), (x, y, class_names) or a dict with x and y; "
                          f"got {type(out).__name__}")
    x, y = _numeric(out[0], "x", display), _numeric(out[1], "y", display)
    names = list(out[2]) if len(out) > 2 and out[2] is not None else None
    _check_part(x, y, "x", "y", display, need=1 if test is not None else 2)
    if test is not None:
        tdisplay = ds.test if ds.test else display
        xt, yt = _numeric(test[0], "x_test", tdisplay), _numeric(test[1], "y_test", tdisplay)
        keys = ("x", "y") if ds.test else ("x_test", "y_test")
        _check_part(xt, yt, *keys, tdisplay, need=1)
        if xt.shape[1:] != x.shape[1:] and not (x.ndim == 1 and xt.ndim == 1):
            raise TinyMLError(f"{tdisplay}: each test sample has shape {list(xt.shape[1:])} but each training sample "
                              f"has {list(x.shape[1:])}; they must match")
        test = (xt, yt)
    return x, y, names, test


def _check_part(x, y, xname: str, yname: str, display: str, *, need: int) -> None:
    if x.ndim == 0 or y.ndim == 0:
        raise TinyMLError(f"{display}: {xname} and {yname} need one entry per sample; got shapes {list(x.shape)} and "
                          f"{list(y.shape)}")
    if len(x) != len(y):
        raise TinyMLError(f"{display}: {xname} has {len(x)} samples but {yname} has {len(y)}")
    if len(x) < need:
        raise TinyMLError(f"{display}: {len(x)} sample(s); a dataset needs at least 2 (one to train, one to test)"
                          if need == 2 else f"{display}: no samples in {xname}")
    _check_finite(x, xname, display)
    _check_finite(y, yname, display)


def _read_npz(path: str, keys: tuple[str, str]):
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return z[keys[0]], z[keys[1]]
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise TinyMLError(f"{path}: cannot read the arrays: {_one_line(e)}") from None


def _read_ts(ds):
    """A .ts archive (and its fixed test file): x (n, length, dims), class ids in @classLabel order."""
    import numpy as np

    def part(path: str):
        info = read_ts(Path(path), path, keep=True)
        x = np.frombuffer(info["data"], dtype="float64").reshape(info["n"], info["dims"], info["length"])
        x = np.ascontiguousarray(x.transpose(0, 2, 1))
        y = np.array(info["y"], dtype="int32" if info["class_names"] is not None else "float32")
        return info, x, y

    info, x, y = part(ds.source)
    names = info["class_names"]
    test = None
    if ds.test:
        tinfo, xt, yt = part(ds.test)
        if (names is None) != (tinfo["class_names"] is None):
            raise TinyMLError(f"{ds.test}: labels its cases differently from {ds.source} (@classLabel against "
                              f"@targetLabel)")
        if names is not None:   # the test file's class ids -> the training file's, by name
            remap = []
            for c in tinfo["class_names"]:
                i = class_index(c, names)
                if i is None:
                    raise TinyMLError(f"{ds.test}: class {c!r} is not a class of the training file {ds.source} "
                                      f"({' '.join(names)[:200]})")
                remap.append(i)
            yt = np.array(remap, dtype="int32")[yt]
        test = (xt, yt)
    return (x, y, names), test


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _numeric(a, name: str, display: str):
    import numpy as np

    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise TinyMLError(f"{display}: {name} is not a rectangular array ({_one_line(e)})") from None
    if arr.dtype.kind not in "biuf":
        raise TinyMLError(f"{display}: {name} has dtype {arr.dtype} ({'Python objects or ragged rows' if arr.dtype.kind == 'O' else 'not numbers'}); "
                          f"{name} must be a numeric array (int, float or bool)")
    return arr


def _check_finite(a, name: str, display: str) -> None:
    import numpy as np

    if a.dtype.kind != "f":
        return
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f"{name}[{idx[0]}]" + (f" at {list(idx[1:])}" if len(idx) > 1 else "")
        raise TinyMLError(f"{display}: {int(bad.sum())} value(s) in {name} are NaN or infinite (first: {where} = "
                          f"{a[idx]}); fill or drop those samples before training")


def _check_float32_range(a, name: str, display: str) -> None:
    """Values that are finite in the source but would become infinite as float32 (the models' type)."""
    import numpy as np

    if a.dtype.kind not in "iuf" or a.dtype.itemsize <= 4 and a.dtype.kind == "f":
        return
    big = np.abs(a.astype("float64")) > np.finfo(np.float32).max
    if big.any():
        idx = tuple(int(i) for i in np.argwhere(big)[0])
        where = f"{name}[{idx[0]}]" + (f" at {list(idx[1:])}" if len(idx) > 1 else "")
        raise TinyMLError(f"{display}: {int(big.sum())} value(s) in {name} are too large for float32, the type "
                          f"the model runs in (first: {where} = {a[idx]:.3g}; float32 stops at 3.4e38); rescale "
                          f"the data")


def _read_csv(ds):
    """A CSV (and its fixed test file, read with the training file's feature columns)."""
    import numpy as np

    names, rows, labels, numbers = read_csv_columns(Path(ds.source), ds.label, ds.features, ds.source, keep=True)
    x = np.array(rows, dtype="float32").reshape(len(rows), len(names))
    test = None
    if ds.test:
        _, trows, tlabels, tnumbers = read_csv_columns(Path(ds.test), ds.label, names, ds.test, keep=True)
        xt = np.array(trows, dtype="float32").reshape(len(trows), len(names))
        if (numbers is None) != (tnumbers is None):
            text, nums = (ds.source, ds.test) if numbers is None else (ds.test, ds.source)
            raise TinyMLError(f"{ds.test}: the labels of {text} are text but those of {nums} are numbers; the fixed "
                              f"test set must label its samples like the training file")
    if numbers is not None:
        if ds.test:
            test = (xt, np.array(tnumbers, dtype="float32"))
        return (x, np.array(numbers, dtype="float32"), None), test
    classes = sorted(set(labels) | (set(tlabels) if ds.test else set()))   # text labels: classes in sorted order
    index = {c: i for i, c in enumerate(classes)}
    if ds.test:
        test = (xt, np.array([index[v] for v in tlabels], dtype="int32"))
    return (x, np.array([index[v] for v in labels], dtype="int32"), classes), test


# --------------------------------------------------------------------------- the stage
def _prepare(x, y, task: str, display: str, yname: str = "y"):
    """x as float32 (a 1-D x is one feature); y as int32 labels (classifiers, autoencoders) or float32 targets
    (a 1-D regression target is one output column, shape (n, 1), like a Dense(1) output)."""
    import numpy as np

    _check_float32_range(x, "x" if yname == "y" else "x_test", display)
    x = x.astype("float32")
    if x.ndim == 1:                       # one feature per sample
        x = x.reshape(len(x), 1)
    if task in ("binary", "multiclass", "autoencoder"):
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.reshape(len(y))
        if y.ndim != 1:
            what = "anomaly labels (0 normal, 1 anomalous)" if task == "autoencoder" else "class ids 0..N-1"
            raise TinyMLError(f"{display}: {yname} has shape {list(y.shape)} but a {task} dataset needs one label per "
                              f"sample: {what}, shape (n,)")
        if not np.array_equal(y, np.round(y)) or y.min() < 0:
            bad = y[(y != np.round(y)) | (y < 0)][0]
            raise TinyMLError(f"{display}: task is {task} but label {bad!r} is not a whole number >= 0; labels "
                              f"must be class ids 0..N-1" + (" (0 normal, 1 anomalous)" if task == "autoencoder" else ""))
        if task in ("binary", "autoencoder") and y.max() > 1:
            raise TinyMLError(f"{display}: task is {task} but the labels go up to {int(y.max())}; {task} labels are "
                              f"0 and 1" + ("; use task = \"multiclass\" for more classes" if task == "binary" else ""))
        return x, y.astype("int32")
    _check_float32_range(y, yname, display)
    y = y.astype("float32")
    if y.ndim == 1:
        y = y.reshape(len(y), 1)
    return x, y


# How a window of time steps gets its label (docs/config.md): the most frequent class (a tie goes to the
# lowest class id), anomalous when any step is, and a regression target from the window's last step.
WINDOW_LABEL = {"binary": "majority", "multiclass": "majority", "autoencoder": "any", "regression": "last"}


def run(ds, task: str, seed: int, out_npz: Path, out_json: Path) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    x, y, names, test = _load_source(ds, rng)
    display = ds.source if ds.kind != "callable" else f"dataset source {ds.source!r}"
    tdisplay = ds.test or display
    x, y = _prepare(x, y, task, display)
    if test is not None:
        x_fixed, y_fixed = _prepare(*test, task, tdisplay, "y_test" if not ds.test else "y")
    window = ds.window
    if window:
        rule = WINDOW_LABEL[task]
        x, y = make_windows(x, y, window, ds.stride, rule)
        if len(x) == 0:
            raise TinyMLError(f"{display}: window = {window} is longer than the series; lower window or add rows")
        if test is not None:
            x_fixed, y_fixed = make_windows(x_fixed, y_fixed, window, ds.stride, rule)
            if len(x_fixed) == 0:
                raise TinyMLError(f"{tdisplay}: window = {window} is longer than the series; lower window or add rows")
    test_split = ds.test_split if ds.test_split is not None else DEFAULT_TEST_SPLIT
    n = len(x)
    extra = {}
    if test is not None:
        # a fixed test set: everything in the source trains (shuffled, seeded, so validation_split takes a random
        # part; windows stay in time order), the test part stays in its file's order
        split = "fixed"
        order = np.arange(n) if window else rng.permutation(n)
        x_all, y_all = x[order], y[order]
        x_test, y_test = x_fixed, y_fixed
        if task == "autoencoder":
            keep = y_all == 0
            x_train, y_train = x_all[keep], x_all[keep]
            extra["is_anomaly_test"] = y_test
        else:
            x_train, y_train = x_all, y_all
    elif window:
        # windows overlap: split by time, never shuffled; training keeps the windows that end before the
        # first test window starts
        split = "time"
        n_train, n_test = time_split(n, window, ds.stride, test_split)
        if n_train < 1:
            raise TinyMLError(f"{display}: test_split = {test_split} leaves no training window out of {n}; add "
                              f"rows or lower test_split")
        x_test, y_test = x[n - n_test:], y[n - n_test:]
        if task == "autoencoder":
            keep = np.where(y[:n_train] == 0)[0]
            x_train = x[keep]
            extra["is_anomaly_test"] = y_test
        else:
            x_train, y_train = x[:n_train], y[:n_train]
    else:
        perm = rng.permutation(n)
        n_test = max(1, int(round(n * test_split)))
        if n - n_test < 1:
            raise TinyMLError(f"{display}: {n} samples leave none for training after test_split = {test_split}; "
                              f"add samples or lower [dataset] test_split")
        if task == "autoencoder":
            # y holds the anomaly labels; train on normal samples only, test on everything held out
            is_anom = y.astype("int32").reshape(n)
            shuffled = ds.params.get("shuffle", False)
            split = "random" if shuffled else "time"
            test_idx = np.sort(perm[:n_test]) if shuffled else np.arange(n - n_test, n)
            train_mask = np.ones(n, bool)
            train_mask[test_idx] = False
            train_idx = np.where(train_mask & (is_anom == 0))[0]
            x_train, x_test = x[train_idx], x[test_idx]
            extra["is_anomaly_test"] = is_anom[test_idx]
        else:
            split = "random"
            test_idx, train_idx = perm[:n_test], perm[n_test:]
            x_train, x_test, y_train, y_test = x[train_idx], x[test_idx], y[train_idx], y[test_idx]

    axes = tuple(range(x_train.ndim - 1))
    feat_shape = x_train.shape[-1:]
    if task == "autoencoder" and len(x_train) == 0:
        raise TinyMLError(f"{display}: no normal (label 0) samples left for training the autoencoder; the training "
                          f"part holds only anomalies")
    if ds.normalize == "standard":
        a = x_train.mean(axis=axes)
        b = x_train.std(axis=axes)
    elif ds.normalize == "minmax":
        a = x_train.min(axis=axes)
        b = x_train.max(axis=axes) - a
    else:
        a, b = np.zeros(feat_shape), np.ones(feat_shape)
    b = np.where(b < 1e-8, 1.0, b)
    a, b = a.astype("float32"), b.astype("float32")
    x_train, x_test = ((x_train - a) / b).astype("float32"), ((x_test - a) / b).astype("float32")
    if task == "autoencoder":
        y_train, y_test = x_train, x_test

    n_classes = None
    if task in ("binary", "multiclass"):
        given = list(ds.class_names) if ds.class_names else None
        top = int(max(y.max(), y_fixed.max() if test is not None else 0)) + 1
        if given is not None and len(given) < top:
            raise TinyMLError(f"{display}: the labels go up to {top - 1} ({top} classes) but [dataset] class_names "
                              f"lists only {len(given)}; give one name per class")
        n_classes = max(top, 2, len(given) if given else 0, len(names) if ds.kind == "ts" and names else 0)
        if names is not None and len(names) < n_classes:
            raise TinyMLError(f"{display}: returned {len(names)} class names for {n_classes} classes")
        names = given or names or [str(i) for i in range(n_classes)]
    else:
        names = list(ds.class_names) if ds.class_names else None

    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
              "norm_a": a, "norm_b": b, **extra}
    write_npz(out_npz, arrays)
    files = ("csv", "npz", "ts")
    meta = {"task": task, "n_classes": n_classes, "class_names": names,
            "input_shape": list(x_train.shape[1:]), "output_shape": list(y_train.shape[1:]),
            "normalize": ds.normalize, "norm_a": a.tolist(), "norm_b": b.tolist(),
            "counts": {"train": int(len(x_train)), "test": int(len(x_test))},
            "source": Path(ds.source).name if ds.kind in files else ds.source,
            "split": split, "test_source": Path(ds.test).name if ds.test else None,
            "window": window or None, "stride": ds.stride if window else None}
    record = artifacts.Dataset(**meta)
    artifacts.write(out_json, record)
    meta = record.to_dict()
    return meta


def load(path: Path) -> dict:
    """Every array of a dataset.npz (engine.io.read_npz)."""
    return read_npz(path)
