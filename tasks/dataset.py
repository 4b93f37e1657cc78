"""Dataset stage: source (generator, CSV, .npz or callable) -> dataset.npz + dataset.json.

Seeded and byte-deterministic: the same source and settings give the same bytes, so doit's md5
check leaves training alone when nothing really changed.
"""
from __future__ import annotations

import importlib
import zipfile
from pathlib import Path

from .engine.data import (GENERATOR_PARAMS, GENERATORS, check_params, inspect_npz,  # noqa: F401
                          read_csv_columns)
from .engine.errors import TinyMLError
from .engine.io import read_npz, write_json, write_npz


# --------------------------------------------------------------------------- loading sources
def _load_source(ds, rng):
    """Return (x, y, class_names or None)."""
    import numpy as np

    display = ds.source
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
    elif ds.kind == "npz":
        inspect_npz(Path(ds.source), ds.source, read_labels_up_to=0)   # dtypes, shapes, lengths
        try:
            with np.load(ds.source, allow_pickle=False) as z:
                out = (z["x"], z["y"])
        except (ValueError, OSError, zipfile.BadZipFile) as e:
            raise TinyMLError(f"{ds.source}: cannot read the arrays: {_one_line(e)}") from None
    else:  # csv
        out = _read_csv(ds)
    if isinstance(out, dict):
        if "x" not in out or "y" not in out:
            raise TinyMLError(f"{display}: returned a dict without 'x' and 'y' (keys: {', '.join(map(str, out))})")
        out = (out["x"], out["y"], out.get("class_names"))
    if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
        raise TinyMLError(f"{display}: must return (x, y), (x, y, class_names) or a dict with x and y; "
                          f"got {type(out).__name__}")
    x, y = _numeric(out[0], "x", display), _numeric(out[1], "y", display)
    names = list(out[2]) if len(out) > 2 and out[2] is not None else None
    if x.ndim == 0 or y.ndim == 0:
        raise TinyMLError(f"{display}: x and y need one entry per sample; got shapes {list(x.shape)} and {list(y.shape)}")
    if len(x) != len(y):
        raise TinyMLError(f"{display}: x has {len(x)} samples but y has {len(y)}")
    if len(x) < 2:
        raise TinyMLError(f"{display}: {len(x)} sample(s); a dataset needs at least 2 (one to train, one to test)")
    _check_finite(x, "x", display)
    _check_finite(y, "y", display)
    return x, y, names


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
    import numpy as np

    names, rows, labels, numbers = read_csv_columns(Path(ds.source), ds.label, ds.features, ds.source, keep=True)
    x = np.array(rows, dtype="float32")
    if numbers is not None:
        return x, np.array(numbers, dtype="float32"), None
    classes = sorted(set(labels))   # text labels: classes in sorted order
    index = {c: i for i, c in enumerate(classes)}
    return x, np.array([index[v] for v in labels], dtype="int32"), classes


# --------------------------------------------------------------------------- the stage
def run(ds, task: str, seed: int, out_npz: Path, out_json: Path) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    x, y, names = _load_source(ds, rng)
    display = ds.source if ds.kind != "callable" else f"dataset source {ds.source!r}"
    _check_float32_range(x, "x", display)
    x = x.astype("float32")
    if x.ndim == 1:                       # one feature per sample
        x = x.reshape(len(x), 1)
    if task in ("binary", "multiclass", "autoencoder"):
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.reshape(len(y))
        if y.ndim != 1:
            what = "anomaly labels (0 normal, 1 anomalous)" if task == "autoencoder" else "class ids 0..N-1"
            raise TinyMLError(f"{display}: y has shape {list(y.shape)} but a {task} dataset needs one label per "
                              f"sample: {what}, shape (n,)")
        if not np.array_equal(y, np.round(y)) or y.min() < 0:
            bad = y[(y != np.round(y)) | (y < 0)][0]
            raise TinyMLError(f"{display}: task is {task} but label {bad!r} is not a whole number >= 0; labels "
                              f"must be class ids 0..N-1" + (" (0 normal, 1 anomalous)" if task == "autoencoder" else ""))
        if task in ("binary", "autoencoder") and y.max() > 1:
            raise TinyMLError(f"{display}: task is {task} but the labels go up to {int(y.max())}; {task} labels are "
                              f"0 and 1" + ("; use task = \"multiclass\" for more classes" if task == "binary" else ""))
        y = y.astype("int32")
    else:
        # regression: one row of targets per sample; a 1-D y is one target, shape (n, 1) like the model's output
        _check_float32_range(y, "y", display)
        y = y.astype("float32")
        if y.ndim == 1:
            y = y.reshape(len(y), 1)
    n = len(x)
    perm = rng.permutation(n)
    n_test = max(1, int(round(n * ds.test_split)))
    if n - n_test < 1:
        raise TinyMLError(f"{display}: {n} samples leave none for training after test_split = {ds.test_split}; "
                          f"add samples or lower [dataset] test_split")
    extra = {}
    if task == "autoencoder":
        # y holds the anomaly labels; train on normal samples only, test on everything held out
        is_anom = y.astype("int32").reshape(n)
        test_idx = np.sort(perm[:n_test]) if ds.params.get("shuffle", False) else np.arange(n - n_test, n)
        train_mask = np.ones(n, bool)
        train_mask[test_idx] = False
        train_idx = np.where(train_mask & (is_anom == 0))[0]
        x_train, x_test = x[train_idx], x[test_idx]
        y_train, y_test = x_train, x_test
        extra["is_anomaly_test"] = is_anom[test_idx]
    else:
        test_idx, train_idx = perm[:n_test], perm[n_test:]
        x_train, x_test, y_train, y_test = x[train_idx], x[test_idx], y[train_idx], y[test_idx]

    axes = tuple(range(x_train.ndim - 1))
    feat_shape = x_train.shape[-1:]
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

    if task == "autoencoder" and len(x_train) == 0:
        raise TinyMLError(f"{display}: no normal (label 0) samples left for training the autoencoder; the training "
                          f"part holds only anomalies")
    n_classes = None
    if task in ("binary", "multiclass"):
        given = list(ds.class_names) if ds.class_names else None
        top = int(y.max()) + 1
        if given is not None and len(given) < top:
            raise TinyMLError(f"{display}: the labels go up to {top - 1} ({top} classes) but [dataset] class_names "
                              f"lists only {len(given)}; give one name per class")
        n_classes = max(top, 2, len(given) if given else 0)
        if names is not None and len(names) < n_classes:
            raise TinyMLError(f"{display}: returned {len(names)} class names for {n_classes} classes")
        names = given or names or [str(i) for i in range(n_classes)]
    else:
        names = list(ds.class_names) if ds.class_names else None

    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
              "norm_a": a, "norm_b": b, **extra}
    write_npz(out_npz, arrays)
    meta = {"task": task, "n_classes": n_classes, "class_names": names,
            "input_shape": list(x_train.shape[1:]), "output_shape": list(y_train.shape[1:]),
            "normalize": ds.normalize, "norm_a": a.tolist(), "norm_b": b.tolist(),
            "counts": {"train": int(len(x_train)), "test": int(len(x_test))},
            "source": Path(ds.source).name if ds.kind in ("csv", "npz") else ds.source}
    write_json(out_json, meta)
    return meta


def load(path: Path) -> dict:
    """Every array of a dataset.npz (engine.io.read_npz)."""
    return read_npz(path)
