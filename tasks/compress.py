"""Compress stage: trained.keras -> compressed.keras + compress.json, by a variant's ordered `steps`.

The catalogue (the TinyML literature's usual chain), in the only order that makes sense:

    distill -> remove -> prune -> cluster -> qat

* ``distill``  train a smaller student from the teacher's soft targets            (tasks/distill.py)
* ``remove``   structured removal of the least important Dense units / conv filters (tasks/structured.py)
* ``prune``    magnitude pruning (tfmot), polynomial or constant schedule, optional 2:4 structure
* ``cluster``  weight clustering (tfmot), sparsity-preserving after ``prune``
* ``qat``      quantization-aware training (tfmot), pruning/cluster-preserving after those steps

This module's top level is pure Python (no numpy, TensorFlow or tfmot): ``validate_steps`` runs
when tinyml.toml is loaded, on the no-op path. The work happens inside ``run`` and ``load_model``.
"""
from __future__ import annotations

import difflib
import gzip
import math
import re
from pathlib import Path
from typing import Any, Callable

from .util import normalise_keras_zip, TinyMLError, atomic_path, import_tensorflow, seed_everything, write_json

# method -> {key: default}. None means "computed at run time" (documented in docs/compression.md).
METHODS: dict[str, dict[str, Any]] = {
    "distill": {"layers": None, "temperature": 4.0, "alpha": 0.1, "epochs": 10, "learning_rate": 1e-3,
                "batch_size": 32},
    "remove": {"fraction": 0.5, "norm": "l1", "epochs": 2, "learning_rate": 1e-3, "batch_size": 32},
    "prune": {"schedule": "polynomial", "initial_sparsity": 0.0, "final_sparsity": 0.5, "sparsity": 0.5,
              "begin_step": 0, "end_step": None, "frequency": None, "structure": "unstructured",
              "epochs": 4, "learning_rate": 1e-3, "batch_size": 32},
    "cluster": {"clusters": 16, "init": "kmeans++", "epochs": 2, "learning_rate": 1e-4, "batch_size": 32},
    "qat": {"epochs": 2, "learning_rate": 1e-4, "batch_size": 32},
}
ORDER = ("distill", "remove", "prune", "cluster", "qat")
SCHEDULES = ("polynomial", "constant")
STRUCTURES = ("unstructured", "2:4")
CLUSTER_INITS = ("kmeans++", "linear", "density", "random")
NORMS = ("l1", "l2")
_SCHEDULE_ONLY = {"polynomial": ("initial_sparsity", "final_sparsity"), "constant": ("sparsity",)}
# stated upper bounds (a typo such as epochs = 2**62 is refused at load, not run for ever)
MAX_EPOCHS = 100_000
MAX_BATCH = 1_000_000
MAX_CLUSTERS = 256           # int8 weights take at most 256 distinct values
MAX_STEPS = 10**9            # begin_step, end_step, frequency (optimizer steps)



# --------------------------------------------------------------------------------------------
# validation (pure Python)


def _closest(word: str, choices) -> str:
    m = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.5)
    return f" (did you mean {m[0]!r}?)" if m else ""


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_steps(steps: list, where: str) -> tuple[dict, ...]:
    """Check a variant's `steps` list and return it normalised (every default filled in).

    `where` names the place for messages, e.g. "tinyml.toml [models.cancer.variants.v1] steps".
    Raises TinyMLError naming the step, the key, what was given and what is allowed.
    """
    base = where if where.rstrip().endswith("steps") else f"{where} steps"
    if not isinstance(steps, (list, tuple)):
        raise TinyMLError(f"{base}: must be a list of tables like "
                          f"[{{ method = \"prune\", final_sparsity = 0.5 }}], got {type(steps).__name__}")
    out: list[dict] = []
    last_rank = -1
    seen: dict[str, int] = {}
    for i, step in enumerate(steps):
        loc = f"{base}[{i}]"
        if not isinstance(step, dict):
            raise TinyMLError(f"{loc}: each step must be a table like {{ method = \"prune\", ... }}, "
                              f"got {type(step).__name__} {step!r}")
        method = step.get("method")
        if method is None:
            raise TinyMLError(f"{loc}: missing 'method'; choose one of: {', '.join(ORDER)}")
        if method not in METHODS:
            raise TinyMLError(f"{loc}: unknown method {method!r}{_closest(method, METHODS)}; "
                              f"valid methods: {', '.join(ORDER)}")
        loc = f"{loc} (method {method!r})"
        allowed = METHODS[method]
        for key in step:
            if key != "method" and key not in allowed:
                raise TinyMLError(f"{loc}: unknown key {key!r}{_closest(key, allowed)}; "
                                  f"allowed keys for {method}: {', '.join(sorted(allowed))}")
        rank = ORDER.index(method)
        if method in seen:
            raise TinyMLError(f"{loc}: {method!r} already appears at steps[{seen[method]}]; each method may "
                              f"appear at most once, in the order {' -> '.join(ORDER)}")
        if rank < last_rank:
            prev = ORDER[last_rank]
            raise TinyMLError(f"{loc}: {method!r} cannot come after {prev!r}; the allowed order is "
                              f"{' -> '.join(ORDER)} (each at most once): move {method!r} before {prev!r}")
        seen[method] = i
        last_rank = rank
        norm = _normalise_step(method, step, loc, pruned="prune" in seen)
        out.append(norm)
    return tuple(out)


def _normalise_step(method: str, step: dict, loc: str, pruned: bool) -> dict:
    s = {k: v for k, v in METHODS[method].items()}
    s.update({k: v for k, v in step.items() if k != "method"})

    def bad(key, want):
        raise TinyMLError(f"{loc}: {key} must be {want}, got {s[key]!r}")

    def number(key, lo=None, hi=None, lo_open=False, hi_open=False, want=None):
        v = s[key]
        ok = _is_number(v) and math.isfinite(v)
        if ok and lo is not None:
            ok = v > lo if lo_open else v >= lo
        if ok and hi is not None:
            ok = v < hi if hi_open else v <= hi
        if not ok:
            bad(key, want)
        s[key] = float(v)

    def integer(key, lo, want=None, hi=MAX_STEPS):
        if not _is_int(s[key]) or not lo <= s[key] <= hi:
            bad(key, want or f"an integer >= {lo} (at most {hi})")

    def choice(key, choices):
        if s[key] not in choices:
            raise TinyMLError(f"{loc}: {key} must be one of {', '.join(map(repr, choices))}, got {s[key]!r}"
                              f"{_closest(s[key], choices)}")

    min_epochs = 0 if method in ("cluster", "remove") else 1
    integer("epochs", min_epochs, hi=MAX_EPOCHS)
    integer("batch_size", 1, hi=MAX_BATCH)
    number("learning_rate", 0, 10, lo_open=True, want="a number in (0, 10]")

    if method == "prune":
        choice("schedule", SCHEDULES)
        choice("structure", STRUCTURES)
        for other, keys in _SCHEDULE_ONLY.items():
            if other != s["schedule"]:
                for k in keys:
                    if k in step:
                        raise TinyMLError(f"{loc}: {k} applies to schedule = {other!r}, but schedule is "
                                          f"{s['schedule']!r}; use "
                                          f"{' and '.join(_SCHEDULE_ONLY[s['schedule']])} instead")
                    s.pop(k)
        rng = "a number in [0, 1)"
        if s["structure"] == "2:4":
            for k in ("initial_sparsity", "final_sparsity", "sparsity"):
                if k in step:
                    raise TinyMLError(f"{loc}: {k} does not apply with structure = \"2:4\" (2:4 sparsity is "
                                      f"always 50%: at most 2 non-zeros in every group of 4); remove {k}")
                s.pop(k, None)
        elif s["schedule"] == "polynomial":
            number("initial_sparsity", 0, 1, hi_open=True, want=rng)
            number("final_sparsity", 0, 1, hi_open=True, want=rng)
            if s["final_sparsity"] < s["initial_sparsity"]:
                raise TinyMLError(f"{loc}: final_sparsity ({s['final_sparsity']}) must be >= initial_sparsity "
                                  f"({s['initial_sparsity']})")
        else:
            number("sparsity", 0, 1, hi_open=True, want=rng)
        integer("begin_step", 0)
        if s["end_step"] is not None:
            integer("end_step", 1)
            if s["end_step"] <= s["begin_step"]:
                bad("end_step", f"greater than begin_step ({s['begin_step']})")
        if s["frequency"] is not None:
            integer("frequency", 1)
    elif method == "cluster":
        lo = 3 if pruned else 2
        integer("clusters", lo, hi=MAX_CLUSTERS, want=f"an integer >= {lo} (at most {MAX_CLUSTERS})" + (
            " (after prune, clustering preserves the zeros as one cluster of its own, so it needs at least 3)"
            if pruned else ""))
        choice("init", CLUSTER_INITS)
    elif method == "remove":
        number("fraction", 0, 1, lo_open=True, hi_open=True, want="a number in (0, 1): the share of units/"
                                                                  "filters removed from each layer")
        choice("norm", NORMS)
    elif method == "distill":
        if s["layers"] is None:
            raise TinyMLError(f"{loc}: needs layers = [...], the student's layer list (same format as "
                              f"[models.<name>] layers, e.g. [{{type = \"dense\", units = 8, "
                              f"activation = \"relu\"}}, ...])")
        if not isinstance(s["layers"], list) or not s["layers"] or not all(
                isinstance(x, dict) and isinstance(x.get("type"), str) for x in s["layers"]):
            bad("layers", "a non-empty list of tables, each with a 'type' (e.g. {type = \"dense\", units = 8})")
        s["layers"] = [dict(x) for x in s["layers"]]
        number("temperature", 0, 1000, lo_open=True, want="a number in (0, 1000]")
        number("alpha", 0, 1, want="a number in [0, 1] (weight of the hard-label loss)")
    return {"method": method, **s}


# --------------------------------------------------------------------------------------------
# loading and saving


def load_model(path):
    """Load any model this stage (or train) writes: plain .keras zips, and QAT models (HDF5 bytes).

    Loading happens inside tfmot's quantize_scope so QuantizeWrapper layers deserialize.
    """
    _, keras = import_tensorflow()
    import tensorflow_model_optimization as tfmot

    path = Path(path)
    if not path.exists():
        raise TinyMLError(f"{path}: model file not found; run the stage that writes it first")
    with tfmot.quantization.keras.quantize_scope(_custom_objects()):
        return keras.models.load_model(path, compile=False)


def _custom_objects() -> dict:
    """Objects a saved QAT model may reference beyond tfmot's quantize_scope (Conv1D's QuantizeConfig)."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as reg)

    return {"Default8BitQuantizeConfig": reg.Default8BitQuantizeConfig}


def _is_quantized(model) -> bool:
    return any(type(l).__name__ in ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer") for l in model.layers)


def save_model(model, target: Path) -> str:
    """Save deterministically and atomically. Returns the format: "keras" (zip) or "h5".

    tfmot's quantize wrappers do not reload from Keras 2's zip format (QuantizeLayer variables are
    re-created under other names), so a QAT model is written as HDF5 bytes; `load_model` reads both.
    """
    _, keras = import_tensorflow()
    target = Path(target)
    if _is_quantized(model):
        with atomic_path(target, suffix=".h5") as tmp:
            model.save(tmp, save_format="h5", include_optimizer=False)
        return "h5"
    clean = keras.models.clone_model(model)  # uncompiled copy: no optimizer state in the file
    clean.set_weights(model.get_weights())
    with atomic_path(target, suffix=".keras") as tmp:
        clean.save(tmp)
        tmp.write_bytes(normalise_keras_zip(tmp.read_bytes()))
    return "keras"


# --------------------------------------------------------------------------------------------
# measuring


_KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")


def kernel_stats(model) -> dict:
    """Per weight kernel, keyed "<layer>/<kernel>": shape, size, fraction of zeros, distinct values."""
    import numpy as np

    out = {}
    for layer in model.layers:
        for w in layer.weights:
            short = w.name.split("/")[-1].split(":")[0]
            if short not in _KERNEL_NAMES:
                continue
            a = w.numpy()
            out[f"{layer.name}/{short}"] = {"shape": list(a.shape), "size": int(a.size),
                                            "sparsity": float(np.mean(a == 0)), "distinct": int(np.unique(a).size)}
    return out


def _file_sizes(data: bytes) -> dict:
    return {"keras_bytes": len(data), "keras_gzip_bytes": len(gzip.compress(data, compresslevel=9, mtime=0))}


def _measure(model, tmpdir: Path, tag: str) -> dict:
    from .structured import count_macs, count_params

    p = Path(tmpdir) / f"{tag}.keras"
    fmt = save_model(model, p)
    rec = {"params": count_params(model), "macs": int(count_macs(model)), "format": fmt}
    rec.update(_file_sizes(p.read_bytes()))
    return rec


# --------------------------------------------------------------------------------------------
# the stage


class Context:
    """What every step needs: data, loss, optimizer factory, builder, where to name errors."""

    def __init__(self, data: dict, loss: str, optimizer: str, seed: int, build_layers, label: str):
        self.data = data
        self.loss = loss
        self.optimizer_name = optimizer
        self.seed = seed
        self.build_layers = build_layers
        self.label = label
        self.pruned = False
        self.clustered = False

    def optimizer(self, learning_rate: float):
        _, keras = import_tensorflow()
        try:
            from .train import make_optimizer

            return make_optimizer(self.optimizer_name, learning_rate)
        except (ImportError, KeyError, AttributeError):
            opt = keras.optimizers.get(self.optimizer_name)
            opt.learning_rate = learning_rate
            return opt

    def fit(self, model, step: dict, callbacks=None, y=None, loss=None):
        model.compile(optimizer=self.optimizer(step["learning_rate"]), loss=loss or self.loss)
        if step["epochs"] > 0:
            model.fit(self.data["x_train"], self.data["y_train"] if y is None else y, epochs=step["epochs"],
                      batch_size=step["batch_size"], shuffle=True, verbose=0, callbacks=callbacks or [])
        return model

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(len(self.data["x_train"]) / batch_size)

    def layer_error(self, method: str, layer, why: str, fix: str) -> TinyMLError:
        return TinyMLError(f"{self.label} ({method}): layer {layer.name!r} ({type(layer).__name__}) {why}; {fix}")


def _layers(model):
    return [l for l in model.layers if type(l).__name__ != "InputLayer"]


def _check_graph(model, ctx: Context, method: str):
    _, keras = import_tensorflow()
    for l in _layers(model):
        if isinstance(l, keras.Model):
            raise ctx.layer_error(method, l, "is a nested model", "flatten it into one Sequential/functional model")


def apply_prune(model, step: dict, ctx: Context):
    _, keras = import_tensorflow()
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    sk = tfmot.sparsity.keras
    _check_graph(model, ctx, "prune")
    m_by_n = step["structure"] == "2:4"
    for l in _layers(model):
        if isinstance(l, sk.PrunableLayer) or hasattr(l, "get_prunable_weights"):
            continue
        if not prune_registry.PruneRegistry.supports(l):
            raise ctx.layer_error("prune", l, "cannot be pruned by tfmot", "remove this layer or drop the prune step")
        if m_by_n:
            kernels = [w for w in l.weights if w.name.split("/")[-1].split(":")[0] in _KERNEL_NAMES]
            bad = [w for w in kernels if len(w.shape) not in (2, 4)]
            if bad:
                raise ctx.layer_error("prune", l, f"has a rank-{len(bad[0].shape)} kernel and tfmot's 2:4 "
                                                 f"sparsity supports only Dense and Conv2D (rank 2 and 4) kernels",
                                      "use structure = \"unstructured\" for this model, or Conv2D layers")
    n_steps = ctx.steps_per_epoch(step["batch_size"]) * step["epochs"]
    begin = step["begin_step"]
    end = step["end_step"] if step["end_step"] is not None else n_steps
    if end > n_steps or end <= begin:
        raise TinyMLError(f"{ctx.label} (prune): the schedule runs from begin_step {begin} to end_step {end}, "
                          f"but training has only {n_steps} steps (epochs {step['epochs']} x "
                          f"{ctx.steps_per_epoch(step['batch_size'])} batches); raise epochs or lower the steps")
    span = end - begin
    freq = step["frequency"] or max(1, min(100, span // 10))
    end = begin + (span // freq) * freq  # the mask is updated on the last step of the schedule
    if m_by_n:  # tfmot sets 2:4 masks on the first step; the schedule only has to be valid
        sched = sk.ConstantSparsity(0.5, begin, end_step=end, frequency=freq)
    elif step["schedule"] == "polynomial":
        sched = sk.PolynomialDecay(step["initial_sparsity"], step["final_sparsity"], begin, end, frequency=freq)
    else:
        sched = sk.ConstantSparsity(step["sparsity"], begin, end_step=end, frequency=freq)
    kwargs = {"pruning_schedule": sched}
    if m_by_n:
        kwargs["sparsity_m_by_n"] = (2, 4)
    try:
        pruned = sk.prune_low_magnitude(model, **kwargs)
    except ValueError as e:
        raise TinyMLError(f"{ctx.label} (prune): tfmot cannot prune this model: {e}") from None
    ctx.fit(pruned, step, callbacks=[sk.UpdatePruningStep()])
    stripped = sk.strip_pruning(pruned)
    ctx.pruned = True
    return stripped, {"schedule_steps": {"begin_step": begin, "end_step": end, "frequency": freq,
                                         "total_steps": n_steps}}


def apply_cluster(model, step: dict, ctx: Context):
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.clustering.keras import clustering_registry

    ck = tfmot.clustering.keras
    _check_graph(model, ctx, "cluster")
    for l in _layers(model):
        if isinstance(l, ck.ClusterableLayer):
            continue
        if not clustering_registry.ClusteringRegistry.supports(l):
            raise ctx.layer_error("cluster", l, "cannot be clustered by tfmot (it has weights tfmot's clustering "
                                                "registry does not know)",
                                  "replace the layer, or drop the cluster step from this variant")
    init = {"kmeans++": ck.CentroidInitialization.KMEANS_PLUS_PLUS, "linear": ck.CentroidInitialization.LINEAR,
            "density": ck.CentroidInitialization.DENSITY_BASED,
            "random": ck.CentroidInitialization.RANDOM}[step["init"]]
    _, keras = import_tensorflow()
    fallback = []

    def wrap(layer):
        if type(layer).__name__ == "InputLayer":
            return layer.__class__.from_config(layer.get_config())
        layer_init = init
        if step["init"] == "kmeans++" and not _kmeans_feasible(layer, step["clusters"], ctx.pruned):
            layer_init = ck.CentroidInitialization.LINEAR  # too few (non-zero) weights to sample from
            fallback.append(layer.name)
        return ck.cluster_weights(layer, number_of_clusters=step["clusters"], cluster_centroids_init=layer_init,
                                  preserve_sparsity=ctx.pruned)

    tf, _ = import_tensorflow()
    try:
        clustered = keras.models.clone_model(model, clone_function=wrap)
    except (ValueError, tf.errors.InvalidArgumentError) as e:
        raise TinyMLError(f"{ctx.label} (cluster): tfmot cannot cluster this model: {str(e).splitlines()[0]}; "
                          f"try init = \"linear\" or fewer clusters") from None
    ctx.fit(clustered, step)
    stripped = ck.strip_clustering(clustered)
    ctx.clustered = True
    return stripped, {"preserve_sparsity": ctx.pruned, "linear_init_for": fallback}


def _kmeans_feasible(layer, clusters: int, preserve_sparsity: bool) -> bool:
    """Whether tfmot's kmeans++ initialisation has enough weights to draw `clusters` centroids from.

    Mirrors tfmot: with preserve_sparsity the non-zero clusters are split between negative and positive
    weights in proportion to their counts, and each side must have at least as many weights as clusters.
    """
    import numpy as np

    for w in layer.weights:
        if w.name.split("/")[-1].split(":")[0] not in _KERNEL_NAMES:
            continue
        a = w.numpy().ravel()
        if not preserve_sparsity:
            if a.size < clusters:
                return False
            continue
        neg, pos = int((a < 0).sum()), int((a > 0).sum())
        if neg + pos == 0:
            continue
        n_neg = int(np.round((clusters - 1) * neg / (neg + pos)))
        if n_neg > neg or clusters - 1 - n_neg > pos:
            return False
    return True


_QAT_UNSUPPORTED = re.compile(r"Layer (\S+?):<class '([^']+)'> is not supported")


def apply_qat(model, step: dict, ctx: Context):
    import tensorflow_model_optimization as tfmot

    qk = tfmot.quantization.keras
    combine = tfmot.experimental.combine
    _check_graph(model, ctx, "qat")
    if ctx.clustered:
        scheme, name = combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=ctx.pruned), \
            "Default8BitClusterPreserveQuantizeScheme"
    elif ctx.pruned:
        scheme, name = combine.Default8BitPrunePreserveQuantizeScheme(), "Default8BitPrunePreserveQuantizeScheme"
    else:
        scheme, name = None, "Default8BitQuantizeScheme"
    try:
        annotated = qk.quantize_annotate_model(model)
        conv1d = [l for l in annotated.layers if type(getattr(l, "layer", None)).__name__ == "Conv1D"]
        if conv1d and scheme is None:
            # tfmot's 8-bit registry has no Conv1D entry; per-tensor weight quantization converts cleanly
            # (TFLite runs Conv1D as EXPAND_DIMS + CONV_2D)
            from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
                default_8bit_quantize_registry as reg)

            for l in conv1d:
                l.quantize_config = reg.Default8BitQuantizeConfig(["kernel"], ["activation"], False)
        with qk.quantize_scope(_custom_objects()):
            q = qk.quantize_apply(annotated, scheme) if scheme is not None else qk.quantize_apply(annotated)
    except RuntimeError as e:
        m = _QAT_UNSUPPORTED.search(str(e))
        if not m:
            raise TinyMLError(f"{ctx.label} (qat): tfmot cannot quantize this model: {e}") from None
        lname, cls = m.group(1), m.group(2).rsplit(".", 1)[-1]
        if cls == "Conv1D":
            hint = (f" after {'cluster' if ctx.clustered else 'prune'} ({name} covers Dense, Conv2D and "
                    f"DepthwiseConv2D only): drop the {'cluster' if ctx.clustered else 'prune'} step, or the qat "
                    f"step and let conversion quantize post-training with quantization = \"int8\"")
        else:
            hint = "; drop the qat step and let conversion quantize post-training with quantization = \"int8\""
        raise TinyMLError(f"{ctx.label} (qat): layer {lname!r} ({cls}) is not supported by tfmot's "
                          f"quantization-aware training{hint}") from None
    except ValueError as e:
        raise TinyMLError(f"{ctx.label} (qat): tfmot cannot quantize this model: {e}") from None
    ctx.fit(q, step)
    if ctx.clustered:
        q = combine.strip_clustering_cqat(q)
    return q, {"scheme": name, "requires_full_integer": True}


def _apply_remove(model, step, ctx):
    from . import structured

    return structured.apply(model, step, ctx)


def _apply_distill(model, step, ctx):
    from . import distill

    return distill.apply(model, step, ctx)


APPLY: dict[str, Callable] = {"distill": _apply_distill, "remove": _apply_remove, "prune": apply_prune,
                              "cluster": apply_cluster, "qat": apply_qat}


def _predict(model, x, batch_size: int = 1024):
    """Inference without tracing a tf.function (fast for the small models this stage handles)."""
    import numpy as np

    return np.concatenate([model(x[i:i + batch_size], training=False).numpy()
                           for i in range(0, len(x), batch_size)], axis=0)


def _test_loss(model, data, loss) -> float | None:
    if "x_test" not in data or len(data["x_test"]) == 0:
        return None
    _, keras = import_tensorflow()
    pred = _predict(model, data["x_test"])
    return float(keras.losses.get(loss)(data["y_test"], pred).numpy().mean())


def run(trained_path: Path, dataset_npz: Path, steps: tuple[dict, ...], out_keras: Path, out_json: Path, *,
        seed: int, loss: str, optimizer: str = "adam", build_layers=None) -> dict:
    """Apply the variant's steps in order to the trained model; write compressed.keras and compress.json."""
    import tempfile

    import numpy as np

    trained_path, dataset_npz, out_keras, out_json = map(Path, (trained_path, dataset_npz, out_keras, out_json))
    steps = validate_steps(list(steps), f"{out_keras.parent} steps")
    with np.load(dataset_npz) as z:
        data = {k: z[k] for k in z.files}
    for k in ("x_train", "y_train"):
        if k not in data:
            raise TinyMLError(f"{dataset_npz}: has no {k!r} array; rebuild the dataset stage")
    if build_layers is None:
        try:
            from .train import build_model as build_layers
        except ImportError:
            build_layers = None
    _, keras = import_tensorflow()
    keras.backend.clear_session()  # auto-generated layer names (student, QuantizeLayer) restart from 0:
    seed_everything(seed)          # the same steps give the same bytes whatever ran before in this process
    model = load_model(trained_path)
    label = f"{out_keras.parent}"
    records = []
    with tempfile.TemporaryDirectory(prefix="tinyml-compress-") as td:
        before = _measure(model, td, "trained")
        before["test_loss"] = _test_loss(model, data, loss)
        ctx = Context(data, loss, optimizer, seed, build_layers, label)
        for i, step in enumerate(steps):
            ctx.label = f"{out_keras.parent} steps[{i}]"
            seed_everything(seed + i)
            prev = records[-1]["_after"] if records else before
            model, extra = APPLY[step["method"]](model, step, ctx)
            after = _measure(model, td, f"step{i}")
            after["test_loss"] = _test_loss(model, data, loss)
            rec = {"method": step["method"], "settings": {k: v for k, v in step.items() if k != "method"},
                   "params_before": prev["params"], "params_after": after["params"],
                   "macs_before": prev["macs"], "macs_after": after["macs"],
                   "keras_bytes": after["keras_bytes"], "keras_gzip_bytes": after["keras_gzip_bytes"],
                   "test_loss": after["test_loss"], "kernels": kernel_stats(model), "_after": after}
            rec.update(extra)
            records.append(rec)
        for rec in records:
            rec.pop("_after")
    fmt = save_model(model, out_keras)
    from .structured import count_macs, count_params

    final = {"params": count_params(model), "macs": int(count_macs(model)), "format": fmt,
             **_file_sizes(out_keras.read_bytes())}
    result = {"steps": records, "trained": before, "final": final,
              "requires_full_integer": any(s["method"] == "qat" for s in steps)}
    write_json(out_json, result)
    return result
