"""Data sources without numpy at import: the built-in generators, and CSV and .npz files read or
inspected line by line.

The inspection (`inspect_csv`, `inspect_npz`, `generator_info`) is pure Python and runs when
tinyml.toml is loaded, so a broken data file is a one-line error naming the file and line before any
work starts; the dataset stage reads the same files with the same parser. Generators get a seeded
numpy Generator and return (x, y) or (x, y, class_names).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

from .errors import TinyMLError


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


# --------------------------------------------------------------------------- generator parameters
# Each generator's params: name -> (kind, low, high, default). Checked when tinyml.toml is loaded
# (config.py calls check_generator_params), so a typo or a negative sample count never reaches numpy.
_INT, _NUM, _BOOL = "int", "number", "bool"
MAX_SAMPLES = 10_000_000
MAX_VALUES = 100_000_000          # samples x values per sample, so one dataset stays a few hundred MB at most
GENERATOR_PARAMS: dict[str, dict[str, tuple]] = {
    "sine": {"samples": (_INT, 10, MAX_SAMPLES, 1000), "noise": (_NUM, 0.0, 1e6, 0.1)},
    "tapping": {"seconds": (_NUM, 1.0, 1e7, 240.0), "rate_hz": (_NUM, 0.1, 100_000.0, 25.0),
                "window": (_INT, 1, 100_000, 1), "anomaly_fraction": (_NUM, 0.0, 1.0, 0.3),
                "tap_hz": (_NUM, 0.01, 1000.0, 2.0), "shuffle": (_BOOL, None, None, False)},
    "waveforms": {"samples": (_INT, 10, MAX_SAMPLES, 600), "length": (_INT, 2, 100_000, 64),
                  "noise": (_NUM, 0.0, 1e6, 0.2)},
    "sklearn:breast_cancer": {}, "sklearn:digits": {}, "sklearn:iris": {}, "sklearn:wine": {},
}
# What each built-in source gives: per-sample input shape, task, number of classes.
_SKLEARN_INFO = {"sklearn:breast_cancer": ((30,), "binary", 2, 569), "sklearn:digits": ((8, 8, 1), "multiclass", 10, 1797),
                 "sklearn:iris": ((4,), "multiclass", 3, 150), "sklearn:wine": ((13,), "multiclass", 3, 178)}
# params allowed for file sources (they are not passed anywhere else)
FILE_PARAMS = {"shuffle": (_BOOL, None, None, False)}


def check_params(params: dict, schema: dict, what: str) -> str | None:
    """The first problem with `params` against `schema`, as a sentence, or None."""
    import difflib
    import math

    for key, value in params.items():
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            allowed = ", ".join(schema) if schema else "none (it takes no params)"
            return f"unknown param {key!r} for {what}{hint}; allowed params: {allowed}"
        kind, lo, hi, _ = schema[key]
        if kind == _BOOL:
            if not isinstance(value, bool):
                return f"param {key!r} must be true or false, got {value!r}"
            continue
        is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind == _INT and not (isinstance(value, int) and not isinstance(value, bool)):
            return f"param {key!r} must be a whole number in [{lo}, {hi}], got {type(value).__name__} {value!r}"
        if not is_num or not math.isfinite(value):
            return f"param {key!r} must be a finite number in [{lo}, {hi:g}], got {type(value).__name__} {value!r}"
        if not lo <= value <= hi:
            rng = f"[{lo}, {hi}]" if kind == _INT else f"[{lo:g}, {hi:g}]"
            return f"param {key!r} = {value!r} is out of range: allowed {rng}"
    return None


def generator_info(source: str, params: dict) -> dict:
    """What a built-in generator will produce with `params` (already checked): shape, task, classes, n."""
    if source in _SKLEARN_INFO:
        shape, task, n_classes, n = _SKLEARN_INFO[source]
        return {"sample_shape": shape, "task": task, "n_classes": n_classes, "n": n, "target_shape": None}
    p = {k: v[3] for k, v in GENERATOR_PARAMS[source].items()}
    p.update(params)
    if source == "sine":
        return {"sample_shape": (1,), "task": "regression", "n_classes": None, "n": p["samples"],
                "target_shape": (1,)}
    if source == "waveforms":
        return {"sample_shape": (p["length"], 1), "task": "multiclass", "n_classes": 3, "n": p["samples"],
                "target_shape": None, "values": p["samples"] * p["length"]}
    n = int(p["seconds"] * p["rate_hz"])   # tapping
    return {"sample_shape": (3 * p["window"],), "task": "autoencoder", "n_classes": None,
            "n": n // p["window"], "target_shape": None, "values": n * 3}


# --------------------------------------------------------------------------- reading and inspecting files
# One parser for CSV files: tinyml.toml's loader inspects a file with it (pure Python, no numpy), and
# the dataset stage reads it with the same rules, so a file the loader accepted reads the same way.
def _csv_lines(path: Path, display: str):
    """Decoded lines of a CSV file; a byte that is not UTF-8 names its line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise TinyMLError(f"{display} line {lineno}: byte {raw[e.start]:#04x} at column {e.start + 1} is not "
                                  f"UTF-8; save the file as UTF-8 (plain ASCII numbers are fine)") from None
            yield line


def _cell_number(cell: str, display: str, line: int, column: str) -> float:
    import math

    text = cell.strip()
    if not text:
        raise TinyMLError(f"{display} line {line}: column {column!r} is empty; every feature cell needs a number "
                          f"(fill or drop the row)")
    try:
        value = float(text)
    except ValueError:
        raise TinyMLError(f"{display} line {line}: column {column!r} holds {text[:40]!r}, not a number; feature "
                          f"columns must be numeric (list the numeric ones in [dataset] features)") from None
    if not math.isfinite(value):
        raise TinyMLError(f"{display} line {line}: column {column!r} is {text!r}, not a finite number; NaN and "
                          f"infinity cannot be trained on (fill or drop the row)")
    return value


def read_csv_columns(path: Path, label: str | None, features, display: str, *, keep: bool):
    """Parse and check a CSV: returns (feature names, rows of floats or None, labels (str), label numbers or None).

    With keep=False the rows are checked but not kept (the loader's inspection).
    """
    import csv
    import math

    reader = csv.reader(_csv_lines(path, display))
    header = None
    for row in reader:
        if any(c.strip() for c in row):
            header = [c.strip() for c in row]
            break
    if header is None:
        raise TinyMLError(f"{display}: the file is empty; a CSV dataset needs a header line of column names and "
                          f"one row per sample")
    for i, name in enumerate(header):
        if not name:
            raise TinyMLError(f"{display} line {reader.line_num}: column {i + 1} of the header has no name; "
                              f"name every column")
        if header.index(name) != i:
            raise TinyMLError(f"{display} line {reader.line_num}: the header names column {name!r} twice; "
                              f"column names must be unique")
    if label is not None and label not in header:
        import difflib

        close = difflib.get_close_matches(label, header, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise TinyMLError(f"{display}: no column {label!r} for [dataset] label{hint}; columns: {', '.join(header)}")
    names = list(features) if features else [c for c in header if c != label]
    missing = [c for c in names if c not in header]
    if missing:
        raise TinyMLError(f"{display}: feature columns not found: {', '.join(map(repr, missing))}; "
                          f"columns: {', '.join(header)}")
    if label is not None and label in names:
        raise TinyMLError(f"{display}: column {label!r} is both the label and a feature; remove it from features")
    if not names:
        raise TinyMLError(f"{display}: no feature columns: the file has only the label column {label!r}")
    fi = [header.index(c) for c in names]
    li = header.index(label) if label is not None else None
    rows, labels, numbers = [], [], []
    numeric = True
    for row in reader:
        if not any(c.strip() for c in row):
            continue  # blank lines
        line = reader.line_num
        if len(row) != len(header):
            raise TinyMLError(f"{display} line {line}: {len(row)} cells but the header has {len(header)} columns; "
                              f"every row needs one cell per column")
        values = [_cell_number(row[i], display, line, header[i]) for i in fi]
        if keep:
            rows.append(values)
        if li is not None:
            cell = row[li].strip()
            if not cell:
                raise TinyMLError(f"{display} line {line}: the label column {label!r} is empty; every row needs a "
                                  f"label")
            labels.append(cell)
            if numeric:
                try:
                    v = float(cell)
                except ValueError:
                    numeric = False
                else:
                    if not math.isfinite(v):
                        raise TinyMLError(f"{display} line {line}: label column {label!r} is {cell!r}, not a finite "
                                          f"number; fill or drop the row")
                    numbers.append(v)
    n = len(labels) if li is not None else len(rows)
    if n == 0:
        raise TinyMLError(f"{display}: a header but no data rows; add one row per sample")
    return names, rows if keep else None, labels, numbers if numeric and li is not None else None


def inspect_csv(path: Path, label: str | None, features, display: str) -> dict:
    """The loader's view of a CSV: sample count, feature count, label kind and classes (pure Python)."""
    names, _, labels, numbers = read_csv_columns(path, label, features, display, keep=False)
    info = {"n": len(labels), "sample_shape": [len(names)], "features": names, "target_shape": [1]}
    info.update(_label_info(labels, numbers))
    return info


def _label_info(labels: list, numbers: list | None) -> dict:
    if numbers is None:
        distinct = sorted(set(labels))
        return {"labels": "text", "classes": distinct[:4096], "n_distinct": len(distinct),
                "example_text": next((v for v in labels if _not_number(v)), None)}
    whole = all(float(v).is_integer() for v in numbers)
    distinct = sorted(set(numbers))
    return {"labels": "integer" if whole else "number", "n_distinct": len(distinct),
            "min": distinct[0], "max": distinct[-1], "classes": None}


def _not_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return True
    return False


_NPY_KINDS = {"b": "bool", "i": "integer", "u": "integer", "f": "float"}
_ARRAY_CODES = {"i1": "b", "u1": "B", "b1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "i8": "q", "u8": "Q",
                "f4": "f", "f8": "d"}


def _npy_header(zf, member: str, display: str) -> tuple[dict, int]:
    import ast
    import struct

    with zf.open(member) as f:
        head = f.read(10)
        if head[:6] != b"\x93NUMPY" or len(head) < 10:
            raise TinyMLError(f"{display}: {member} is not a NumPy .npy array; save the file with numpy.savez")
        major = head[6]
        if major == 1:
            (hlen,), offset = struct.unpack("<H", head[8:10]), 10
        else:
            (hlen,), offset = struct.unpack("<I", head[8:10] + f.read(2)), 12
        text = f.read(hlen).decode("latin1" if major < 3 else "utf-8", "replace")
    try:
        d = ast.literal_eval(text)
        descr, shape = d["descr"], tuple(d["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError):
        raise TinyMLError(f"{display}: {member} has an unreadable .npy header; save the file with numpy.savez") from None
    return {"descr": descr, "shape": shape, "fortran": bool(d.get("fortran_order"))}, offset + hlen


def inspect_npz(path: Path, display: str, *, read_labels_up_to: int = 16 << 20) -> dict:
    """The loader's view of an .npz: arrays x and y, their dtypes and shapes, and the labels when y is small.

    Reads the zip directory and each array's .npy header only (plus y's values when y is at most
    `read_labels_up_to` bytes); object and string arrays are refused: they are not numbers and
    object arrays are pickles.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise TinyMLError(f"{display}: not a readable .npz (zip) file ({e}); save the arrays with "
                          f"numpy.savez(path, x=..., y=...)") from None
    with zf:
        members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
        if not {"x", "y"} <= set(members):
            raise TinyMLError(f"{display}: an .npz dataset needs arrays 'x' and 'y'; it has "
                              f"{', '.join(sorted(members)) or 'none'} (save with numpy.savez(path, x=..., y=...))")
        arrays = {}
        for key in ("x", "y"):
            h, offset = _npy_header(zf, members[key], display)
            descr = h["descr"]
            if not isinstance(descr, str):
                raise TinyMLError(f"{display}: array {key!r} is a structured (record) array; {key} must be a plain "
                                  f"numeric array")
            kind, size = descr[1:2], descr[2:]
            if kind not in _NPY_KINDS:
                what = {"O": "Python objects (a pickle)", "U": "text", "S": "bytes", "c": "complex numbers",
                        "M": "dates", "m": "time deltas", "V": "raw bytes"}.get(kind, f"dtype {descr!r}")
                raise TinyMLError(f"{display}: array {key!r} holds {what} ({descr!r}); {key} must be numeric "
                                  f"(int, float or bool)" + ("; encode text labels as integers 0..N-1 and list "
                                                             "the names in [dataset] class_names" if key == "y" else ""))
            shape = h["shape"]
            if not shape:
                raise TinyMLError(f"{display}: array {key!r} is a single number (shape ()); it needs one entry per "
                                  f"sample")
            if any(d == 0 for d in shape):
                raise TinyMLError(f"{display}: array {key!r} has shape {list(shape)}: it is empty")
            arrays[key] = dict(h, offset=offset, kind=kind, size=size)
        nx, ny = arrays["x"]["shape"][0], arrays["y"]["shape"][0]
        if nx != ny:
            raise TinyMLError(f"{display}: x has {nx} samples but y has {ny}; x and y need the same first dimension")
        yshape = arrays["y"]["shape"]
        if len(yshape) > 2:
            raise TinyMLError(f"{display}: y has shape {list(yshape)}; y must be 1-D (one label or value per sample) "
                              f"or 2-D (n, outputs)")
        xshape = arrays["x"]["shape"]
        info = {"n": nx, "sample_shape": list(xshape[1:]) or [1], "target_shape": list(yshape[1:]) or [1],
                "x_dtype": arrays["x"]["descr"], "y_dtype": arrays["y"]["descr"]}
        y = arrays["y"]
        nbytes = ny * (int(y["size"]) if y["size"].isdigit() else 8)
        for d in yshape[1:]:
            nbytes *= d
        info.update({"labels": "unknown", "classes": None})
        code = _ARRAY_CODES.get(y["kind"] + y["size"])
        if len(yshape) == 1 and code and nbytes <= read_labels_up_to:
            import array
            import math
            import sys

            with zf.open(members["y"]) as f:
                raw = f.read()[y["offset"]:y["offset"] + nbytes]
            vals = array.array(code)
            vals.frombytes(raw)
            if y["descr"][0] == (">" if sys.byteorder == "little" else "<") and vals.itemsize > 1:
                vals.byteswap()
            for i, v in enumerate(vals):
                if not math.isfinite(v):
                    raise TinyMLError(f"{display}: y[{i}] is {v}, not a finite number; NaN and infinity cannot be "
                                      f"trained on")
            info.update(_label_info([], list(vals)))
    return info


