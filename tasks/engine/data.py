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
DEFAULT_TEST_SPLIT = 0.2          # [dataset] test_split when not given (a random or time split)
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


def read_csv_columns(path: Path, label: str | None, features, display: str, *, keep: bool, header_out=None):
    """Parse and check a CSV: returns (feature names, rows of floats or None, labels (str), label numbers or None).

    With keep=False the rows are checked but not kept (the loader's inspection). `header_out`, a list,
    receives every column name of the header (to compare a fixed test file's columns with the training file's).
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
    if header_out is not None:
        header_out[:] = header
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


def csv_header(path: Path, display: str) -> list[str]:
    """The column names of a CSV's header line (the first line that is not blank), or [] for an empty file."""
    import csv

    for row in csv.reader(_csv_lines(path, display)):
        if any(c.strip() for c in row):
            return [c.strip() for c in row]
    return []


def inspect_csv(path: Path, label: str | None, features, display: str) -> dict:
    """The loader's view of a CSV: sample count, feature count, label kind and classes (pure Python)."""
    columns: list = []
    names, _, labels, numbers = read_csv_columns(path, label, features, display, keep=False, header_out=columns)
    info = {"n": len(labels), "sample_shape": [len(names)], "features": names, "target_shape": [1], "columns": columns}
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
    object arrays are pickles. An .npz that also holds `x_test` and `y_test` carries its own test
    split: they are checked the same way, against x and y, and `n_test` says how many there are.
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
        info, values = _npz_pair(zf, members, "x", "y", display, read_labels_up_to)
        has = [k for k in ("x_test", "y_test") if k in members]
        if len(has) == 1:
            other = "y_test" if has == ["x_test"] else "x_test"
            raise TinyMLError(f"{display}: holds {has[0]!r} but no {other!r}; a fixed test set needs both "
                              f"(numpy.savez(path, x=..., y=..., x_test=..., y_test=...)), or neither")
        if has:
            tinfo, tvalues = _npz_pair(zf, members, "x_test", "y_test", display, read_labels_up_to)
            if tinfo["sample_shape"] != info["sample_shape"]:
                raise TinyMLError(f"{display}: each sample of x_test has shape {tinfo['sample_shape']} but each "
                                  f"sample of x has {info['sample_shape']}; the test samples must be shaped like "
                                  f"the training samples")
            if tinfo["target_shape"] != info["target_shape"]:
                raise TinyMLError(f"{display}: y_test has targets of shape {tinfo['target_shape']} but y has "
                                  f"{info['target_shape']}; they must match")
            info["n_test"] = tinfo["n"]
            values = values + tvalues if values is not None and tvalues is not None else None
        info.update({"labels": "unknown", "classes": None})
        if values is not None:
            info.update(_label_info([], values))
    return info


def _npz_pair(zf, members: dict, xkey: str, ykey: str, display: str, read_labels_up_to: int):
    """(info, y values or None) for arrays `xkey` and `ykey` of an open .npz."""
    arrays = {}
    for key in (xkey, ykey):
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
                                                         "the names in [dataset] class_names" if key == ykey else ""))
        shape = h["shape"]
        if not shape:
            raise TinyMLError(f"{display}: array {key!r} is a single number (shape ()); it needs one entry per "
                              f"sample")
        if any(d == 0 for d in shape):
            raise TinyMLError(f"{display}: array {key!r} has shape {list(shape)}: it is empty")
        arrays[key] = dict(h, offset=offset, kind=kind, size=size)
    nx, ny = arrays[xkey]["shape"][0], arrays[ykey]["shape"][0]
    if nx != ny:
        raise TinyMLError(f"{display}: {xkey} has {nx} samples but {ykey} has {ny}; {xkey} and {ykey} need the same "
                          f"first dimension")
    yshape = arrays[ykey]["shape"]
    if len(yshape) > 2:
        raise TinyMLError(f"{display}: {ykey} has shape {list(yshape)}; {ykey} must be 1-D (one label or value per "
                          f"sample) or 2-D (n, outputs)")
    xshape = arrays[xkey]["shape"]
    info = {"n": nx, "sample_shape": list(xshape[1:]) or [1], "target_shape": list(yshape[1:]) or [1],
            "x_dtype": arrays[xkey]["descr"], "y_dtype": arrays[ykey]["descr"]}
    y = arrays[ykey]
    nbytes = ny * (int(y["size"]) if y["size"].isdigit() else 8)
    for d in yshape[1:]:
        nbytes *= d
    code = _ARRAY_CODES.get(y["kind"] + y["size"])
    if not (len(yshape) == 1 and code and nbytes <= read_labels_up_to):
        return info, None
    import array
    import math
    import sys

    with zf.open(members[ykey]) as f:
        raw = f.read()[y["offset"]:y["offset"] + nbytes]
    vals = array.array(code)
    vals.frombytes(raw)
    if y["descr"][0] == (">" if sys.byteorder == "little" else "<") and vals.itemsize > 1:
        vals.byteswap()
    for i, v in enumerate(vals):
        if not math.isfinite(v):
            raise TinyMLError(f"{display}: {ykey}[{i}] is {v}, not a finite number; NaN and infinity cannot be "
                              f"trained on")
    return info, list(vals)


def merge_label_info(train: dict, test: dict, display: str, test_display: str) -> dict:
    """The label facts of a training part and its fixed test part together (what the loader checks
    against the model), or an error when one holds text and the other numbers."""
    a, b = train.get("labels"), test.get("labels")
    if "unknown" in (a, b):
        return {"labels": "unknown", "classes": None}
    if (a == "text") != (b == "text"):
        text, nums = (display, test_display) if a == "text" else (test_display, display)
        raise TinyMLError(f"{test_display}: the labels of {text} are text but those of {nums} are numbers; the "
                          f"fixed test set must label its samples like the training file")
    if a == "text":
        classes = sorted(set(train["classes"]) | set(test["classes"]))
        return {"labels": "text", "classes": classes[:4096], "n_distinct": len(classes),
                "example_text": train.get("example_text") or test.get("example_text")}
    lo, hi = min(train["min"], test["min"]), max(train["max"], test["max"])
    distinct = max(train["n_distinct"], test["n_distinct"], 2 if lo != hi else 1)
    kind = "integer" if a == b == "integer" else "number"
    return {"labels": kind, "n_distinct": distinct, "min": lo, "max": hi, "classes": None}


# --------------------------------------------------------------------------- .ts time-series archives
# The sktime/aeon ".ts" format (UEA & UCR archives): header lines (@problemName, @timeStamps,
# @missing, @univariate, @dimensions, @equalLength, @seriesLength, @classLabel or @targetLabel), then
# @data and one case per line: the dimensions separated by ':', each a comma-separated series, the
# label last. Read in pure Python, the same parser for the loader's inspection and the dataset stage.
def read_ts(path: Path, display: str, *, keep: bool) -> dict:
    """Parse and check a .ts file of equal-length series with class labels (or a numeric target).

    Returns n, length, dims, sample_shape [length, dims] (channels last, as Conv1D wants), the
    declared class names (in @classLabel order: class id i is the i-th name) or None for a target, and
    the label facts the loader checks against the model. With keep=True also `values` (an array of
    doubles, case by case, dimension by dimension) and `y` (class ids, or target numbers).
    Errors name the file and line.
    """
    import array
    import math

    lines = enumerate(_csv_lines(path, display), 1)
    head: dict[str, tuple[list, int]] = {}
    data_line = None
    for lineno, raw in lines:
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if not s.startswith("@"):
            raise TinyMLError(f"{display} line {lineno}: {s[:40]!r} comes before the @data line; a .ts file "
                              f"starts with header lines (@problemName, @univariate, @equalLength, @seriesLength, "
                              f"@classLabel) and then @data")
        parts = s.split()
        key = parts[0][1:].lower()
        if key == "data":
            data_line = lineno
            break
        head[key] = (parts[1:], lineno)

    def flag(key: str) -> bool | None:
        if key not in head:
            return None
        args, line = head[key]
        word = args[0].lower() if args else ""
        if word not in ("true", "false"):
            raise TinyMLError(f"{display} line {line}: @{key} must be followed by true or false, got "
                              f"{' '.join(args)[:40]!r}")
        return word == "true"

    def number(key: str) -> int | None:
        if key not in head:
            return None
        args, line = head[key]
        if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
            raise TinyMLError(f"{display} line {line}: @{key} must be followed by a whole number >= 1, got "
                              f"{' '.join(args)[:40]!r}")
        return int(args[0])

    if flag("timestamps"):
        raise TinyMLError(f"{display} line {head['timestamps'][1]}: @timeStamps true: series with time stamps are "
                          f"not supported; save the series as plain equal-length values (@timeStamps false)")
    if flag("equallength") is False:
        raise TinyMLError(f"{display} line {head['equallength'][1]}: @equalLength false: the series have different "
                          f"lengths; this reader needs equal-length series (pad, truncate or resample them to one "
                          f"length first)")
    univariate = flag("univariate")
    dims = number("dimensions") if "dimensions" in head else number("dimension")
    if univariate and dims not in (None, 1):
        raise TinyMLError(f"{display}: @univariate true but @dimensions {dims}; one of them is wrong")
    if univariate:
        dims = 1
    length = number("serieslength")
    length_from = f"line {head['serieslength'][1]} says @seriesLength {length}" if length else None
    classes: list | None = None
    target = bool(flag("targetlabel"))
    if flag("classlabel"):
        args, line = head["classlabel"]
        classes = args[1:]
        if not classes:
            raise TinyMLError(f"{display} line {line}: @classLabel true lists no labels; list every class after it "
                              f"(@classLabel true walk run)")
        dup = next((c for i, c in enumerate(classes) if c in classes[:i]), None)
        if dup is not None:
            raise TinyMLError(f"{display} line {line}: @classLabel lists {dup!r} twice")
    elif not target:
        where = (f"line {head['classlabel'][1]} says @classLabel false" if "classlabel" in head
                 else "there is no @classLabel line")
        raise TinyMLError(f"{display}: no class labels ({where}); a dataset needs a label per series: "
                          f"@classLabel true <labels...> in the header and each case's label after its last ':'")
    if data_line is None:
        raise TinyMLError(f"{display}: no @data line; a .ts file has header lines, then @data, then one series "
                          f"per line")
    index = {c: i for i, c in enumerate(classes or ())}
    numeric: dict = {}
    for i, c in enumerate(classes or ()):
        try:
            numeric.setdefault(float(c), i)
        except ValueError:
            pass
    values = array.array("d")
    ys: list = []
    seen: set = set()
    dims_from = f"line {head['dimensions' if 'dimensions' in head else 'dimension'][1]} says @dimensions {dims}" \
        if dims and not univariate else ("@univariate true" if univariate else None)
    n = 0
    for lineno, raw in lines:
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        fields = s.split(":")
        label = fields[-1].strip()
        series = fields[:-1]
        if not series or not label:
            raise TinyMLError(f"{display} line {lineno}: no label after the last ':'; each case is its dimensions "
                              f"separated by ':' and then its {'class label' if classes else 'target'}")
        if dims is None:
            dims, dims_from = len(series), f"line {lineno} has {len(series)}"
        if len(series) != dims:
            raise TinyMLError(f"{display} line {lineno}: {len(series)} dimension(s) but {dims_from}; every case "
                              f"needs the same dimensions (is the label missing?)")
        for d, part in enumerate(series, 1):
            cells = part.split(",")
            try:
                vals = [float(v) for v in cells]
            except ValueError:
                vals = None
            if vals is None or not math.isfinite(sum(vals)):
                for j, v in enumerate(cells, 1):
                    _ts_value(v, display, lineno, d, j)
            if length is None:
                length, length_from = len(vals), f"line {lineno}'s series have {len(vals)}"
            if len(vals) != length:
                raise TinyMLError(f"{display} line {lineno}: dimension {d} has {len(vals)} values but {length_from}; "
                                  f"this reader needs equal-length series (pad, truncate or resample them to one "
                                  f"length)")
            if keep:
                values.extend(vals)
        if classes is not None:
            cid = index.get(label)
            if cid is None:
                try:
                    cid = numeric.get(float(label))
                except ValueError:
                    cid = None
            if cid is None:
                raise TinyMLError(f"{display} line {lineno}: class label {label[:40]!r} is not one of the classes "
                                  f"@classLabel declares (line {head['classlabel'][1]}: "
                                  f"{' '.join(classes)[:200]}); is the label missing?")
            seen.add(cid)
            ys.append(cid)
        else:
            try:
                v = float(label)
            except ValueError:
                v = float("nan")
            if not math.isfinite(v):
                raise TinyMLError(f"{display} line {lineno}: target {label[:40]!r} is not a finite number "
                                  f"(@targetLabel true); is the label missing?")
            ys.append(v)
        n += 1
    if n == 0:
        raise TinyMLError(f"{display}: no cases after @data (line {data_line}); add one series per line")
    info = {"n": n, "length": length, "dims": dims, "sample_shape": [length, dims], "target_shape": [1],
            "class_names": classes, "problem": " ".join(head.get("problemname", ([], 0))[0])[:100] or None,
            "values": n * length * dims}
    if classes is not None:
        if all(c == str(i) for i, c in enumerate(classes)):      # labels 0..K-1: the ids are the labels
            info.update({"labels": "integer", "n_distinct": len(seen), "min": 0, "max": len(classes) - 1,
                         "classes": None})
        else:
            info.update({"labels": "text", "classes": classes[:4096], "n_distinct": len(seen),
                         "example_text": classes[0], "n_classes": len(classes)})
    else:
        info.update(_label_info([], ys))
    if keep:
        info["data"], info["y"] = values, ys
    return info


def class_index(name: str, classes: list) -> int | None:
    """The index of class `name` among `classes` (.ts labels: the same text, or the same number: 1 and 1.0)."""
    if name in classes:
        return classes.index(name)
    try:
        value = float(name)
    except ValueError:
        return None
    for i, c in enumerate(classes):
        try:
            if float(c) == value:
                return i
        except ValueError:
            pass
    return None


def _ts_value(cell: str, display: str, line: int, dim: int, pos: int) -> float:
    import math

    text = cell.strip()
    where = f"{display} line {line}: dimension {dim}, value {pos}"
    if not text:
        raise TinyMLError(f"{where} is empty; every value of a series needs a number")
    if text == "?":
        raise TinyMLError(f"{where} is '?', a missing value; fill the gaps (e.g. interpolate) or drop the case")
    try:
        value = float(text)
    except ValueError:
        hint = " (time stamps like (t,v) are not supported)" if "(" in text else ""
        raise TinyMLError(f"{where} is {text[:40]!r}, not a number{hint}") from None
    if not math.isfinite(value):
        raise TinyMLError(f"{where} is {text!r}, not a finite number; NaN and infinity cannot be trained on")
    return value


def inspect_ts(path: Path, display: str) -> dict:
    """The loader's view of a .ts file (read_ts without keeping the values)."""
    return read_ts(path, display, keep=False)


# --------------------------------------------------------------------------- CSV time series in windows
# A CSV whose rows are time steps is cut into windows of `window` rows every `stride` rows. The loader
# counts the windows with these functions and the dataset stage cuts them with the same arithmetic.
def window_count(rows: int, window: int, stride: int) -> int:
    """How many whole windows a series of `rows` steps holds (the last steps that do not fill one are dropped)."""
    return 0 if rows < window else (rows - window) // stride + 1


def time_split(n_windows: int, window: int, stride: int, test_split: float) -> tuple[int, int]:
    """(train windows, test windows) for a split by time: the test part is the last round(n * test_split)
    windows (at least one); training keeps the windows that end before the first test window starts,
    so no window overlaps the other part (those that would straddle the boundary are dropped)."""
    n_test = max(1, int(round(n_windows * test_split)))
    first_test = (n_windows - n_test) * stride
    n_train = 0 if first_test < window else (first_test - window) // stride + 1
    return min(n_train, n_windows - n_test), n_test


def make_windows(x, y, window: int, stride: int, label_rule: str):
    """Cut rows x (steps, features) and per-step labels y into windows: x -> (n, window, features).

    label_rule: "majority" (class ids: the most frequent in the window, a tie to the lowest id), "any"
    (anomaly labels: 1 when any step is anomalous), "last" (regression targets: the last step's).
    """
    import numpy as np

    n = window_count(len(x), window, stride)
    starts = np.arange(n) * stride
    idx = starts[:, None] + np.arange(window)[None, :]
    xw = x[idx]
    if label_rule == "last":
        return xw, y[starts + window - 1]
    yw = y.reshape(len(y))[idx]
    if label_rule == "any":
        return xw, yw.max(axis=1)
    k = int(yw.max()) + 1
    counts = np.stack([(yw == c).sum(axis=1) for c in range(k)], axis=1)
    return xw, counts.argmax(axis=1).astype(y.dtype)


# --------------------------------------------------------------------------- a callable's source files
MAX_SOURCE_FILES = 256


def callable_files(ref: str, root: Path) -> tuple[str, ...]:
    """The source files a 'pkg.mod:func' dataset depends on, found with ast and without importing it:
    its module, the __init__.py of its packages, and, transitively, the modules it imports (at top level
    or inside functions) from its own top-level package, or from its own folder when that folder is
    inside the project `root`. Paths inside `root` are relative to it, others absolute; sorted.
    A module that cannot be found gives nothing (the dataset stage reports the import error)."""
    import ast
    import os
    import sys
    from importlib.machinery import PathFinder

    root = Path(root)
    dotted = ref.split(":")[0]
    top = dotted.split(".")[0]
    search = [p or os.getcwd() for p in sys.path] + [str(root)]

    def spec_of(name: str, path: list):
        parts = name.split(".")
        try:
            spec = PathFinder.find_spec(parts[0], path)
            for i in range(1, len(parts)):
                if spec is None or not spec.submodule_search_locations:
                    return None
                spec = PathFinder.find_spec(".".join(parts[:i + 1]), list(spec.submodule_search_locations))
        except (ImportError, ValueError, OSError):
            return None
        return spec

    top_spec = spec_of(top, search)
    if top_spec is None:
        try:
            import importlib.util

            spec = importlib.util.find_spec(dotted)    # another finder (an editable install): may import parents
        except (ImportError, ValueError):
            return ()
        origin = getattr(spec, "origin", None)
        return (_shown(Path(origin), root),) if origin and os.path.isfile(origin) else ()
    if top_spec.submodule_search_locations:
        base = Path(list(top_spec.submodule_search_locations)[0]).parent
    elif top_spec.origin:
        base = Path(top_spec.origin).parent
    else:
        return ()
    base_str = str(base)
    # sibling modules count when they are the project's own (not an environment inside the project)
    base_in_project = _within(base, root) and not {"site-packages", "dist-packages"} & set(base.parts)

    def local_file(name: str) -> Path | None:
        """The file of module `name` if it is local (same package, or beside it in the project)."""
        if name.split(".")[0] != top and not base_in_project:
            return None
        spec = spec_of(name, [base_str])
        if spec is None or not spec.origin or not os.path.isfile(spec.origin):
            return None
        return Path(spec.origin)

    files: dict[Path, None] = {}
    todo = [dotted]
    done: set[str] = set()
    while todo and len(files) < MAX_SOURCE_FILES:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        path = local_file(name)
        if path is None:
            continue
        parts = name.split(".")
        for i in range(1, len(parts)):            # importing pkg.mod runs pkg/__init__.py
            todo.append(".".join(parts[:i]))
        files[path] = None
        if path.suffix != ".py":
            continue
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue
        package = parts if path.name == "__init__.py" else parts[:-1]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    if node.level - 1 > len(package):
                        continue
                    base_parts = package[:len(package) - (node.level - 1)]
                    mod = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if not mod:      # from . import a, b: modules of the package
                    todo += [".".join(base_parts + [a.name]) for a in node.names if a.name != "*"]
                    continue
                todo.append(mod)
                todo += [f"{mod}.{a.name}" for a in node.names if a.name != "*"]   # submodules, if they are
    return tuple(sorted(_shown(p, root) for p in files))


def _within(p: Path, folder: Path) -> bool:
    import os

    p, folder = Path(os.path.realpath(p)), Path(os.path.realpath(folder))
    return p == folder or folder in p.parents


def _shown(p: Path, root: Path) -> str:
    import os

    real, real_root = os.path.realpath(p), os.path.realpath(root)
    return os.path.relpath(real, real_root) if _within(p, root) else real
