"""Dataset stage: source (generator, CSV, .npz or callable) -> dataset.npz + dataset.json.

Seeded and byte-deterministic: the same source and settings give the same bytes, so doit's md5
check leaves training alone when nothing really changed.
"""
from __future__ import annotations

import importlib
import io
import zipfile
from pathlib import Path

from .config import DatasetSettings
from .util import TinyMLError, atomic_path, write_json

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


# --------------------------------------------------------------------------- generators
def sine(rng, samples: int = 1000, noise: float = 0.1):
    """The TFLM hello-world: x uniform in [0, 2*pi], y = sin(x) + gaussian noise."""
    import numpy as np

    x = rng.uniform(0.0, 2 * np.pi, size=(int(samples), 1)).astype("float32")
    y = (np.sin(x) + noise * rng.standard_normal(size=x.shape)).astype("float32")
    return x, y


def tapping(rng, seconds: float = 240.0, rate_hz: float = 25.0, window: int = 1,
            anomaly_fraction: float = 0.3, tap_hz: float = 2.0):
    """3-axis accelerometer at `rate_hz`: rhythmic tapping (normal) against erratic shaking (anomalous).

    Returns x (N, 3) or, with window > 1, disjoint windows (N, window * 3), labels is_anomaly (N,).
    Training uses the normal part only (autoencoder); the test part mixes both.
    """
    import numpy as np

    n = int(seconds * rate_hz)
    t = np.arange(n) / rate_hz
    # normal: periodic taps (sharp pulse train on z, gentle sway on x/y), small sensor noise
    phase = (t * tap_hz) % 1.0
    pulse = np.exp(-((phase - 0.1) ** 2) / 0.002)
    normal = np.stack([0.15 * np.sin(2 * np.pi * 0.5 * t), 0.15 * np.cos(2 * np.pi * 0.5 * t), 1.0 + 0.8 * pulse], 1)
    normal += 0.03 * rng.standard_normal(normal.shape)
    # anomalous: erratic shaking, broadband high-amplitude on all axes, random offsets
    shake = 0.9 * rng.standard_normal((n, 3)) + rng.uniform(-1.0, 1.0, (1, 3))
    shake[:, 2] += 1.0
    labels = np.zeros(n, dtype="int32")
    # mark contiguous anomalous segments of 2-4 s, covering about anomaly_fraction of the stream
    seg = int(3 * rate_hz)
    n_seg = int(anomaly_fraction * n / seg)
    starts = rng.choice(np.arange(n // 2, n - seg, seg), size=min(n_seg, (n // 2) // seg), replace=False)
    for s in starts:
        labels[s:s + seg] = 1
    x = np.where(labels[:, None] == 1, shake, normal).astype("float32")
    if window > 1:
        m = n // window
        x = x[: m * window].reshape(m, window * 3)
        labels = (labels[: m * window].reshape(m, window).mean(1) > 0.5).astype("int32")
    return x, labels


def waveforms(rng, samples: int = 600, length: int = 64, noise: float = 0.2):
    """Three classes of 1-channel time series: sine, square, sawtooth, random frequency and phase."""
    import numpy as np

    t = np.arange(length) / length
    y = rng.integers(0, 3, size=samples).astype("int32")
    f = rng.uniform(1.5, 4.0, size=(samples, 1))
    ph = rng.uniform(0, 1, size=(samples, 1))
    arg = 2 * np.pi * (f * t + ph)
    wave = np.where(y[:, None] == 0, np.sin(arg), np.where(y[:, None] == 1, np.sign(np.sin(arg)),
                                                            2 * ((f * t + ph) % 1.0) - 1))
    x = (wave + noise * rng.standard_normal(wave.shape)).astype("float32")[..., None]
    return x, y


def _sklearn(name: str):
    def load(rng, **_):
        from sklearn import datasets

        if name == "digits":
            d = datasets.load_digits()
            x = (d.images / 16.0).astype("float32")[..., None]  # (n, 8, 8, 1) in [0, 1]
            return x, d.target.astype("int32"), [str(c) for c in d.target_names]
        d = getattr(datasets, f"load_{name}")()
        names = [str(c) for c in d.target_names]
        return d.data.astype("float32"), d.target.astype("int32"), names
    return load


GENERATORS = {"sine": sine, "tapping": tapping, "waveforms": waveforms,
              "sklearn:breast_cancer": _sklearn("breast_cancer"), "sklearn:digits": _sklearn("digits"),
              "sklearn:iris": _sklearn("iris"), "sklearn:wine": _sklearn("wine")}


# --------------------------------------------------------------------------- loading sources
def _load_source(ds: DatasetSettings, rng):
    """Return (x, y, class_names or None, extra arrays dict)."""
    import numpy as np

    if ds.kind == "generator":
        try:
            out = GENERATORS[ds.source](rng, **ds.params)
        except TypeError as e:
            raise TinyMLError(f"dataset generator {ds.source!r}: bad params {ds.params!r}: {e}") from None
    elif ds.kind == "callable":
        mod, fn = ds.source.split(":")
        try:
            func = getattr(importlib.import_module(mod), fn)
        except (ImportError, AttributeError) as e:
            raise TinyMLError(f"dataset source {ds.source!r} cannot be imported: {e}") from None
        out = func(**ds.params)
    elif ds.kind == "npz":
        with np.load(ds.source) as z:
            keys = set(z.files)
            if not {"x", "y"} <= keys:
                raise TinyMLError(f"{ds.source}: an .npz dataset needs arrays 'x' and 'y'; it has {sorted(keys)}")
            out = (z["x"], z["y"])
    else:  # csv
        out = _read_csv(ds)
    if isinstance(out, dict):
        out = (out["x"], out["y"], out.get("class_names"))
    x, y = np.asarray(out[0]), np.asarray(out[1])
    names = list(out[2]) if len(out) > 2 and out[2] is not None else None
    if len(x) != len(y):
        raise TinyMLError(f"dataset {ds.source!r}: x has {len(x)} samples but y has {len(y)}")
    return x, y, names


def _read_csv(ds: DatasetSettings):
    import csv

    import numpy as np

    with open(ds.source, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    if ds.label not in header:
        from .config import _closest

        raise TinyMLError(f"{ds.source}: no column {ds.label!r} for [dataset] label{_closest(ds.label, header)}; "
                          f"columns: {', '.join(header)}")
    features = list(ds.features) if ds.features else [c for c in header if c != ds.label]
    missing = [c for c in features if c not in header]
    if missing:
        raise TinyMLError(f"{ds.source}: feature columns not found: {missing}; columns: {', '.join(header)}")
    fi = [header.index(c) for c in features]
    li = header.index(ds.label)
    try:
        x = np.array([[float(r[i]) for i in fi] for r in rows], dtype="float32")
    except ValueError as e:
        raise TinyMLError(f"{ds.source}: a feature value is not a number: {e}") from None
    labels = [r[li] for r in rows]
    try:
        y = np.array([float(v) for v in labels], dtype="float32")
        names = None
    except ValueError:  # text labels: classes in sorted order
        names = sorted(set(labels))
        y = np.array([names.index(v) for v in labels], dtype="int32")
    return x, y, names


# --------------------------------------------------------------------------- the stage
def run(ds: DatasetSettings, task: str, seed: int, out_npz: Path, out_json: Path) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    x, y, names = _load_source(ds, rng)
    x = x.astype("float32")
    if task in ("binary", "multiclass"):
        if not np.allclose(y, np.round(y)):
            raise TinyMLError(f"dataset {ds.source!r}: task is {task} but the labels are not whole numbers")
        y = y.astype("int32").reshape(len(y))
    else:
        y = y.astype("float32" if task != "autoencoder" else y.dtype)
    n = len(x)
    perm = rng.permutation(n)
    n_test = max(1, int(round(n * ds.test_split)))
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

    n_classes = None
    if task in ("binary", "multiclass"):
        n_classes = int(max(y.max() + 1, 2))
        names = list(ds.class_names) if ds.class_names else names or [str(i) for i in range(n_classes)]
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


def write_npz(path: Path, arrays: dict) -> None:
    """np.savez, but byte-deterministic (fixed zip timestamps) and atomic."""
    import numpy as np

    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_DATE), buf.getvalue())


def load(path: Path) -> dict:
    import numpy as np

    with np.load(path) as z:
        return {k: z[k] for k in z.files}
