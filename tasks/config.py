"""tinyml.toml, version 1: load, validate once, and hand out small frozen settings objects.

Every error names the file, the table path and the key, says what was given and what is
allowed, and suggests the closest key for a typo. Pure Python: this runs on every `doit`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .engine.errors import TinyMLError

try:  # Python 3.11 ships tomllib; tomli is the same parser for older interpreters
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover
    import tomli as _toml


class ConfigError(TinyMLError):
    """A mistake in tinyml.toml."""


VOTE_RULES = ("max", "mean+k*std")
RECONSTRUCTION_ERRORS = ("mse", "mae")
TASKS = ("regression", "binary", "multiclass", "autoencoder")
QUANTIZATIONS = ("float32", "dynamic", "float16", "int8", "int16x8")
CONVERTERS = ("keras", "saved_model", "concrete", "auto")
IO_TYPES = ("float32", "int8", "uint8", "int16")
NORMALIZE = ("none", "standard", "minmax")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw", "nadam", "adagrad")
RUNTIMES = ("tflm", "aot")
GENERATORS = ("sine", "tapping", "waveforms", "sklearn:breast_cancer", "sklearn:digits",
              "sklearn:iris", "sklearn:wine")
LOSS_TASK = {
    "mse": "regression", "mean_squared_error": "regression", "mae": "regression",
    "mean_absolute_error": "regression", "huber": "regression",
    "binary_crossentropy": "binary",
    "sparse_categorical_crossentropy": "multiclass",
}
LOSSES = tuple(LOSS_TASK)
# The losses each task can train with (the dataset stage writes class ids, never one-hot labels).
TASK_LOSSES = {"regression": ("mse", "mean_squared_error", "mae", "mean_absolute_error", "huber"),
               "autoencoder": ("mse", "mean_squared_error", "mae", "mean_absolute_error", "huber"),
               "binary": ("binary_crossentropy", "sparse_categorical_crossentropy"),
               "multiclass": ("sparse_categorical_crossentropy",)}
DEFAULT_LOSS = {"regression": "mse", "binary": "binary_crossentropy",
                "multiclass": "sparse_categorical_crossentropy", "autoencoder": "mse"}

# Layer types and the keys each accepts (Keras argument names). `activation` everywhere it makes sense.
_ACT = ("activation",)
LAYER_KEYS: dict[str, tuple[str, ...]] = {
    "dense": ("units", "use_bias", "name") + _ACT,
    "conv1d": ("filters", "kernel_size", "strides", "padding", "use_bias", "name") + _ACT,
    "conv2d": ("filters", "kernel_size", "strides", "padding", "use_bias", "name") + _ACT,
    "depthwise_conv2d": ("kernel_size", "strides", "padding", "depth_multiplier", "use_bias", "name") + _ACT,
    "max_pooling1d": ("pool_size", "strides", "padding", "name"),
    "max_pooling2d": ("pool_size", "strides", "padding", "name"),
    "average_pooling1d": ("pool_size", "strides", "padding", "name"),
    "average_pooling2d": ("pool_size", "strides", "padding", "name"),
    "global_average_pooling1d": ("name",),
    "global_average_pooling2d": ("name",),
    "global_max_pooling1d": ("name",),
    "global_max_pooling2d": ("name",),
    "flatten": ("name",),
    "reshape": ("target_shape", "name"),
    "dropout": ("rate", "name"),
    "batch_normalization": ("momentum", "epsilon", "name"),
    "activation": ("activation", "name"),
    "relu": ("max_value", "name"),
}
LAYER_REQUIRED = {"dense": ("units",), "conv1d": ("filters", "kernel_size"),
                  "conv2d": ("filters", "kernel_size"), "depthwise_conv2d": ("kernel_size",),
                  "dropout": ("rate",), "activation": ("activation",), "reshape": ("target_shape",)}
ACTIVATIONS = ("linear", "relu", "relu6", "sigmoid", "tanh", "softmax", "elu", "selu", "swish",
               "hard_sigmoid", "gelu")

# Stated upper bounds: far beyond any model a microcontroller runs, low enough that a typo
# (`units = 10**9`, `epochs = 2**62`) is refused at load instead of exhausting memory or time.
MAX_UNITS = 65536              # Dense units, Conv filters
MAX_KERNEL = 1024              # kernel_size, strides, pool_size (each dimension)
MAX_DIM = 65536                # each entry of input_shape / target_shape
MAX_EPOCHS = 100_000
MAX_BATCH = 1_000_000
MAX_SEED = 2**32 - 1
MAX_NAME = 64                  # model, variant and board ids: they become folder names (NAME_MAX is 255)
# model, variant and board ids become folder names under build/: letters, digits, '_' and '-', starting
# with a letter or digit (a leading '-' reads as an option to doit and pio; '.' is refused because
# firmware folders are named <board>.<runtime>, and '/', '\\' or '..' would leave build/).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
RESERVED = {"variant": ("logs",),     # build/<model>/logs holds the stage logs
            "board": ("aot", "logs", "tflm")}  # build/<model>/<variant>/aot holds the AOT C model, tflm the
                                               # real TFLite Micro's target check
LAYER_INT = {"units": (1, MAX_UNITS), "filters": (1, MAX_UNITS), "depth_multiplier": (1, 1024)}
LAYER_SIZE = ("kernel_size", "strides", "pool_size")          # an integer or one per spatial dimension
LAYER_BOOL = ("use_bias",)
LAYER_NUMBER = {"rate": (0.0, 1.0, "[0, 1)"), "momentum": (0.0, 1.0, "[0, 1]"),
                "epsilon": (0.0, 1.0, "(0, 1)"), "max_value": (0.0, 1e9, "[0, 1e9]")}
PADDING = ("valid", "same")
# layers that keep the shape of their input: the output layer is the last layer not of these kinds
_SHAPE_KEEPING = ("activation", "relu", "dropout", "batch_normalization")


# --------------------------------------------------------------------------- settings objects
@dataclass(frozen=True)
class DatasetSettings:
    source: str                 # generator name, path to .csv/.npz/.ts (relative to tinyml.toml), or "pkg.mod:func"
    kind: str                   # "generator" | "csv" | "npz" | "ts" | "callable"
    params: dict
    label: str | None
    features: tuple[str, ...] | None
    test_split: float | None    # held-out fraction; None with a fixed test set (test file, .npz x_test/y_test)
    normalize: str
    class_names: tuple[str, ...] | None
    test: str | None = None     # a fixed test file, same format as source (relative to tinyml.toml)
    window: int | None = None   # CSV time series: rows per window (x -> (n, window, features))
    stride: int | None = None   # rows between window starts (default: window, windows side by side)
    # files the dataset is made from, for doit's file_dep: the data files (source, test) or a callable's
    # module and the modules it imports from its own package or folder; relative to tinyml.toml when inside it
    deps: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSettings:
    layers: tuple[dict, ...]
    builder: str | None
    input_shape: tuple[int, ...] | None


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int = 200
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 0.001
    loss: str = "mse"
    validation_split: float = 0.1
    early_stopping: dict | None = None


@dataclass(frozen=True)
class VariantSettings:
    name: str
    quantization: str = "float32"
    io: str = "float32"
    converter: str = "keras"
    representative_samples: int = 100
    steps: tuple[dict, ...] = ()
    required: bool = False
    runtime: tuple[str, ...] | None = None   # overrides the firmware's runtimes for this variant
    description: str = ""
    per_channel: bool = True                 # full-integer PTQ: weights per channel (False: per tensor)
    sweep: dict | None = None                # the sweep point this variant is (report-only; see engine.sweep)


@dataclass(frozen=True)
class TflmSettings:
    """Which TFLite Micro library the tflm runtime links (engine.tflm_link), if any.

    `library` is None when none was found: tflm rows then add a marked estimate of the interpreter.
    `source` says where the path came from: tinyml.toml, the TINYML_TFLM_DIR environment variable, or
    the copy PlatformIO downloaded into the sketch's .pio/libdeps/<env>/.
    """
    library: Path | None = None
    source: str = ""
    kernels: str = "cmsis_nn"                # cmsis_nn | reference: what the firmware links and the target measures
    reference_kernels: Path | None = None    # a tflite-micro checkout completing an Arduino export's reference kernels


@dataclass(frozen=True)
class FirmwareSettings:
    sketch: Path | None
    boards: tuple[str, ...]                  # every board built: `boards` plus the boards of `envs`
    runtime: tuple[str, ...] = ("tflm",)
    arena_margin: float = 0.10
    fail_if_too_big: bool = False
    envs: tuple[tuple[str, str], ...] = ()   # (board id, environment of the sketch's platformio.ini) built as is
    tflm: TflmSettings = TflmSettings()

    def env_for(self, board: str) -> str | None:
        return dict(self.envs).get(board)


@dataclass(frozen=True)
class AnomalySettings:
    """How an autoencoder's reconstruction error becomes a decision (see docs/report.md).

    A sample is flagged when its error (`error`: mean squared or mean absolute) exceeds
    mean + k * std of the training errors. With voting, a group of `vote_window` consecutive samples
    is anomalous when at least T of its members are flagged: `vote_threshold = "max"` takes T one more
    than the most flagged members of any training group; `"mean+k*std"` takes T = mean + vote_k * std
    of the flagged counts per training group (the published rule).
    """
    k: float = 3.0
    mode: str = "pointwise"
    vote_window: int = 10
    vote_threshold: str = "max"
    vote_k: float = 1.0
    error: str = "mse"


@dataclass(frozen=True)
class Model:
    name: str
    task: str
    dataset: DatasetSettings
    model: ModelSettings
    training: TrainingSettings
    variants: tuple[VariantSettings, ...]
    firmware: FirmwareSettings
    anomaly: AnomalySettings
    sweep: dict | None = None                # the sweep point this model is (report-only; see engine.sweep)


@dataclass(frozen=True)
class ReportSettings:
    headroom: float = 0.10
    max_accuracy_drop: float | None = None


@dataclass(frozen=True)
class PortSettings:
    """Where a board on the desk is (`[boards.<id>] port`, `baud`): the measure stage's serial port."""
    port: str
    baud: int = 115200
    source: str = ""


@dataclass(frozen=True)
class Project:
    path: Path                  # the tinyml.toml
    root: Path                  # its folder: relative paths in the file are relative to it
    name: str
    build_dir: Path
    seed: int
    models: tuple[Model, ...]
    boards: dict = field(default_factory=dict)   # board id -> tasks.boards.Board (resolved, with overrides)
    report: ReportSettings = ReportSettings()
    ports: dict = field(default_factory=dict)    # board id -> PortSettings ([boards.<id>] port): measure there


# --------------------------------------------------------------------------- validation machinery
class _Table:
    """One TOML table being validated: tracks which keys were read, so leftovers are reported."""

    def __init__(self, raw: Any, where: str, file: str):
        self.file = file
        self.where = where
        if not isinstance(raw, dict):
            raise ConfigError(f"{file}: [{where}] must be a table, got {_kind(raw)} {raw!r}")
        self.raw = raw

    def err(self, key: str | None, msg: str) -> ConfigError:
        loc = f"[{self.where}]" + (f" key '{key}'" if key else "")
        return ConfigError(f"{self.file}: {loc}: {msg}")

    def get(self, key: str, types: type | tuple, default: Any = None, *, required: bool = False,
            choices: tuple | None = None, check: Callable[[Any], str | None] | None = None) -> Any:
        if key not in self.raw:
            if required:
                raise self.err(key, "is required" + (f" (one of: {', '.join(map(str, choices))})" if choices else ""))
            return default
        value = self.raw[key]
        types_t = types if isinstance(types, tuple) else (types,)
        if float in types_t and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in types_t or not isinstance(value, types_t):
            allowed = " or ".join(_type_name(t) for t in types_t)
            hint = ""
            if int in types_t and isinstance(value, float) and float not in types_t:
                hint = f" (a whole number like {int(value)} is meant)" if math.isfinite(value) else ""
            raise self.err(key, f"must be {allowed}, got {_kind(value)} {value!r}{hint}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.err(key, f"must be a finite number, got {value!r}")
        if choices is not None and value not in choices:
            hint = _closest(value, choices) if isinstance(value, str) else ""
            raise self.err(key, f"got {value!r}; allowed: {', '.join(map(str, choices))}{hint}")
        if check is not None:
            problem = check(value)
            if problem:
                raise self.err(key, f"got {value!r}; {problem}")
        return value

    def sub(self, key: str, *, required: bool = False) -> "_Table":
        if key not in self.raw:
            if required:
                raise self.err(None, f"needs a [{self.where}.{key}] table")
            return _Table({}, f"{self.where}.{key}", self.file)
        return _Table(self.raw[key], f"{self.where}.{key}", self.file)

    def check_keys(self, allowed: tuple[str, ...] | list[str]) -> None:
        for key in self.raw:
            if key not in allowed:
                raise self.err(key, f"unknown key{_closest(key, allowed)}. Allowed keys: {', '.join(allowed)}")


def _closest(word: str, options) -> str:
    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _type_name(t: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list", dict: "a table"}.get(t, t.__name__)


def _kind(v: Any) -> str:
    return {str: "string", int: "integer", float: "number", bool: "boolean", list: "list",
            dict: "table"}.get(type(v), type(v).__name__)


def _frac(lo: float, hi: float, lo_open=False, hi_open=True):
    def check(v):
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        return None if ok else f"must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    return check


def _positive(v):
    return None if v > 0 else "must be greater than 0"


def _between(lo, hi, unit: str = ""):
    def check(v):
        if lo <= v <= hi:
            return None
        return f"must be in [{lo}, {hi}]{unit}" if isinstance(lo, int) else f"must be in [{lo:g}, {hi:g}]{unit}"
    return check


def _check_name(name: Any, what: str, file: str, where: str) -> str:
    """Model, variant and board ids: they become folder names below build/."""
    kind = {"model": "model names", "variant": "variant names", "board": "board ids"}[what]
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        why = ""
        if isinstance(name, str):
            if name.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", name):
                why = " (an absolute path)"
            elif ".." in name or "/" in name or "\\" in name:
                why = " (it would be a path leaving the build folder)"
            elif not name:
                why = " (empty)"
        raise ConfigError(f"{file}: {where}: {what} {name!r}{why} is not allowed: {kind} become folder names under "
                          f"the build folder, so they may use letters, digits, '_' and '-' only, starting with a "
                          f"letter or digit")
    if len(name) > MAX_NAME:
        raise ConfigError(f"{file}: {where}: {what} {name[:20]!r}... is {len(name)} characters long; {kind} become "
                          f"folder names and may be at most {MAX_NAME} characters: use a shorter name")
    if name in RESERVED.get(what, ()):
        raise ConfigError(f"{file}: {where}: {what} {name!r} is reserved: build/ uses a folder of that name for "
                          f"its own files; choose another name")
    return name


def _non_negative(v):
    return None if v >= 0 else "must be 0 or more"


_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


# --------------------------------------------------------------------------- loading
PROJECT_KEYS = ("project", "models", "boards", "report")


def load(path: str | Path = "tinyml.toml") -> Project:
    """Read and validate tinyml.toml. Raises ConfigError with an actionable one-line message."""
    try:
        return _load(path)
    except ConfigError as e:
        # one line: the message is printed as `doit-tinyml: <message>` and read in a terminal or CI log
        raise ConfigError(" ".join(str(e).split())) from None


def _load(path: str | Path) -> Project:
    path = Path(path).absolute()
    file = path.name
    if not path.exists():
        raise ConfigError(f"{path}: file not found. A doit-tinyml project needs a tinyml.toml beside dodo.py "
                          f"(see the README for a complete example).")
    try:
        with open(path, "rb") as f:
            raw = _toml.load(f)
    except _toml.TOMLDecodeError as e:
        raise ConfigError(f"{file}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{file}: not valid TOML: byte {e.object[e.start]:#04x} at offset {e.start} is not UTF-8; "
                          f"save the file as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read: {e.strerror or e}") from None
    root = path.parent
    top = _Table(raw, "", file)
    for key in raw:
        if key not in PROJECT_KEYS:
            raise ConfigError(f"{file}: unknown top-level table [{key}]{_closest(key, PROJECT_KEYS)}. "
                              f"Allowed: {', '.join('[' + k + ']' for k in PROJECT_KEYS)}")

    proj = top.sub("project")
    proj.where = "project"
    proj.check_keys(("name", "build_dir", "seed"))
    name = proj.get("name", str, root.name, check=lambda v: None if 0 < len(v) <= 100 and v.isprintable() else
                    "must be 1 to 100 printable characters")
    build_rel = proj.get("build_dir", str, "build")
    build_dir = _build_dir(build_rel, root, proj)
    seed = proj.get("seed", int, 42, check=_between(0, MAX_SEED))

    rep = top.sub("report")
    rep.where = "report"
    rep.check_keys(("headroom", "max_accuracy_drop"))
    report = ReportSettings(
        headroom=rep.get("headroom", float, 0.10, check=_frac(0.0, 0.9)),
        max_accuracy_drop=rep.get("max_accuracy_drop", float, None, check=_between(0.0, 1e9)),
    )

    board_tables = raw.get("boards", {})
    if not isinstance(board_tables, dict):
        raise ConfigError(f"{file}: [boards] must be a table of [boards.<platformio id>] tables, "
                          f"got {_kind(board_tables)} {board_tables!r}")
    ports: dict[str, PortSettings] = {}
    for bid, overrides in board_tables.items():
        _check_name(bid, "board", file, f"[boards.{bid}]" if NAME_RE.fullmatch(bid) else f"[boards.{json.dumps(bid)}]")
        _check_board_overrides(bid, overrides, file)
        port = _port_settings(bid, overrides, file)
        if port is not None:
            ports[bid] = port
    # port and baud say where the board is, not what it is: they never reach the board's identity
    board_tables = {bid: {k: v for k, v in o.items() if k not in PORT_KEYS} for bid, o in board_tables.items()}

    models_raw = raw.get("models")
    if not isinstance(models_raw, dict) or not models_raw:
        raise ConfigError(f"{file}: needs at least one [models.<name>] table (see the README's example)")
    ctx = _Context(file=file, root=root, build_dir=build_dir)
    models = []
    for n, t in models_raw.items():
        for pname, ptable, sweep in _expand(n, t, f"models.{n}", "model", file):
            with _in_sweep(pname, sweep, f"models.{n}"):
                m = _load_model(pname, _Table(ptable, f"models.{pname}", file), ctx)
            models.append(dataclasses.replace(m, sweep=sweep))
    _unique([m.name for m in models], "model", file, "[models]")
    models = tuple(models)

    # Nothing the build writes may land in its inputs, and no input may live in the build folder
    # (`doit clean` and the firmware stage delete files there).
    for m in models:
        where = f"[models.{m.name}"
        inputs = []
        if m.dataset.kind in ("csv", "npz"):
            inputs.append((root / m.dataset.source, f"{where}.dataset] key 'source'"))
        if m.firmware.sketch is not None:
            inputs.append((m.firmware.sketch, f"{where}.firmware] key 'sketch'"))
        for p, loc in inputs:
            rp, rb = Path(os.path.realpath(p)), Path(os.path.realpath(build_dir))
            if _inside(rp, rb):
                raise ConfigError(f"{file}: {loc}: {os.path.relpath(p, root)!r} is inside the build folder "
                                  f"{build_rel!r}, which doit-tinyml writes and `doit clean` empties; keep sources "
                                  f"outside it, or set [project] build_dir elsewhere")
            if p.is_dir() and _inside(rb, rp):
                raise ConfigError(f"{file}: [project] key 'build_dir': {build_rel!r} is inside the sketch folder "
                                  f"{os.path.relpath(p, root)!r}; the build would change the sketch it builds; "
                                  f"use a folder beside it, e.g. build_dir = \"build\"")

    # Boards: every board a model uses, resolved once against the catalogue with overrides.
    from .engine import boards as _boards

    used = sorted({b for m in models for b in m.firmware.boards} | set(board_tables))
    resolved = {}
    for bid in used:
        overrides = board_tables.get(bid)
        try:
            resolved[bid] = _boards.resolve(bid, overrides, file)
        except TinyMLError as e:
            users = [m.name for m in models if bid in m.firmware.boards]
            where = f" (used in [models.{users[0]}.firmware] boards)" if users else ""
            raise ConfigError(f"{e}{where}") from None
    for bid in ports:
        users = [m for m in models if bid in m.firmware.boards]
        offline = [m.name for m in users if m.firmware.env_for(bid) is None]
        if offline:
            raise ConfigError(
                f"{file}: [boards.{bid}] key 'port': board {bid} is built by doit's offline platform for "
                f"[models.{offline[0]}.firmware] (bare metal, no framework and no serial port), so nothing could be "
                f"measured on it; measure through the sketch's own PlatformIO environment: envs = {{ {bid} = "
                f"\"<environment>\" }} in [models.{offline[0]}.firmware]")
    ctx.save_cache()   # only for a config that loads: a refused one leaves no build folder behind
    return Project(path=path, root=root, name=name, build_dir=build_dir, seed=seed, models=models,
                   boards=resolved, report=report, ports=ports)


def _expand(name: str, raw: Any, where: str, kind: str, file: str) -> list:
    """The points of a model or variant table's sweep (engine.sweep), or the table itself."""
    from .engine.sweep import expand

    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        return [(name, raw, None)]   # _load_model / _load_variant say what is wrong with the name
    try:
        return expand(name, raw, where=where, kind=kind)
    except TinyMLError as e:
        raise ConfigError(f"{file}: {e}") from None


@contextlib.contextmanager
def _in_sweep(point: str, sweep: dict | None, where: str):
    """A mistake in one sweep point names the sweep key and value that made the point."""
    try:
        yield
    except ConfigError as e:
        if sweep is None:
            raise
        made = ", ".join(f"{sweep['keys'][k]!r} = {v!r}" for k, v in sweep["values"].items())
        raise ConfigError(f"{e} (in sweep point {point!r} of [{where}.sweep]: {made})") from None


def _unique(names: list[str], what: str, file: str, where: str) -> None:
    seen = set()
    for n in names:
        if n.lower() in seen:
            raise ConfigError(f"{file}: {where}: two {what}s are named {n!r} (names differing only in case count as "
                              f"one: they are folders); rename one, or change the sweep that generates it")
        seen.add(n.lower())


def _inside(p: Path, folder: Path) -> bool:
    return p == folder or folder in p.parents


def _build_dir(value: str, root: Path, t: _Table) -> Path:
    """[project] build_dir: a folder strictly inside the project folder (everything doit-tinyml writes
    and everything `doit clean` removes is below it)."""
    rel = Path(value)
    if not value.strip() or rel.is_absolute() or ".." in rel.parts or "\0" in value:
        raise t.err("build_dir", f"got {value!r}; must be a relative folder inside the project folder (where "
                                 f"tinyml.toml is), without '..', e.g. \"build\": doit-tinyml writes and deletes only "
                                 f"there")
    build = Path(os.path.normpath(root / rel))
    if build == root:
        raise t.err("build_dir", f"got {value!r}, the project folder itself; use a subfolder such as \"build\": "
                                 f"`doit clean` deletes in it")
    real_root, real_build = Path(os.path.realpath(root)), Path(os.path.realpath(build))
    if _inside(real_root, real_build):
        raise t.err("build_dir", f"got {value!r}, which resolves to {real_build}, the project folder or one above "
                                 f"it; use a plain subfolder such as \"build\"")
    if len(value) > 200:
        raise t.err("build_dir", f"is {len(value)} characters long; keep it under 200")
    return build


PORT_KEYS = ("port", "baud")


def _port_settings(bid: str, overrides: dict, file: str) -> PortSettings | None:
    """`[boards.<id>] port = "/dev/ttyACM0"` (a serial device, or a pyserial URL such as
    "socket://127.0.0.1:4555"), `baud = 115200`: the board is on the desk, measure it."""
    where = f"[boards.{bid}]"
    port, baud = overrides.get("port"), overrides.get("baud")
    if port is None:
        if baud is not None:
            raise ConfigError(f"{file}: {where} key 'baud' is set without 'port': say where the board is, e.g. "
                              f"port = \"/dev/ttyACM0\"")
        return None
    if not isinstance(port, str) or not port.strip() or not port.isprintable() or len(port) > 300:
        raise ConfigError(f"{file}: {where} key 'port': got {_kind(port)} {port!r}; must be the board's serial port, "
                          f"e.g. \"/dev/ttyACM0\", \"COM5\" or \"socket://127.0.0.1:4555\"")
    if baud is None:
        baud = 115200
    if isinstance(baud, bool) or not isinstance(baud, int) or not 300 <= baud <= 16_000_000:
        raise ConfigError(f"{file}: {where} key 'baud': got {_kind(baud)} {baud!r}; must be a serial speed in bits "
                          f"per second between 300 and 16000000 (default 115200)")
    return PortSettings(port=port.strip(), baud=baud, source=f"{file} {where} port")


def _check_board_overrides(bid: str, overrides: Any, file: str) -> None:
    where = f"[boards.{bid}]"
    if not isinstance(overrides, dict):
        raise ConfigError(f"{file}: {where} must be a table (flash = <bytes>, ram = <bytes>, ...), "
                          f"got {_kind(overrides)} {overrides!r}")
    for key, hi in (("flash", 2**32), ("ram", 2**32), ("cpu_mhz", 100_000)):
        v = overrides.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > hi:
            raise ConfigError(f"{file}: {where} key '{key}': got {v}; must be at most {hi}")
    for key, pattern, want in (("name", r"[^\x00-\x1f\x7f]{1,100}", "1 to 100 printable characters"),
                               ("mcu", r"[A-Za-z0-9_.+-]{1,64}", "1 to 64 letters, digits, '_', '.', '+' or '-'")):
        if key in overrides:
            v = overrides[key]
            if not isinstance(v, str) or not re.fullmatch(pattern, v):
                raise ConfigError(f"{file}: {where} key '{key}': got {_kind(v)} {v!r}; must be a string of {want}")


class _Context:
    """What validating one model needs from the project: file names, folders, the source cache."""

    CACHE_MIN_BYTES = 16 << 10    # smaller files are scanned on every load (a few ms; 700 KB of CSV takes ~130 ms)

    def __init__(self, file: str, root: Path, build_dir: Path):
        self.file, self.root, self.build_dir = file, root, build_dir
        self._cache_path = build_dir / ".tinyml-sources.json"
        self._cache: dict | None = None
        self._dirty = False

    def inspect(self, kind: str, path: Path, display: str, label, features) -> dict:
        """engine.data.inspect_csv / inspect_npz, cached by (path, size, mtime) for big files."""
        from .engine import data as dataset

        st = path.stat()
        key = json.dumps([kind + "/2", str(path), st.st_size, st.st_mtime_ns, label, list(features or ())])
        big = st.st_size >= self.CACHE_MIN_BYTES
        if big:
            if self._cache is None:
                try:
                    self._cache = json.loads(self._cache_path.read_text())
                    assert isinstance(self._cache, dict)
                except (OSError, ValueError, AssertionError):
                    self._cache = {}
            if key in self._cache:
                return self._cache[key]
        if kind == "csv":
            info = dataset.inspect_csv(path, label, features, display)
        elif kind == "ts":
            info = dataset.inspect_ts(path, display)
        else:
            info = dataset.inspect_npz(path, display)
        if big:
            self._cache[key] = info
            self._dirty = True
        return info

    def save_cache(self) -> None:
        if not self._dirty:
            return
        live = {k: v for k, v in self._cache.items() if os.path.exists(json.loads(k)[1])}
        try:
            from .engine.io import write_json

            write_json(self._cache_path, dict(sorted(live.items())[-64:]))
        except OSError:
            pass  # a read-only build folder only costs the rescan next time


MODEL_KEYS = ("task", "dataset", "model", "training", "variants", "firmware", "anomaly")


def _load_model(name: str, t: _Table, ctx: _Context) -> Model:
    _check_name(name, "model", t.file, f"[models.{name}]")
    t.check_keys(MODEL_KEYS)
    dataset, info = _load_dataset(t.sub("dataset", required=True), ctx)
    model = _load_arch(t.sub("model", required=True))
    tr = t.sub("training")
    tr.check_keys(("epochs", "batch_size", "optimizer", "learning_rate", "loss", "validation_split",
                   "early_stopping"))
    if tr.raw.get("loss") == "categorical_crossentropy":
        raise tr.err("loss", "got 'categorical_crossentropy', which needs one-hot labels, but the dataset stage "
                             "writes class ids 0..N-1; use loss = \"sparse_categorical_crossentropy\" (same loss, "
                             "integer labels)")
    loss = tr.get("loss", str, None, choices=LOSSES)
    task = t.get("task", str, None, choices=TASKS)
    if task is None:
        task = LOSS_TASK.get(loss) if loss else _generator_task(dataset)
        if task is None:
            raise t.err("task", f"is needed: cannot tell from the dataset or loss what kind of model this is. "
                                f"Set task = one of: {', '.join(TASKS)}")
    if loss is not None and loss not in TASK_LOSSES[task]:
        raise tr.err("loss", f"got {loss!r}, which does not train a {task} model; allowed for {task}: "
                             f"{', '.join(TASK_LOSSES[task])} (or remove loss for the default, "
                             f"{DEFAULT_LOSS[task]!r})")
    validation_split = tr.get("validation_split", float, 0.1, check=_frac(0.0, 0.9))
    es = tr.raw.get("early_stopping")
    early = None
    if es is not None:
        if not isinstance(es, dict):
            raise tr.err("early_stopping", f"must be a table like {{ patience = 10, monitor = \"val_loss\" }}, got "
                                           f"{_kind(es)} {es!r}; remove the key to train all epochs")
        est = tr.sub("early_stopping")
        est.check_keys(("patience", "monitor", "min_delta", "restore_best_weights"))
        metric = "accuracy" if task in ("binary", "multiclass") else "mae"
        monitors = ("val_loss", "loss", f"val_{metric}", metric)
        monitor = est.get("monitor", str, "val_loss", choices=monitors)
        if monitor.startswith("val_") and validation_split == 0:
            raise est.err("monitor", f"is {monitor!r} but [models.{name}.training] validation_split = 0 leaves no "
                                     f"validation data; set validation_split (e.g. 0.1) or monitor = \"loss\"")
        early = {"patience": est.get("patience", int, 10, check=_between(1, MAX_EPOCHS)),
                 "monitor": monitor,
                 "min_delta": est.get("min_delta", float, 0.0, check=_between(0.0, 1e9)),
                 "restore_best_weights": est.get("restore_best_weights", bool, True)}
    training = TrainingSettings(
        epochs=tr.get("epochs", int, 200, check=_between(1, MAX_EPOCHS)),
        batch_size=tr.get("batch_size", int, 32, check=_between(1, MAX_BATCH)),
        optimizer=tr.get("optimizer", str, "adam", choices=OPTIMIZERS),
        learning_rate=tr.get("learning_rate", float, 0.001, check=lambda v: None if 0 < v <= 10 else
                             "must be in (0, 10]"),
        loss=loss or DEFAULT_LOSS[task],
        validation_split=validation_split,
        early_stopping=early,
    )
    fw = _load_firmware(t.sub("firmware"), ctx.root)
    variants_raw = t.raw.get("variants")
    if not isinstance(variants_raw, dict) or not variants_raw:
        raise t.err("variants", "needs at least one [models.%s.variants.<name>] table, e.g. float32 and int8" % name)
    variants = []
    for vname, vraw in variants_raw.items():
        vwhere = f"{t.where}.variants.{vname}"
        for pname, ptable, sweep in _expand(vname, vraw, vwhere, "variant", t.file):
            with _in_sweep(pname, sweep, vwhere):
                v = _load_variant(pname, _Table(ptable, f"{t.where}.variants.{pname}", t.file))
            variants.append(dataclasses.replace(v, sweep=sweep))
    _unique([v.name for v in variants], "variant", t.file, f"[{t.where}.variants]")
    variants = tuple(variants)
    an = t.sub("anomaly")
    if "anomaly" in t.raw and task != "autoencoder":
        raise an.err(None, f"applies to autoencoders only, but this model's task is {task!r}; remove the table")
    an.check_keys(("k", "mode", "vote_window", "vote_threshold", "vote_k", "error"))
    anomaly = AnomalySettings(k=an.get("k", float, 3.0, check=lambda v: None if 0 < v <= 1000 else
                                       "must be in (0, 1000]"),
                              mode=an.get("mode", str, "pointwise", choices=("pointwise", "window")),
                              vote_window=an.get("vote_window", int, 10, check=_between(1, 100_000)),
                              vote_threshold=an.get("vote_threshold", str, "max", choices=VOTE_RULES),
                              vote_k=an.get("vote_k", float, 1.0, check=lambda v: None if 0 <= v <= 1000 else
                                            "must be in [0, 1000]"),
                              error=an.get("error", str, "mse", choices=RECONSTRUCTION_ERRORS))
    m = Model(name=name, task=task, dataset=dataset, model=model, training=training,
              variants=variants, firmware=fw, anomaly=anomaly)
    _check_against_data(m, info, t)
    _check_sketch(m, t, ctx.root)
    return m


def _generator_task(ds: DatasetSettings) -> str | None:
    return {"sine": "regression", "tapping": "autoencoder", "waveforms": "multiclass",
            "sklearn:breast_cancer": "binary", "sklearn:digits": "multiclass",
            "sklearn:iris": "multiclass", "sklearn:wine": "multiclass"}.get(ds.source)


DATASET_KEYS = ("source", "params", "label", "features", "test_split", "normalize", "class_names", "test",
                "window", "stride")
FILE_KINDS = ("csv", "npz", "ts")
MAX_WINDOW = 100_000


def _load_dataset(t: _Table, ctx: _Context) -> tuple[DatasetSettings, dict | None]:
    """The [dataset] table, and what the loader could learn about the data without numpy (or None)."""
    from .engine import data as _dataset

    t.check_keys(DATASET_KEYS)
    source = t.get("source", str, required=True)
    label = t.get("label", str, None, check=lambda v: None if v.strip() else "must name a column")
    params = t.get("params", dict, {})
    info = None
    if source.endswith(tuple("." + k for k in FILE_KINDS)):
        kind = source.rsplit(".", 1)[1]
        source = _data_file(source, "source", kind, t, ctx)
    elif source in GENERATORS:
        kind = "generator"
    elif _CALLABLE.match(source):
        kind = "callable"
    else:
        raise t.err("source", f"got {source!r}; allowed: a built-in generator ({', '.join(GENERATORS)})"
                              f"{_closest(source, GENERATORS)}, a path to a .csv, .npz or .ts file, "
                              f"or a callable 'package.module:function'")
    test = t.get("test", str, None)
    if test is not None:
        if kind not in FILE_KINDS:
            raise t.err("test", f"applies to file sources (.csv, .npz, .ts), but source is {source!r}; " +
                        ("a callable gives a fixed test set by returning a dict with x, y, x_test and y_test"
                         if kind == "callable" else "a built-in generator is split by test_split"))
        if not test.endswith("." + kind):
            raise t.err("test", f"got {test!r}; the fixed test file must be a .{kind} file like the source "
                                f"{source!r}")
        test = _data_file(test, "test", kind, t, ctx)
        if test == source:
            raise t.err("test", f"{test!r} is the training file itself; the fixed test set must be other data")
        if "test_split" in t.raw:
            raise t.err("test_split", f"cannot be combined with key 'test': {test!r} is the fixed test set, so "
                                      f"nothing is split off; remove test_split (or test, for a random split)")
    if kind == "csv" and label is None:
        raise t.err("label", "is required for a CSV source: the name of the column holding the target")
    if kind != "csv":
        for key in ("label", "features", "window", "stride"):
            if key in t.raw:
                what = "CSV time series (rows are time steps)" if key in ("window", "stride") else "CSV sources"
                why = "; a .ts file's cases are already series" if key in ("window", "stride") and kind == "ts" else ""
                raise t.err(key, f"applies to {what} only, but source is {source!r}{why}; remove it")
    window = t.get("window", int, None, check=_between(2, MAX_WINDOW))
    stride = t.get("stride", int, None, check=_between(1, MAX_WINDOW))
    if stride is not None and window is None:
        raise t.err("stride", "needs window (the rows per window) beside it; add window or remove stride")
    if window is not None:
        stride = stride or window
        if params.get("shuffle") is True:
            raise t.err("params", "shuffle = true cannot be combined with window: windows overlap in time, so "
                                  "the test part is the last windows (or the fixed test file); remove shuffle")
    if test is not None and params.get("shuffle") is True:
        raise t.err("params", f"shuffle = true picks a random test part, but {test!r} is the fixed test set; "
                              f"remove shuffle")
    if kind == "generator":
        problem = _dataset.check_params(params, _dataset.GENERATOR_PARAMS[source], f"generator {source!r}")
        if problem:
            raise t.err("params", problem)
        info = _dataset.generator_info(source, params)
        if info["n"] < 10:
            raise t.err("params", f"give {info['n']} samples; a dataset needs at least 10 (training, validation and "
                                  f"test each need some)")
        if info.get("values", 0) > _dataset.MAX_VALUES:
            raise t.err("params", f"would make {info['values']} values, more than the stated bound of "
                                  f"{_dataset.MAX_VALUES}; use fewer samples or shorter samples")
    elif kind in FILE_KINDS:
        problem = _dataset.check_params(params, _dataset.FILE_PARAMS, f"a .{kind} source")
        if problem:
            raise t.err("params", problem)
    features = t.get("features", list, None)
    if features is not None:
        if not features or not all(isinstance(f, str) and f.strip() for f in features):
            raise t.err("features", f"must be a non-empty list of column names, got {features!r}")
        dup = next((f for i, f in enumerate(features) if f in features[:i]), None)
        if dup is not None:
            raise t.err("features", f"lists column {dup!r} twice")
    if kind in FILE_KINDS:
        info = _inspect_data(kind, source, test, label, features, window, stride, t, ctx)
        if info.get("n_test") and test is None and "test_split" in t.raw:
            raise t.err("test_split", f"cannot be combined with a fixed test set: {source} holds x_test and "
                                      f"y_test, which are the test part; remove test_split")
    names = t.get("class_names", list, None)
    if names is not None:
        if not names:
            raise t.err("class_names", "is an empty list; list one name per class, or remove the key")
        for n in names:
            if isinstance(n, bool) or not isinstance(n, (str, int)) or not str(n).strip() or len(str(n)) > 64 \
                    or not str(n).isprintable():
                raise t.err("class_names", f"entry {n!r} is not allowed: each class name must be a printable string "
                                           f"of 1 to 64 characters")
        dup = next((n for i, n in enumerate(names) if str(n) in map(str, names[:i])), None)
        if dup is not None:
            raise t.err("class_names", f"lists {dup!r} twice; class names must be unique")
    split = t.get("test_split", float, _dataset.DEFAULT_TEST_SPLIT, check=_frac(0.0, 0.9, lo_open=True))
    fixed = test is not None or bool(info and info.get("n_test"))
    test_split = None if fixed else split
    if info is not None and not fixed:
        if window is not None:
            n_train, _ = _dataset.time_split(info["n"], window, stride, split)
            if n_train < 1:
                raise t.err("test_split", f"got {split}, which leaves no training window: {source} makes {info['n']} "
                                          f"windows of {window} rows every {stride}, and training keeps only those "
                                          f"that end before the first test window; add rows, lower test_split, or "
                                          f"use a smaller window or stride")
        elif info["n"] - max(1, round(info["n"] * split)) < 1:
            raise t.err("test_split", f"got {split}, which leaves no training samples out of {info['n']}; add "
                                      f"samples or lower test_split")
    if kind in FILE_KINDS:
        deps = (source,) + ((test,) if test else ())
    elif kind == "callable":
        deps = _dataset.callable_files(source, ctx.root)
    else:
        deps = ()
    return DatasetSettings(source=source, kind=kind, params=dict(params), label=label,
                           features=tuple(features) if features else None,
                           test_split=test_split,
                           normalize=t.get("normalize", str, "none", choices=NORMALIZE),
                           class_names=tuple(map(str, names)) if names else None,
                           test=test, window=window, stride=stride, deps=deps), info


def _data_file(value: str, key: str, kind: str, t: _Table, ctx: _Context) -> str:
    """A data file named by [dataset] `key`: it exists, is a file, lies outside the build folder; returned
    relative to tinyml.toml (settings hashes survive moving the project)."""
    p = (ctx.root / value).resolve()
    if not p.exists():
        raise t.err(key, f"file {value!r} not found (looked in {p.parent})")
    if not p.is_file():
        raise t.err(key, f"{value!r} is a folder, not a .{kind} file")
    rel = os.path.relpath(p, ctx.root)
    if _inside(p, Path(os.path.realpath(ctx.build_dir))):
        raise t.err(key, f"{rel!r} is inside the build folder {os.path.relpath(ctx.build_dir, ctx.root)!r}, which "
                         f"doit-tinyml writes and `doit clean` empties; keep sources outside it, or set [project] "
                         f"build_dir elsewhere")
    return rel


def _inspect_data(kind: str, source: str, test: str | None, label, features, window, stride, t: _Table,
                  ctx: _Context) -> dict:
    """What the loader learns from a data file and its fixed test file (columns, shapes, labels, counts)."""
    from .engine import data as _dataset

    def inspect(path: str, key: str, feats) -> dict:
        try:
            return ctx.inspect(kind, ctx.root / path, path, label, feats)
        except TinyMLError as e:
            raise t.err(key, str(e)) from None
        except OSError as e:
            raise t.err(key, f"{path}: cannot be read: {e.strerror or e}") from None

    info = dict(inspect(source, "source", features))
    if test is not None and info.get("n_test"):
        raise t.err("test", f"{source} already holds x_test and y_test, its own test set; remove test (or save "
                            f"the source without x_test and y_test)")
    if test is not None:
        if kind == "csv":
            try:
                header = _dataset.csv_header(ctx.root / test, test)
            except TinyMLError as e:
                raise t.err("test", str(e)) from None
            except OSError as e:
                raise t.err("test", f"{test}: cannot be read: {e.strerror or e}") from None
            need = list(features) + [label] if features else info["columns"]
            missing = [c for c in need if c not in header]
            extra = [c for c in header if c not in info["columns"]] if not features else []
            if missing or extra:
                said = "; ".join(part for part in (
                    f"missing {', '.join(map(repr, missing))}" if missing else "",
                    f"not in the training file {', '.join(map(repr, extra))}" if extra else "") if part)
                raise t.err("test", f"{test}: the columns differ from the training file {source}: {said}; the fixed "
                                    f"test file needs the training file's columns (in any order)")
            tinfo = inspect(test, "test", info["features"])
        else:
            tinfo = inspect(test, "test", None)
            if tinfo.get("n_test"):
                raise t.err("test", f"{test} holds x_test and y_test itself; a fixed test file holds x and y")
            if tinfo["sample_shape"] != info["sample_shape"]:
                raise t.err("test", f"each sample of {test} has shape {tinfo['sample_shape']} but each sample of "
                                    f"{source} has {info['sample_shape']}" +
                            (" ([length, dimensions])" if kind == "ts" else "") + "; they must match")
            if kind == "npz" and tinfo["target_shape"] != info["target_shape"]:
                raise t.err("test", f"{test} has targets of shape {tinfo['target_shape']} but {source} has "
                                    f"{info['target_shape']}; they must match")
        if kind == "ts":
            if (info["class_names"] is None) != (tinfo["class_names"] is None):
                raise t.err("test", f"{test} and {source} label their cases differently (one with @classLabel, "
                                    f"the other with @targetLabel); use the same kind of labels")
            if info["class_names"] is not None:
                extra = [c for c in tinfo["class_names"] if _dataset.class_index(c, info["class_names"]) is None]
                if extra:
                    raise t.err("test", f"{test} declares classes the training file {source} does not: "
                                        f"{', '.join(map(repr, extra[:10]))}; the model can only learn the training "
                                        f"file's classes ({' '.join(info['class_names'])[:200]})")
                tinfo = dict(tinfo, **{k: info[k] for k in ("labels", "classes", "min", "max", "n_classes",
                                                            "example_text") if k in info})
        try:
            labels = _dataset.merge_label_info(info, tinfo, source, test)
        except TinyMLError as e:
            raise t.err("test", str(e)) from None
        info.update(labels)
        info["n_test"] = tinfo["n"]
    if window is not None:
        for path, part, key in ((source, info, "window"), (test, tinfo if test else None, "test")):
            if part is None:
                continue
            n = _dataset.window_count(part["n"], window, stride)
            if n == 0:
                raise t.err("window", f"got {window}, longer than the series: {path} has {part['n']} rows (time "
                                      f"steps); a window must fit in the series: lower window or add rows")
            if part is info:
                info["n_rows"], info["n"] = info["n"], n
            else:
                info["n_test"] = n
        info["sample_shape"] = [window] + list(info["sample_shape"])
    return info


def _load_arch(t: _Table) -> ModelSettings:
    t.check_keys(("layers", "builder", "input_shape"))
    builder = t.get("builder", str, None, check=lambda v: None if _CALLABLE.match(v) else
                    "must be 'package.module:function' returning a tf_keras model")
    layers = t.get("layers", list, None)
    if (layers is None) == (builder is None):
        raise t.err(None, "give exactly one of 'layers' (a list of layer tables) or 'builder' ('pkg.mod:function')")
    if layers is not None and not layers:
        raise t.err("layers", "is an empty list; a model needs at least one layer, e.g. "
                              "[{ type = \"dense\", units = 1 }]")
    shape = t.get("input_shape", list, None)
    if shape is not None and (not shape or len(shape) > 4 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_DIM for d in shape)):
        raise t.err("input_shape", f"must be a list of 1 to 4 integers in [1, {MAX_DIM}], got {shape!r}")
    return ModelSettings(layers=validate_layers(layers, t) if layers else (), builder=builder,
                         input_shape=tuple(shape) if shape else None)


def validate_layers(layers: list, t: _Table, where: str | None = None) -> tuple[dict, ...]:
    """Check a layer list (also used for distillation students). Returns plain dict copies.

    Every key is typed and bounded: an integer where Keras wants one (`units = 2.7` and `units = 0`
    are refused here, never reaching Keras or the converter)."""
    out = []
    names = set()
    for i, layer in enumerate(layers):
        lt = _Table(layer, f"{where or t.where}] layers[{i}", t.file)
        ltype = lt.get("type", str, required=True, choices=tuple(LAYER_KEYS))
        allowed = ("type",) + LAYER_KEYS[ltype]
        for key in layer:
            if key not in allowed:
                raise lt.err(key, f"is not a setting of a {ltype} layer{_closest(key, allowed)}. "
                                  f"Allowed: {', '.join(allowed)}")
        for key in LAYER_REQUIRED.get(ltype, ()):
            if key not in layer:
                raise lt.err(key, f"is required for a {ltype} layer")
        dims = 1 if ltype.endswith("1d") else 2
        for key in layer:
            if key in LAYER_INT:
                lt.get(key, int, check=_between(*LAYER_INT[key]))
            elif key in LAYER_SIZE:
                v = layer[key]
                ok_int = lambda d: isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_KERNEL  # noqa: E731
                if not (ok_int(v) or isinstance(v, list) and len(v) == dims and all(map(ok_int, v))):
                    raise lt.err(key, f"got {_kind(v)} {v!r}; must be an integer in [1, {MAX_KERNEL}]"
                                      + (f" or a list of {dims} such integers" if dims == 2 else ""))
            elif key in LAYER_BOOL:
                lt.get(key, bool)
            elif key in LAYER_NUMBER:
                lo, hi, text = LAYER_NUMBER[key]
                v = lt.get(key, float)
                if not lo <= v <= hi or (key == "rate" and v >= 1) or (key == "epsilon" and v <= 0):
                    raise lt.err(key, f"got {v!r}; must be in {text}")
            elif key == "padding":
                lt.get(key, str, choices=PADDING + (("causal",) if ltype == "conv1d" else ()))
            elif key == "activation":
                lt.get(key, str, choices=ACTIVATIONS)
            elif key == "name":
                lname = lt.get(key, str, check=lambda v: None if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", v)
                               else "must be 1 to 64 letters, digits or '_', not starting with a digit")
                if lname in names:
                    raise lt.err(key, f"{lname!r} is already the name of another layer; layer names must be unique")
                names.add(lname)
            elif key == "target_shape":
                v = layer[key]
                if not (isinstance(v, list) and 1 <= len(v) <= 4 and all(
                        isinstance(d, int) and not isinstance(d, bool) and (1 <= d <= MAX_DIM or d == -1) for d in v)
                        and v.count(-1) <= 1):
                    raise lt.err(key, f"got {v!r}; must be a list of 1 to 4 integers in [1, {MAX_DIM}] (one of "
                                      f"them may be -1)")
        out.append(dict(layer))
    return tuple(out)


def output_units(layers) -> tuple[int, str | None] | None:
    """(units, activation) of the layer that makes the model's output, when that is a dense layer."""
    activation = None
    for layer in reversed(layers):
        kind = layer["type"]
        if kind in _SHAPE_KEEPING:
            if kind == "activation" and activation is None:
                activation = layer["activation"]
            continue
        if kind == "dense":
            return layer["units"], activation or layer.get("activation", "linear")
        return None
    return None


def _check_against_data(m: Model, info: dict | None, t: _Table) -> None:
    """What can be known before any data is loaded: the task against the labels, the input shape
    against the samples, class names against classes and the output layer."""
    ds, task = m.dataset, m.task
    loc_ds = f"[models.{m.name}.dataset]"
    file = t.file

    def err(where: str, key: str | None, msg: str) -> ConfigError:
        return ConfigError(f"{file}: {where}" + (f" key '{key}'" if key else "") + f": {msg}")

    n_classes = None
    if info is not None:
        gen_task = info.get("task")
        if gen_task is not None and gen_task != task:
            raise err(f"[models.{m.name}]", "task", f"is {task!r} but the built-in dataset {ds.source!r} makes "
                                                     f"{gen_task} data; set task = \"{gen_task}\" or choose another "
                                                     f"source")
        kind, what = info.get("labels"), (f"label column {ds.label!r}" if ds.kind == "csv" else "y")
        if task == "regression" and kind == "text":
            raise err(loc_ds, "label", f"{ds.source}: {what} holds text ({info.get('example_text')!r}) but the task "
                                       f"is regression, which needs numbers; use task = \"binary\" or \"multiclass\" "
                                       f"for class labels")
        if task in ("binary", "multiclass", "autoencoder") and kind == "number":
            raise err(loc_ds, "label", f"{ds.source}: {what} holds fractional numbers but a {task} model needs "
                                       f"class ids 0..N-1 (or text labels in a CSV); use task = \"regression\" to "
                                       f"predict the numbers")
        if kind == "integer" and task in ("binary", "multiclass", "autoencoder"):
            lo, hi = int(info["min"]), int(info["max"])
            if lo < 0:
                raise err(loc_ds, "label", f"{ds.source}: {what} holds {lo}; class ids must be 0..N-1")
            if task in ("binary", "autoencoder") and hi > 1:
                raise err(loc_ds, "label", f"{ds.source}: {what} goes up to {hi} but {task} labels are 0 and 1"
                                           + ("; use task = \"multiclass\"" if task == "binary" else ""))
            n_classes = hi + 1
        if kind == "text" and task in ("binary", "multiclass"):
            n_classes = info["n_distinct"]
            if task == "binary" and n_classes != 2:
                raise err(loc_ds, "label", f"{ds.source}: {what} holds {n_classes} distinct labels but a binary "
                                           f"model needs exactly 2; use task = \"multiclass\"")
        if kind == "text" and task == "autoencoder":
            raise err(loc_ds, "label", f"{ds.source}: {what} holds text; autoencoder labels are 0 (normal) and 1 "
                                       f"(anomaly)")
        if task in ("binary", "multiclass") and info.get("n_distinct") == 1:
            raise err(loc_ds, "label", f"{ds.source}: every sample has the same label; a classifier needs at "
                                       f"least two classes in the data")
        if task in ("binary", "multiclass") and info.get("n_classes"):
            n_classes = info["n_classes"]
        shape = list(info["sample_shape"])
        if m.model.input_shape is not None and list(m.model.input_shape) != shape:
            raise err(f"[models.{m.name}.model]", "input_shape",
                      f"got {list(m.model.input_shape)}, but each sample of {ds.source} has shape {shape}; set "
                      f"input_shape = {shape} or remove it (the default is the data's shape)")
    names = ds.class_names
    if names is not None:
        if task == "regression":
            raise err(loc_ds, "class_names", "applies to classifiers (binary, multiclass) and autoencoders; a "
                                             "regression model has no classes: remove it")
        if task in ("binary", "autoencoder") and len(names) != 2:
            raise err(loc_ds, "class_names", f"lists {len(names)} names but a {task} model has exactly 2 classes"
                                             + (" (normal, anomaly)" if task == "autoencoder" else ""))
        if n_classes is not None and len(names) < n_classes:
            raise err(loc_ds, "class_names", f"lists {len(names)} names but the labels of {ds.source} hold "
                                             f"{n_classes} classes; give one name per class")
    out = output_units(m.model.layers) if m.model.layers else None
    if out is None:
        return
    units, _ = out
    last = len(m.model.layers) - 1
    loc = f"[models.{m.name}.model] layers"
    if task == "binary":
        if units not in (1, 2):
            raise err(loc, None, f"the output layer has {units} units but a binary model has 1 (sigmoid, loss "
                                 f"binary_crossentropy) or 2 (softmax, loss sparse_categorical_crossentropy)")
        want = "binary_crossentropy" if units == 1 else "sparse_categorical_crossentropy"
        if m.training.loss != want:
            raise err(f"[models.{m.name}.training]", "loss",
                      f"is {m.training.loss!r} but the binary model's output layer has {units} unit(s), which "
                      f"trains with {want!r}; set loss = \"{want}\" or change the last layer")
    elif task == "multiclass":
        expected = len(names) if names else n_classes
        if units < 2:
            raise err(loc, None, f"the output layer has {units} unit(s) but a multiclass model needs one per class "
                                 f"(at least 2) with softmax")
        if names and len(names) < units:
            raise err(loc_ds, "class_names", f"lists {len(names)} names but the model's output layer has {units} "
                                             f"units (one per class); give one name per output")
        if expected is not None and units != expected:
            raise err(loc, None, f"the output layer has {units} units but the model has {expected} classes"
                                 f" ({'class_names' if names else 'labels in ' + ds.source}); set units = {expected} "
                                 f"in layers[{last}]")
    elif info is not None and task in ("regression", "autoencoder"):
        target = info["sample_shape"] if task == "autoencoder" else info.get("target_shape")
        if target and len(target) == 1 and len(info["sample_shape"]) == 1 and units != target[0]:
            what = "each sample's" if task == "autoencoder" else "each target's"
            raise err(loc, None, f"the output layer has {units} units but {what} size in {ds.source} is "
                                 f"{target[0]}; set units = {target[0]} in the last dense layer")


_INCLUDE = re.compile(rb'^\s*#\s*include\s*[<"]([^">]+)[">]', re.M)
SKETCH_HEADERS = {"tflm": "model_data.h", "aot": "tinyml_model.h"}
_SOURCE_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".h", ".hh", ".hpp", ".ino")


def _check_sketch(m: Model, t: _Table, root: Path) -> None:
    """The sketch's sources must include the header each of its runtimes generates."""
    fw = m.firmware
    if fw.sketch is None or not fw.boards:
        return
    runtimes = {rt for v in m.variants for rt in (v.runtime or fw.runtime)}
    included = set()
    src = fw.sketch / "src"
    try:
        for p in sorted(src.rglob("*")):
            if p.suffix.lower() in _SOURCE_SUFFIXES and p.is_file():
                included |= {Path(h.decode("utf-8", "replace")).name for h in _INCLUDE.findall(p.read_bytes())}
    except OSError as e:
        raise t.err(None, f"[firmware] sketch sources cannot be read: {e}") from None
    for rt in sorted(runtimes):
        header = SKETCH_HEADERS[rt]
        if header not in included:
            raise ConfigError(f"{t.file}: [models.{m.name}.firmware] key 'sketch': no file in "
                              f"{os.path.relpath(src, root)}/ has #include \"{header}\", which runtime "
                              f"{rt!r} generates; add the include to the sketch (see sketches/sine/src/main.cpp) "
                              f"or remove {rt!r} from runtime")


VARIANT_KEYS = ("quantization", "io", "converter", "representative_samples", "steps", "required",
                "runtime", "description", "per_channel")


def _load_variant(name: str, t: _Table) -> VariantSettings:
    _check_name(name, "variant", t.file, f"[{t.where}]")
    t.check_keys(VARIANT_KEYS)
    q = t.get("quantization", str, "float32", choices=QUANTIZATIONS)
    raw_steps = t.get("steps", list, [])
    if raw_steps:
        from .engine.compression import validate_steps

        try:
            steps = validate_steps(raw_steps, f"{t.file} [{t.where}] steps")
        except TinyMLError as e:
            raise ConfigError(str(e)) from None
        for i, s in enumerate(steps):
            if s["method"] == "distill":
                validate_layers(s["layers"], t, where=f"{t.where}] steps[{i}] (method 'distill')")
        if any(s["method"] == "qat" for s in steps) and q not in ("int8",):
            raise t.err("quantization", f"is {q!r} but the steps include 'qat': quantization-aware training "
                                        f"is followed by full-integer conversion; set quantization = \"int8\"")
    else:
        steps = ()
    default_io = "int8" if q == "int8" else "int16" if q == "int16x8" else "float32"
    io_choices = {"int8": ("int8", "uint8", "float32"), "int16x8": ("int16", "float32")}.get(q, ("float32",))
    io = t.get("io", str, default_io, choices=IO_TYPES)
    if io not in io_choices:
        raise t.err("io", f"got {io!r}, but a {q} model takes input/output as one of: {', '.join(io_choices)}")
    runtime = t.get("runtime", (str, list), None)
    return VariantSettings(
        name=name, quantization=q, io=io,
        converter=t.get("converter", str, "keras", choices=CONVERTERS),
        representative_samples=t.get("representative_samples", int, 100, check=_between(1, 1_000_000)),
        steps=tuple(steps), required=t.get("required", bool, False),
        runtime=_runtimes(runtime, t) if runtime is not None else None,
        description=t.get("description", str, "", check=lambda v: None if len(v) <= 1000 else
                          "must be at most 1000 characters"),
        per_channel=_per_channel(t, q, steps),
    )


def _per_channel(t: _Table, q: str, steps) -> bool:
    """Full-integer PTQ quantizes weights per output channel (TFLite's default) or, when false, per tensor."""
    value = t.get("per_channel", bool, True)
    if not value and q not in ("int8", "int16x8"):
        raise t.err("per_channel", f"is false, but per-tensor weights apply to full-integer quantization only and "
                                   f"this variant's quantization is {q!r}; remove the key or set quantization = "
                                   f"\"int8\"")
    if not value and any(s["method"] == "qat" for s in steps):
        raise t.err("per_channel", "is false, but after quantization-aware training the weights are quantized the way "
                                   "tfmot trained them (per channel); remove the key or the qat step")
    return value


def _runtimes(value, t: _Table) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not values:
        raise t.err("runtime", f"is an empty list; give one or more of: {', '.join(RUNTIMES)} (e.g. runtime = "
                               f"\"tflm\"), or remove the key for the default")
    for v in values:
        if v not in RUNTIMES:
            raise t.err("runtime", f"got {v!r}; allowed: {', '.join(RUNTIMES)}{_closest(str(v), RUNTIMES)}")
    return tuple(dict.fromkeys(values))


FIRMWARE_KEYS = ("sketch", "boards", "runtime", "arena_margin", "fail_if_too_big", "envs", "tflm")
TFLM_ENV_VAR = "TINYML_TFLM_DIR"


def _load_firmware(t: _Table, root: Path) -> FirmwareSettings:
    t.check_keys(FIRMWARE_KEYS)
    sketch = t.get("sketch", str, None)
    sketch_path = None
    if sketch is not None:
        sketch_path = (root / sketch).resolve()
        if not (sketch_path / "src").is_dir():
            raise t.err("sketch", f"{sketch!r} is not a PlatformIO sketch folder: expected {sketch_path / 'src'}")
    boards = t.get("boards", list, [])
    for b in boards:
        if not isinstance(b, str):
            raise t.err("boards", f"must be a list of PlatformIO board ids (strings), got {_kind(b)} {b!r} in "
                                  f"{boards!r}")
        _check_name(b, "board", t.file, f"[{t.where}] key 'boards'")
    envs = _load_envs(t, sketch_path, root)
    if (boards or envs) and sketch_path is None:
        raise t.err("sketch", "is required when boards are listed: the PlatformIO sketch to build for them")
    all_boards = tuple(dict.fromkeys(list(boards) + [b for b, _ in envs]))
    return FirmwareSettings(
        sketch=sketch_path, boards=all_boards,
        runtime=_runtimes(t.get("runtime", (str, list), "tflm"), t),
        arena_margin=t.get("arena_margin", float, 0.10, check=_frac(0.0, 4.0)),
        fail_if_too_big=t.get("fail_if_too_big", bool, False),
        envs=envs,
        tflm=_load_tflm(t, sketch_path, root),
    )


def _load_envs(t: _Table, sketch: Path | None, root: Path) -> tuple[tuple[str, str], ...]:
    """`envs`: environments of the sketch's own platformio.ini to build as they are.

    A list names environments (each row's board is the environment's `board`); a table maps
    board id -> environment. Every environment must exist in the sketch's platformio.ini.
    """
    raw = t.raw.get("envs")
    if raw is None:
        return ()
    example = 'envs = ["nano33ble"] (environments of the sketch\'s platformio.ini) or envs = { nano33ble = "nano33ble" }'
    if isinstance(raw, list):
        if not all(isinstance(e, str) for e in raw):
            raise t.err("envs", f"must list environment names (strings), got {raw!r}; e.g. {example}")
        pairs = [(None, e) for e in raw]
    elif isinstance(raw, dict):
        if not all(isinstance(e, str) for e in raw.values()):
            raise t.err("envs", f"must map board ids to environment names (strings), got {raw!r}; e.g. {example}")
        pairs = list(raw.items())
    else:
        raise t.err("envs", f"must be a list or a table, got {_kind(raw)} {raw!r}; e.g. {example}")
    if not pairs:
        return ()
    if sketch is None:
        raise t.err("sketch", "is required with envs: the PlatformIO sketch whose platformio.ini holds them")
    ini = sketch / "platformio.ini"
    shown = os.path.relpath(ini, root)
    if not ini.is_file():
        raise t.err("envs", f"{shown} does not exist, so the sketch has no environments to build; remove envs or "
                            f"add the file")
    from .engine.errors import TinyMLError as _TE
    from .engine.pio_ini import read_envs

    try:
        have = read_envs(ini)
    except _TE as e:
        raise t.err("envs", str(e)) from None
    out, seen_boards = [], {}
    for board, env in pairs:
        if env not in have:
            listed = ", ".join(have) if have else "none"
            raise t.err("envs", f"environment {env!r} is not in {shown}, which has: {listed}{_closest(env, have)}")
        env_board = have[env].get("board", "").strip()
        if board is None:
            if not env_board or "${" in env_board:
                raise t.err("envs", f"environment {env!r} in {shown} sets no plain board = <id>; map it to a board "
                                    f"id instead: envs = {{ <board> = \"{env}\" }}")
            board = env_board
        _check_name(board, "board", t.file, f"[{t.where}] key 'envs' (board of environment {env!r})")
        if board in seen_boards:
            raise t.err("envs", f"board {board!r} is built by two environments, {seen_boards[board]!r} and {env!r}; "
                                f"map each board to one environment with envs = {{ <board> = \"<env>\" }}")
        seen_boards[board] = env
        out.append((board, env))
    return tuple(out)


def _load_tflm(t: _Table, sketch: Path | None, root: Path) -> TflmSettings:
    """`tflm = { library, kernels, reference_kernels }`, else $TINYML_TFLM_DIR, else the sketch's .pio/libdeps."""
    from .engine import tflm_link
    from .engine.errors import TinyMLError as _TE

    raw = t.raw.get("tflm", {})
    if not isinstance(raw, dict):
        raise t.err("tflm", f"must be a table like {{ library = \"path/to/Arduino_TensorFlowLite\", kernels = "
                            f"\"cmsis_nn\" }}, got {_kind(raw)} {raw!r}")
    tt = t.sub("tflm")
    tt.check_keys(("library", "kernels", "reference_kernels"))
    lib = tt.get("library", (str, bool), None)
    if lib is True:
        raise tt.err("library", "must be a path to a TFLite Micro tree, or false to never link one")
    ref = tt.get("reference_kernels", str, None)
    ref_path = (root / Path(ref).expanduser()) if ref else None
    kernels = tt.get("kernels", str, None, choices=tflm_link.KERNEL_SETS)
    library, source, where = None, "", ""
    if isinstance(lib, str):
        library, source = root / Path(lib).expanduser(), "tinyml.toml"
        where = f"[{tt.where}] key 'library': "
    elif lib is None and os.environ.get(TFLM_ENV_VAR, "").strip():
        library, source = Path(os.environ[TFLM_ENV_VAR].strip()).expanduser(), TFLM_ENV_VAR
        where = f"environment variable {TFLM_ENV_VAR}={os.environ[TFLM_ENV_VAR].strip()}: "
    elif lib is None and sketch is not None:
        for cand in sorted(sketch.glob(".pio/libdeps/*/*")):
            if cand.is_dir() and tflm_link.looks_like_tflm(cand):
                library, source = cand, f"{os.path.relpath(cand, root)} (PlatformIO's copy)"
                where = f"{os.path.relpath(cand, root)}: "
                break
    if library is None:
        return TflmSettings(library=None, source="", kernels=kernels or "cmsis_nn", reference_kernels=ref_path)
    try:
        tree = tflm_link.find_tree(library, reference_kernels=ref_path)
    except _TE as e:
        raise ConfigError(f"{t.file}: [{t.where}] {where}{e}") from None
    if kernels is None:
        kernels = "cmsis_nn" if "cmsis_nn" in tree.kernel_sets else "reference"
    if kernels not in tree.kernel_sets:
        raise tt.err("kernels", f"is {kernels!r}, which the {tree.describe()} cannot build: {tree.missing[kernels]}")
    return TflmSettings(library=tree.root, source=source, kernels=kernels, reference_kernels=tree.reference_kernels)
