"""tinyml.toml, version 1: load, validate once, and hand out small frozen settings objects.

Every error names the file, the table path and the key, says what was given and what is
allowed, and suggests the closest key for a typo. Pure Python: this runs on every `doit`.
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .util import TinyMLError

try:  # Python 3.11 ships tomllib; tomli is the same parser for older interpreters
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover
    import tomli as _toml


class ConfigError(TinyMLError):
    """A mistake in tinyml.toml."""


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
    "sparse_categorical_crossentropy": "multiclass", "categorical_crossentropy": "multiclass",
}
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


# --------------------------------------------------------------------------- settings objects
@dataclass(frozen=True)
class DatasetSettings:
    source: str                 # generator name, path to .csv/.npz (relative to tinyml.toml), or "pkg.mod:func"
    kind: str                   # "generator" | "csv" | "npz" | "callable"
    params: dict
    label: str | None
    features: tuple[str, ...] | None
    test_split: float
    normalize: str
    class_names: tuple[str, ...] | None


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


@dataclass(frozen=True)
class FirmwareSettings:
    sketch: Path | None
    boards: tuple[str, ...]
    runtime: tuple[str, ...] = ("tflm",)
    arena_margin: float = 0.10
    fail_if_too_big: bool = False


@dataclass(frozen=True)
class AnomalySettings:
    k: float = 3.0
    mode: str = "pointwise"
    vote_window: int = 10


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


@dataclass(frozen=True)
class ReportSettings:
    headroom: float = 0.10
    max_accuracy_drop: float | None = None


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
            raise self.err(key, f"must be {allowed}, got {_kind(value)} {value!r}")
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


def _non_negative(v):
    return None if v >= 0 else "must be 0 or more"


_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


# --------------------------------------------------------------------------- loading
PROJECT_KEYS = ("project", "models", "boards", "report")


def load(path: str | Path = "tinyml.toml") -> Project:
    """Read and validate tinyml.toml. Raises ConfigError with an actionable message."""
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
    root = path.parent
    top = _Table(raw, "", file)
    for key in raw:
        if key not in PROJECT_KEYS:
            raise ConfigError(f"{file}: unknown top-level table [{key}]{_closest(key, PROJECT_KEYS)}. "
                              f"Allowed: {', '.join('[' + k + ']' for k in PROJECT_KEYS)}")

    proj = top.sub("project")
    proj.where = "project"
    proj.check_keys(("name", "build_dir", "seed"))
    name = proj.get("name", str, root.name)
    build_dir = root / proj.get("build_dir", str, "build")
    seed = proj.get("seed", int, 42)

    rep = top.sub("report")
    rep.where = "report"
    rep.check_keys(("headroom", "max_accuracy_drop"))
    report = ReportSettings(
        headroom=rep.get("headroom", float, 0.10, check=_frac(0.0, 0.9)),
        max_accuracy_drop=rep.get("max_accuracy_drop", float, None, check=_non_negative),
    )

    board_tables = raw.get("boards", {})
    if not isinstance(board_tables, dict):
        raise ConfigError(f"{file}: [boards] must be a table of [boards.<platformio id>] tables")

    models_raw = raw.get("models")
    if not isinstance(models_raw, dict) or not models_raw:
        raise ConfigError(f"{file}: needs at least one [models.<name>] table (see the README's example)")
    models = tuple(_load_model(n, _Table(t, f"models.{n}", file), root) for n, t in models_raw.items())

    # Boards: every board a model uses, resolved once against the catalogue with overrides.
    from . import boards as _boards

    used = sorted({b for m in models for b in m.firmware.boards} | set(board_tables))
    resolved = {}
    for bid in used:
        overrides = board_tables.get(bid)
        if overrides is not None and not isinstance(overrides, dict):
            raise ConfigError(f"{file}: [boards.{bid}] must be a table")
        try:
            resolved[bid] = _boards.resolve(bid, overrides, file)
        except TinyMLError as e:
            users = [m.name for m in models if bid in m.firmware.boards]
            where = f" (used in [models.{users[0]}.firmware] boards)" if users else ""
            raise ConfigError(f"{e}{where}") from None
    return Project(path=path, root=root, name=name, build_dir=build_dir, seed=seed, models=models,
                   boards=resolved, report=report)


MODEL_KEYS = ("task", "dataset", "model", "training", "variants", "firmware", "anomaly")


def _load_model(name: str, t: _Table, root: Path) -> Model:
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise t.err(None, "model names may use letters, digits, '_' and '-' only (they become folder names)")
    t.check_keys(MODEL_KEYS)
    dataset = _load_dataset(t.sub("dataset", required=True), root)
    model = _load_arch(t.sub("model", required=True))
    tr = t.sub("training")
    tr.check_keys(("epochs", "batch_size", "optimizer", "learning_rate", "loss", "validation_split",
                   "early_stopping"))
    loss = tr.get("loss", str, None)
    task = t.get("task", str, None, choices=TASKS)
    if task is None:
        task = LOSS_TASK.get(loss) if loss else _generator_task(dataset)
        if task is None:
            raise t.err("task", f"is needed: cannot tell from the dataset or loss what kind of model this is. "
                                f"Set task = one of: {', '.join(TASKS)}")
    es = tr.raw.get("early_stopping")
    early = None
    if es is not None and es is not False:
        est = tr.sub("early_stopping") if isinstance(es, dict) else _Table({}, tr.where + ".early_stopping", t.file)
        est.check_keys(("patience", "monitor", "min_delta", "restore_best_weights"))
        early = {"patience": est.get("patience", int, 10, check=_positive),
                 "monitor": est.get("monitor", str, "val_loss"),
                 "min_delta": est.get("min_delta", float, 0.0, check=_non_negative),
                 "restore_best_weights": est.get("restore_best_weights", bool, True)}
    training = TrainingSettings(
        epochs=tr.get("epochs", int, 200, check=_positive),
        batch_size=tr.get("batch_size", int, 32, check=_positive),
        optimizer=tr.get("optimizer", str, "adam", choices=OPTIMIZERS),
        learning_rate=tr.get("learning_rate", float, 0.001, check=_positive),
        loss=loss or DEFAULT_LOSS[task],
        validation_split=tr.get("validation_split", float, 0.1, check=_frac(0.0, 0.9)),
        early_stopping=early,
    )
    fw = _load_firmware(t.sub("firmware"), root)
    variants_raw = t.raw.get("variants")
    if not isinstance(variants_raw, dict) or not variants_raw:
        raise t.err("variants", "needs at least one [models.%s.variants.<name>] table, e.g. float32 and int8" % name)
    variants = tuple(_load_variant(v, t.sub("variants").sub(v)) for v in variants_raw)
    an = t.sub("anomaly")
    an.check_keys(("k", "mode", "vote_window"))
    anomaly = AnomalySettings(k=an.get("k", float, 3.0, check=_positive),
                              mode=an.get("mode", str, "pointwise", choices=("pointwise", "window")),
                              vote_window=an.get("vote_window", int, 10, check=_positive))
    return Model(name=name, task=task, dataset=dataset, model=model, training=training,
                 variants=variants, firmware=fw, anomaly=anomaly)


def _generator_task(ds: DatasetSettings) -> str | None:
    return {"sine": "regression", "tapping": "autoencoder", "waveforms": "multiclass",
            "sklearn:breast_cancer": "binary", "sklearn:digits": "multiclass",
            "sklearn:iris": "multiclass", "sklearn:wine": "multiclass"}.get(ds.source)


def _load_dataset(t: _Table, root: Path) -> DatasetSettings:
    t.check_keys(("source", "params", "label", "features", "test_split", "normalize", "class_names"))
    source = t.get("source", str, required=True)
    if source.endswith((".csv", ".npz")):
        kind = source.rsplit(".", 1)[1]
        p = (root / source).resolve()
        if not p.exists():
            raise t.err("source", f"file {source!r} not found (looked in {p.parent})")
        source = os.path.relpath(p, root)   # relative: settings hashes survive moving the project
    elif source in GENERATORS:
        kind = "generator"
    elif _CALLABLE.match(source):
        kind = "callable"
    else:
        raise t.err("source", f"got {source!r}; allowed: a built-in generator ({', '.join(GENERATORS)})"
                              f"{_closest(source, GENERATORS)}, a path to a .csv or .npz file, "
                              f"or a callable 'package.module:function'")
    label = t.get("label", str, None)
    if kind == "csv" and label is None:
        raise t.err("label", "is required for a CSV source: the name of the column holding the target")
    params = t.get("params", dict, {})
    features = t.get("features", list, None)
    names = t.get("class_names", list, None)
    return DatasetSettings(source=source, kind=kind, params=dict(params), label=label,
                           features=tuple(features) if features else None,
                           test_split=t.get("test_split", float, 0.2, check=_frac(0.0, 0.9, lo_open=True)),
                           normalize=t.get("normalize", str, "none", choices=NORMALIZE),
                           class_names=tuple(map(str, names)) if names else None)


def _load_arch(t: _Table) -> ModelSettings:
    t.check_keys(("layers", "builder", "input_shape"))
    builder = t.get("builder", str, None, check=lambda v: None if _CALLABLE.match(v) else
                    "must be 'package.module:function' returning a tf_keras model")
    layers = t.get("layers", list, None)
    if (layers is None) == (builder is None):
        raise t.err(None, "give exactly one of 'layers' (a list of layer tables) or 'builder' ('pkg.mod:function')")
    shape = t.get("input_shape", list, None)
    if shape is not None and not all(isinstance(d, int) and d > 0 for d in shape):
        raise t.err("input_shape", f"must be a list of positive integers, got {shape!r}")
    return ModelSettings(layers=validate_layers(layers, t) if layers else (), builder=builder,
                         input_shape=tuple(shape) if shape else None)


def validate_layers(layers: list, t: _Table) -> tuple[dict, ...]:
    """Check a layer list (also used for distillation students). Returns plain dict copies."""
    out = []
    for i, layer in enumerate(layers):
        lt = _Table(layer, f"{t.where}] layers[{i}", t.file)
        ltype = lt.get("type", str, required=True, choices=tuple(LAYER_KEYS))
        allowed = ("type",) + LAYER_KEYS[ltype]
        for key in layer:
            if key not in allowed:
                raise lt.err(key, f"is not a setting of a {ltype} layer{_closest(key, allowed)}. "
                                  f"Allowed: {', '.join(allowed)}")
        for key in LAYER_REQUIRED.get(ltype, ()):
            lt.get(key, (int, float, str, list), required=True)
        if "activation" in layer:
            lt.get("activation", str, choices=ACTIVATIONS)
        out.append(dict(layer))
    return tuple(out)


VARIANT_KEYS = ("quantization", "io", "converter", "representative_samples", "steps", "required",
                "runtime", "description")


def _load_variant(name: str, t: _Table) -> VariantSettings:
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise t.err(None, "variant names may use letters, digits, '_' and '-' only")
    t.check_keys(VARIANT_KEYS)
    q = t.get("quantization", str, "float32", choices=QUANTIZATIONS)
    raw_steps = t.get("steps", list, [])
    if raw_steps:
        from . import compress

        steps = compress.validate_steps(raw_steps, f"{t.file} [{t.where}] steps")
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
        representative_samples=t.get("representative_samples", int, 100, check=_positive),
        steps=tuple(steps), required=t.get("required", bool, False),
        runtime=_runtimes(runtime, t) if runtime is not None else None,
        description=t.get("description", str, ""),
    )


def _runtimes(value, t: _Table) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    for v in values:
        if v not in RUNTIMES:
            raise t.err("runtime", f"got {v!r}; allowed: {', '.join(RUNTIMES)}{_closest(str(v), RUNTIMES)}")
    return tuple(dict.fromkeys(values))


def _load_firmware(t: _Table, root: Path) -> FirmwareSettings:
    t.check_keys(("sketch", "boards", "runtime", "arena_margin", "fail_if_too_big"))
    sketch = t.get("sketch", str, None)
    sketch_path = None
    if sketch is not None:
        sketch_path = (root / sketch).resolve()
        if not (sketch_path / "src").is_dir():
            raise t.err("sketch", f"{sketch!r} is not a PlatformIO sketch folder: expected {sketch_path / 'src'}")
    boards = t.get("boards", list, [])
    if not all(isinstance(b, str) for b in boards):
        raise t.err("boards", f"must be a list of PlatformIO board ids, got {boards!r}")
    if boards and sketch_path is None:
        raise t.err("sketch", "is required when boards are listed: the PlatformIO sketch to build for them")
    return FirmwareSettings(
        sketch=sketch_path, boards=tuple(dict.fromkeys(boards)),
        runtime=_runtimes(t.get("runtime", (str, list), "tflm"), t),
        arena_margin=t.get("arena_margin", float, 0.10, check=_frac(0.0, 4.0)),
        fail_if_too_big=t.get("fail_if_too_big", bool, False),
    )
