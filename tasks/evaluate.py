"""Evaluate stage: run the .tflite on the test split with LiteRT and with TFLM; write metrics.json.

Reads `<model>/<variant>/model.tflite`, `<model>/dataset.npz` and `<model>/dataset.json`; writes
`<model>/<variant>/metrics.json` (contract in docs/ARTIFACTS.md, user guide in docs/report.md).

* LiteRT (`ai_edge_litert.interpreter.Interpreter`, builtin kernels without XNNPACK) runs the
  whole test split in batches (the input is resized; a model whose batch cannot be resized is run
  one sample at a time).
* TFLM (tflite-micro's Python interpreter, the runtime that ships to the device) runs one sample
  at a time, batch 1. It runs in a child process: TFLM aborts the process on some failures (an
  arena too small for its own bookkeeping segfaults), and a crash must become a recorded error,
  not a dead build. When TFLM cannot run the model (hybrid / dynamic-range models, missing ops)
  metrics.json records `"tflm": {"error": "..."}` and `primary` comes from LiteRT.
* The float Keras reference (the trained model) gives the agreement figures. TensorFlow is
  imported only when `reference_keras` is given.

numpy is imported inside functions only; this module is imported by `doit list`.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from tasks.util import TinyMLError, read_json, write_json

TASKS = ("regression", "binary", "multiclass", "autoencoder")
ANOMALY_MODES = ("pointwise", "window")
ANOMALY_DEFAULTS = {"k": 3.0, "mode": "pointwise", "vote_window": 10}
LITERT_BATCH = 512
TFLM_TIMEOUT_S = 1800


# --------------------------------------------------------------------------------------------
# entry point


def run(
    tflite_path: Path,
    dataset_npz: Path,
    dataset_json: Path,
    out_json: Path,
    *,
    reference_keras: Path | None,
    anomaly: dict | None = None,
    load_model: Callable[[Path], Any] | None = None,
) -> dict:
    """Evaluate `tflite_path` on the test split; write and return the metrics.json dict."""
    import numpy as np

    tflite_path, dataset_npz, dataset_json, out_json = map(Path, (tflite_path, dataset_npz, dataset_json, out_json))
    for p, what in ((tflite_path, "converted model"), (dataset_npz, "dataset"), (dataset_json, "dataset description")):
        if not p.is_file():
            raise TinyMLError(f"evaluate: the {what} {p} does not exist; run its stage first (doit {_stage_of(p)}).")
    meta = read_json(dataset_json)
    task = meta.get("task")
    if task not in TASKS:
        raise TinyMLError(
            f"evaluate: {dataset_json} has task {task!r}; allowed: {', '.join(TASKS)}. Fix the [dataset] task in tinyml.toml."
        )
    settings = _anomaly_settings(anomaly) if task == "autoencoder" else None

    with np.load(dataset_npz) as z:
        data = {k: z[k] for k in z.files}
    for key in ("x_test",) + (("x_train", "is_anomaly_test") if task == "autoencoder" else ("y_test",)):
        if key not in data:
            raise TinyMLError(f"evaluate: {dataset_npz} has no array {key!r} (it holds {sorted(data)}); needed for task {task!r}.")
    x_test = data["x_test"].astype(np.float32)
    if len(x_test) == 0:
        raise TinyMLError(f"evaluate: {dataset_npz} has an empty test split; give the dataset a test fraction > 0.")

    model_bytes = tflite_path.read_bytes()
    inputs = {"test": x_test}
    if task == "autoencoder":
        inputs["train"] = data["x_train"].astype(np.float32)

    # ---- run the three runtimes
    outputs: dict[str, dict[str, Any]] = {}
    outputs["litert"] = {name: _run_litert(model_bytes, x, tflite_path) for name, x in inputs.items()}
    tflm_out, tflm_info = _run_tflm(model_bytes, inputs)
    if tflm_out is not None:
        outputs["tflm"] = tflm_out
    if reference_keras is not None:
        outputs["keras"] = _run_keras(Path(reference_keras), inputs, load_model)

    # ---- metrics per runtime
    result: dict[str, Any] = {
        "task": task,
        "counts": {"test": int(len(x_test))},
        "tflite_bytes": len(model_bytes),
        "keras": None,
    }
    decisions: dict[str, Any] = {}
    for rt, outs in outputs.items():
        if task == "autoencoder":
            m, dec = _anomaly_metrics(outs, inputs, data["is_anomaly_test"], settings, dataset_npz)
        else:
            m, dec = _supervised_metrics(task, outs["test"], data["y_test"], meta, dataset_npz)
        result[rt] = m
        decisions[rt] = dec
    if tflm_out is None:
        result["tflm"] = tflm_info
    else:
        result["tflm"]["arena_size"] = tflm_info["arena_size"]
        a, b = outputs["tflm"]["test"], outputs["litert"]["test"]
        result["tflm"]["max_abs_diff_vs_litert"] = _max_abs(a, b)
        # TFLM's kernels may round differently from LiteRT's by one quantisation step on some samples
        result["tflm"]["samples_differing_vs_litert"] = int(np.sum(np.any(a.reshape(len(a), -1) != b.reshape(len(b), -1), axis=1)))

    primary_rt = "tflm" if tflm_out is not None else "litert"
    name, hib = {"regression": ("mae", False), "binary": ("accuracy", True), "multiclass": ("accuracy", True),
                 "autoencoder": ("f1", True)}[task]
    result["primary"] = {"name": name, "value": result[primary_rt][name], "higher_is_better": hib, "runtime": primary_rt}

    if "keras" in outputs:
        ref = outputs["keras"]["test"]
        got = outputs[primary_rt]["test"]
        agreement: dict[str, Any] = {"runtime": primary_rt, "max_abs_error_vs_keras": _max_abs(got, ref)}
        if task in ("binary", "multiclass"):
            agreement["top1_agreement_vs_keras"] = float(np.mean(decisions[primary_rt] == decisions["keras"]))
        elif task == "autoencoder":
            agreement["decision_agreement_vs_keras"] = float(np.mean(decisions[primary_rt] == decisions["keras"]))
        result["agreement"] = agreement
    else:
        result["agreement"] = None
    if task == "autoencoder":
        result["anomaly"] = settings
    write_json(out_json, result)
    return result


def _stage_of(p: Path) -> str:
    return "convert" if p.suffix == ".tflite" else "dataset"


def _anomaly_settings(anomaly: dict | None) -> dict:
    s = dict(ANOMALY_DEFAULTS)
    unknown = set(anomaly or {}) - set(s)
    if unknown:
        raise TinyMLError(
            f"evaluate: unknown anomaly setting(s) {sorted(unknown)}; allowed: {sorted(s)} (in [evaluate.anomaly] of tinyml.toml)."
        )
    s.update(anomaly or {})
    try:
        s["k"] = float(s["k"])
    except (TypeError, ValueError):
        raise TinyMLError(f"evaluate: anomaly k = {s['k']!r} is not a number; give e.g. k = 3.0") from None
    if not s["k"] >= 0:
        raise TinyMLError(f"evaluate: anomaly k = {s['k']} must be >= 0 (threshold = mean + k * std of training error).")
    if s["mode"] not in ANOMALY_MODES:
        raise TinyMLError(f"evaluate: anomaly mode = {s['mode']!r}; allowed: {', '.join(ANOMALY_MODES)}.")
    vw = s["vote_window"]
    if isinstance(vw, bool) or not isinstance(vw, int) or vw < 0:
        raise TinyMLError(f"evaluate: anomaly vote_window = {vw!r} must be an integer >= 0 (0 or 1 turns voting off).")
    return s


# --------------------------------------------------------------------------------------------
# quantisation helpers (shared by both interpreters)


def _qparams(details: dict) -> tuple[float, int]:
    qp = details.get("quantization_parameters") or {}
    scales, zps = qp.get("scales"), qp.get("zero_points")
    if scales is not None and len(scales):
        return float(scales[0]), int(zps[0]) if zps is not None and len(zps) else 0
    q = details.get("quantization") or (0.0, 0)
    return float(q[0]), int(q[1])


def quantize(x, dtype, scale: float, zp: int):
    """Float inputs -> a model's input dtype (TFLite's q = clip(round(x / scale + zp))). The one place for it."""
    import numpy as np

    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return x.astype(dtype)
    if scale == 0.0:  # integer input that is not quantised (ids, indices)
        return np.round(x).astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)


def dequantize(y, scale: float, zp: int):
    """A model's output tensor -> float32, (q - zp) * scale for quantised outputs."""
    import numpy as np

    if y.dtype.kind == "f":
        return y.astype(np.float32)
    if scale == 0.0:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - zp) * scale).astype(np.float32)


# --------------------------------------------------------------------------------------------
# LiteRT


def _run_litert(model_bytes: bytes, x, tflite_path: Path):
    """All of x through LiteRT; returns dequantised float32 outputs with x's batch dimension."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    def make():
        return Interpreter(model_content=model_bytes,
                           experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)

    try:
        it = make()
    except Exception as e:  # a broken flatbuffer is an upstream problem the user must see
        raise TinyMLError(f"evaluate: LiteRT cannot load {tflite_path}: {e}. Re-run `doit convert` for this variant.") from None
    ins, outs = it.get_input_details(), it.get_output_details()
    if len(ins) != 1:
        raise TinyMLError(
            f"evaluate: {tflite_path} has {len(ins)} inputs; the evaluate stage supports single-input models."
        )
    din, dout = ins[0], outs[0]
    shape = [int(s) for s in din["shape"]]
    sample_shape = tuple(shape[1:])
    if tuple(x.shape[1:]) != sample_shape:
        if int(np.prod(x.shape[1:])) == int(np.prod(sample_shape)):
            x = x.reshape((len(x),) + sample_shape)
        else:
            raise TinyMLError(
                f"evaluate: {tflite_path} expects input samples of shape {list(sample_shape)} but the dataset gives "
                f"{list(x.shape[1:])}; the model and dataset.npz disagree (rebuild with `doit`)."
            )
    s_in, z_in = _qparams(din)
    s_out, z_out = _qparams(dout)
    xq = quantize(x, din["dtype"], s_in, z_in)

    def invoke_all(batch: int):
        it = make()
        results, current = [], None
        for i in range(0, len(xq), batch):
            chunk = xq[i:i + batch]
            if current != len(chunk):
                if batch > 1:
                    it.resize_tensor_input(din["index"], [len(chunk), *sample_shape])
                it.allocate_tensors()
                current = len(chunk)
            it.set_tensor(din["index"], chunk)
            it.invoke()
            results.append(dequantize(it.get_tensor(dout["index"]).copy(), s_out, z_out))
        return results

    try:
        results = invoke_all(LITERT_BATCH)
    except Exception:  # a model with a hard batch of 1 (e.g. a reshape with fixed dims): one at a time
        try:
            results = invoke_all(1)
        except Exception as e:
            raise TinyMLError(f"evaluate: LiteRT cannot run {tflite_path}: {e}") from None
    return np.concatenate(results, axis=0)


# --------------------------------------------------------------------------------------------
# TFLM, in a child process

_TFLM_WORKER = r"""
import json, os, sys, tempfile
import numpy as np
from tflite_micro.python.tflite_micro import runtime

model_path, in_npz, out_npz, start_arena, max_arena = sys.argv[1:6]
model = open(model_path, "rb").read()
arena, max_arena = int(start_arena), int(max_arena)

def captured(fn):
    # run fn with the C-level stderr captured (TFLM reports its reasons there)
    fd = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        err = None
        try:
            out = fn()
        except Exception as e:
            out, err = None, e
        finally:
            sys.stderr.flush()
            os.dup2(fd, 2)
            os.close(fd)
        tmp.seek(0)
        text = tmp.read().decode("utf-8", "replace").strip()
    return out, err, text

while True:
    it, err, text = captured(lambda: runtime.Interpreter.from_bytes(model, arena_size=arena))
    if err is None:
        break
    allocation = "allocate" in text.lower() and ("missing" in text.lower() or "arena" in text.lower())
    if allocation and arena * 2 <= max_arena:
        arena *= 2
        continue
    print(json.dumps({"error": (text + "\n" + str(err)).strip(), "arena_size": arena}))
    sys.exit(0)

din, dout = it.get_input_details(0), it.get_output_details(0)
def q(d):
    p = d["quantization_parameters"]
    return (float(p["scales"][0]), int(p["zero_points"][0])) if len(p["scales"]) else (0.0, 0)
s_in, z_in = q(din)
shape = [int(s) for s in din["shape"]]
results = {}
with np.load(in_npz) as z:
    for name in z.files:
        x = z[name]
        if tuple(x.shape[1:]) != tuple(shape[1:]):
            x = x.reshape((len(x),) + tuple(shape[1:]))
        dt = np.dtype(din["dtype"])
        if dt.kind == "f":
            xq = x.astype(dt)
        elif s_in == 0.0:
            xq = np.round(x).astype(dt)
        else:
            info = np.iinfo(dt)
            xq = np.clip(np.round(x / s_in + z_in), info.min, info.max).astype(dt)
        ys = []
        for i in range(len(xq)):
            def one():
                it.set_input(xq[i:i + 1], 0)
                it.invoke()
                return np.array(it.get_output(0), copy=True)
            y, err, text = captured(one)
            if err is not None:
                print(json.dumps({"error": (text + "\n" + str(err)).strip(), "arena_size": arena}))
                sys.exit(0)
            ys.append(y)
        results[name] = np.concatenate(ys, axis=0)
np.savez(out_npz, **results)
print(json.dumps({"arena_size": arena, "output_dtype": np.dtype(dout["dtype"]).name}))
"""


def _run_tflm(model_bytes: bytes, inputs: dict) -> tuple[dict | None, dict]:
    """Run every array of `inputs` through TFLM one sample at a time.

    Returns ({name: dequantised float32 outputs}, info) or (None, {"error": message}).
    """
    import numpy as np

    start = max(64 * 1024, 4 * len(model_bytes))
    with tempfile.TemporaryDirectory(prefix="tinyml-tflm-") as td:
        td = Path(td)
        (td / "model.tflite").write_bytes(model_bytes)
        np.savez(td / "in.npz", **inputs)
        cmd = [sys.executable, "-c", _TFLM_WORKER, str(td / "model.tflite"), str(td / "in.npz"), str(td / "out.npz"),
               str(start), str(256 * 1024 * 1024)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TFLM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None, {"error": f"TFLM did not finish within {TFLM_TIMEOUT_S} s"}
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            return None, {"error": f"the TFLM interpreter crashed ({why}): {tail}".strip()}
        info = json.loads(lines[-1])
        if "error" in info:
            msg = _short(info["error"])
            if "filter type: INT8" in msg or "Hybrid" in msg:
                msg += (" (this is a hybrid / dynamic-range model: TFLM runs float32 or fully integer models; "
                        "give the variant quantization = \"int8\" with a representative dataset to run it on the device)")
            return None, {"error": msg, "arena_size": info.get("arena_size")}
        with np.load(td / "out.npz") as z:
            raw = {k: z[k] for k in z.files}
    # dequantise with the output tensor's parameters (read from LiteRT: same flatbuffer)
    from ai_edge_litert.interpreter import Interpreter

    dout = Interpreter(model_content=model_bytes).get_output_details()[0]
    s_out, z_out = _qparams(dout)
    return {k: dequantize(v, s_out, z_out) for k, v in raw.items()}, {"arena_size": info["arena_size"]}


def _short(text: str, limit: int = 600) -> str:
    lines = []
    for ln in text.splitlines():
        ln = ln.strip()
        if ln and ln not in lines:
            lines.append(ln)
    out = " | ".join(lines)
    return out if len(out) <= limit else out[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# Keras reference


def _run_keras(path: Path, inputs: dict, load_model):
    import numpy as np

    if not path.is_file():
        raise TinyMLError(f"evaluate: the Keras reference model {path} does not exist; run `doit train` first.")
    if load_model is None:
        from tasks.util import import_tensorflow

        _, keras = import_tensorflow()
        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as first:
            try:  # quantisation-aware models need tfmot's custom objects
                import tensorflow_model_optimization as tfmot

                with tfmot.quantization.keras.quantize_scope():
                    model = keras.models.load_model(path, compile=False)
            except Exception:
                raise TinyMLError(f"evaluate: cannot load the Keras reference {path}: {first}") from None
    else:
        model = load_model(path)
    out = {}
    for name, x in inputs.items():
        shape = tuple(int(d) if d is not None else -1 for d in model.input_shape[1:])
        if tuple(x.shape[1:]) != shape and -1 not in shape:
            x = x.reshape((len(x),) + shape)
        y = model.predict(x, batch_size=256, verbose=0)
        if isinstance(y, (list, tuple)):
            y = y[0]
        out[name] = np.asarray(y, dtype=np.float32)
    return out


# --------------------------------------------------------------------------------------------
# metrics (numpy)


def _max_abs(a, b) -> float:
    import numpy as np

    return float(np.max(np.abs(a.reshape(len(a), -1) - b.reshape(len(b), -1)))) if len(a) else 0.0


def _supervised_metrics(task: str, out, y, meta: dict, npz: Path):
    import numpy as np

    n = len(out)
    if len(y) != n:
        raise TinyMLError(f"evaluate: {npz} has {len(y)} test labels for {n} test samples.")
    if task == "regression":
        pred = out.reshape(n, -1)
        truth = np.asarray(y, dtype=np.float32).reshape(n, -1)
        if pred.shape != truth.shape:
            raise TinyMLError(
                f"evaluate: the model gives {pred.shape[1]} outputs per sample but y_test has {truth.shape[1]}."
            )
        err = pred.astype(np.float64) - truth
        return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2)))}, pred
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot labels
        y = y.argmax(axis=1)
    y = y.reshape(n).astype(np.int64)
    flat = out.reshape(n, -1)
    if flat.shape[1] == 1:
        pred = (flat[:, 0] >= 0.5).astype(np.int64)
    else:
        pred = flat.argmax(axis=1).astype(np.int64)
    if task == "binary":
        n_classes = 2
    else:
        n_classes = int(meta.get("n_classes") or max(int(y.max()) + 1, flat.shape[1]))
    return classification_metrics(y, pred, n_classes, binary=(task == "binary")), pred


def classification_metrics(y, pred, n_classes: int, *, binary: bool) -> dict:
    """accuracy, precision, recall, f1 (positive class 1 when binary, macro otherwise), confusion matrix."""
    import numpy as np

    y = np.asarray(y, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    n_classes = max(n_classes, int(y.max(initial=0)) + 1, int(pred.max(initial=0)) + 1)
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    tp = np.diag(cm).astype(np.float64)
    p_den = cm.sum(axis=0).astype(np.float64)
    r_den = cm.sum(axis=1).astype(np.float64)
    prec = np.divide(tp, p_den, out=np.zeros_like(tp), where=p_den > 0)
    rec = np.divide(tp, r_den, out=np.zeros_like(tp), where=r_den > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=(prec + rec) > 0)
    if binary:
        p, r, f = prec[1], rec[1], f1[1]
    else:
        p, r, f = prec.mean(), rec.mean(), f1.mean()
    return {
        "accuracy": float(tp.sum() / max(len(y), 1)),
        "precision": float(p),
        "recall": float(r),
        "f1": float(f),
        "average": "binary" if binary else "macro",
        "confusion_matrix": cm.tolist(),
    }


def reconstruction_error(x, x_hat):
    """Mean squared reconstruction error per sample (per window in window mode)."""
    import numpy as np

    n = len(x)
    return np.mean((x.reshape(n, -1).astype(np.float64) - x_hat.reshape(n, -1)) ** 2, axis=1)


def _anomaly_metrics(outs: dict, inputs: dict, labels, s: dict, npz: Path):
    import numpy as np

    err_train = reconstruction_error(inputs["train"], outs["train"])
    err_test = reconstruction_error(inputs["test"], outs["test"])
    labels = np.asarray(labels)
    n = len(err_test)
    if len(labels) != n:
        raise TinyMLError(f"evaluate: {npz} has {len(labels)} is_anomaly_test labels for {n} test samples.")
    if labels.ndim > 1:
        if s["mode"] != "window":
            raise TinyMLError(
                f"evaluate: is_anomaly_test in {npz} has shape {list(labels.shape)} (one label per time step); "
                "pointwise mode needs one label per sample. Set [evaluate.anomaly] mode = \"window\"."
            )
        labels = labels.reshape(n, -1).max(axis=1)  # a window is anomalous when any of its steps is
    labels = (labels > 0).astype(np.int64)
    mean, std = float(err_train.mean()), float(err_train.std())
    threshold = mean + s["k"] * std
    flags = (err_test > threshold).astype(np.int64)
    m = classification_metrics(labels, flags, 2, binary=True)
    m.update({
        "mode": s["mode"],
        "threshold": threshold,
        "train_error_mean": mean,
        "train_error_std": std,
        "k": s["k"],
        "test_error_mean": float(err_test.mean()),
    })
    vw = s["vote_window"]
    if vw > 1:
        train_flags = (err_train > threshold).astype(np.int64)
        n_train_groups = len(train_flags) // vw
        n_groups = n // vw
        if n_train_groups and n_groups:
            train_counts = train_flags[: n_train_groups * vw].reshape(n_train_groups, vw).sum(axis=1)
            # learned: the smallest number of flagged members that flags no training group
            need = int(train_counts.max()) + 1
            learned = need <= vw
            need = min(need, vw)
            counts = flags[: n_groups * vw].reshape(n_groups, vw).sum(axis=1)
            group_pred = (counts >= need).astype(np.int64)
            group_truth = labels[: n_groups * vw].reshape(n_groups, vw).max(axis=1)
            voted = classification_metrics(group_truth, group_pred, 2, binary=True)
            voted.update({
                "vote_window": vw,
                "vote_threshold": need / vw,
                "vote_min_members": need,
                "threshold_rule": ("smallest fraction of flagged members that flags no training group"
                                   if learned else "every training group is fully flagged: threshold capped at 1.0"),
                "groups": int(n_groups),
                "dropped_tail_samples": int(n - n_groups * vw),
            })
            m["voted"] = voted
        else:
            m["voted"] = {"error": f"vote_window {vw} is larger than the training ({len(train_flags)}) "
                                   f"or test ({n}) split"}
    return m, flags
