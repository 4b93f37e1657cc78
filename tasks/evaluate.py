"""Evaluate stage: run the .tflite on the test split with LiteRT and with TFLM; write metrics.json.

Reads `<model>/<variant>/model.tflite`, `<model>/dataset.npz` and `<model>/dataset.json`; writes
`<model>/<variant>/metrics.json` (contract in docs/ARTIFACTS.md, user guide in docs/report.md).

* LiteRT (engine.litert) runs the whole test split in batches.
* TFLM (engine.tflm: the tflite-micro Python interpreter, the runtime that ships to the device)
  runs one sample at a time in a child process. When TFLM cannot run the model (hybrid models,
  missing ops) metrics.json records `"tflm": {"error": "..."}` and `primary` comes from LiteRT.
* The float Keras reference (the trained model) gives the agreement figures.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .engine import artifacts, litert, metrics, tflm
from .engine.errors import TinyMLError
from .engine.io import read_npz
from .engine.quant import dequantize

TASKS = ("regression", "binary", "multiclass", "autoencoder")
ANOMALY_MODES = ("pointwise", "window")
ANOMALY_DEFAULTS = {"k": 3.0, "mode": "pointwise", "vote_window": 10, "vote_threshold": "max", "vote_k": 1.0,
                    "error": "mse"}


def run(
    tflite_path: Path,
    dataset_npz: Path,
    dataset_json: Path,
    out_json: Path,
    *,
    reference_keras: Path | None,
    anomaly: dict | None = None,
) -> dict:
    """Evaluate `tflite_path` on the test split; write metrics.json and return what it holds."""
    import numpy as np

    tflite_path, dataset_npz, dataset_json, out_json = map(Path, (tflite_path, dataset_npz, dataset_json, out_json))
    for p, what in ((tflite_path, "converted model"), (dataset_npz, "dataset"), (dataset_json, "dataset description")):
        if not p.is_file():
            raise TinyMLError(f"evaluate: the {what} {p} does not exist; run its stage first (doit {_stage_of(p)}).")
    meta = artifacts.read_dict(dataset_json, artifacts.Dataset)
    task = meta.get("task")
    if task not in TASKS:
        raise TinyMLError(
            f"evaluate: {dataset_json} has task {task!r}; allowed: {', '.join(TASKS)}. Fix the [dataset] task in tinyml.toml."
        )
    settings = _anomaly_settings(anomaly) if task == "autoencoder" else None

    data = read_npz(dataset_npz)
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
    outputs["litert"] = {name: litert.run(model_bytes, x, tflite_path) for name, x in inputs.items()}
    tflm_out, tflm_info = _run_tflm(model_bytes, inputs)
    if tflm_out is not None:
        outputs["tflm"] = tflm_out
    if reference_keras is not None:
        outputs["keras"] = _run_keras(Path(reference_keras), inputs)

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
            m, dec = metrics.anomaly_metrics(outs, inputs, data["is_anomaly_test"], settings, dataset_npz)
        else:
            m, dec = metrics.supervised_metrics(task, outs["test"], data["y_test"], meta, dataset_npz)
        result[rt] = m
        decisions[rt] = dec
    if tflm_out is None:
        result["tflm"] = tflm_info
    else:
        result["tflm"]["arena_size"] = tflm_info["arena_size"]
        a, b = outputs["tflm"]["test"], outputs["litert"]["test"]
        result["tflm"]["max_abs_diff_vs_litert"] = metrics.max_abs(a, b)
        # TFLM's kernels may round differently from LiteRT's by one quantisation step on some samples
        result["tflm"]["samples_differing_vs_litert"] = int(np.sum(np.any(a.reshape(len(a), -1) != b.reshape(len(b), -1), axis=1)))

    primary_rt = "tflm" if tflm_out is not None else "litert"
    name, hib = {"regression": ("mae", False), "binary": ("accuracy", True), "multiclass": ("accuracy", True),
                 "autoencoder": ("f1", True)}[task]
    result["primary"] = {"name": name, "value": result[primary_rt][name], "higher_is_better": hib, "runtime": primary_rt}

    if "keras" in outputs:
        ref = outputs["keras"]["test"]
        got = outputs[primary_rt]["test"]
        agreement: dict[str, Any] = {"runtime": primary_rt, "max_abs_error_vs_keras": metrics.max_abs(got, ref)}
        if task in ("binary", "multiclass"):
            agreement["top1_agreement_vs_keras"] = float(np.mean(decisions[primary_rt] == decisions["keras"]))
        elif task == "autoencoder":
            agreement["decision_agreement_vs_keras"] = float(np.mean(decisions[primary_rt] == decisions["keras"]))
        result["agreement"] = agreement
    else:
        result["agreement"] = None
    if task == "autoencoder":
        result["anomaly"] = settings
    record = artifacts.Metrics(**result)
    artifacts.write(out_json, record)
    return record.to_dict()  # what was written, with its schema key


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
    if s["vote_threshold"] not in metrics.VOTE_RULES:
        raise TinyMLError(f"evaluate: anomaly vote_threshold = {s['vote_threshold']!r}; allowed: "
                          f"{', '.join(metrics.VOTE_RULES)}.")
    try:
        s["vote_k"] = float(s["vote_k"])
    except (TypeError, ValueError):
        raise TinyMLError(f"evaluate: anomaly vote_k = {s['vote_k']!r} is not a number; give e.g. vote_k = 1.0") from None
    if not s["vote_k"] >= 0 or s["vote_k"] == float("inf"):
        raise TinyMLError(f"evaluate: anomaly vote_k = {s['vote_k']} must be a finite number >= 0 "
                          "(vote threshold = mean + vote_k * std of the flagged members per training group).")
    if s["error"] not in metrics.ERRORS:
        raise TinyMLError(f"evaluate: anomaly error = {s['error']!r}; allowed: {', '.join(metrics.ERRORS)}.")
    return s


def _run_tflm(model_bytes: bytes, inputs: dict) -> tuple[dict | None, dict]:
    """Every array of `inputs` through TFLM (engine.tflm): ({name: dequantised float32 outputs}, info)."""
    raw, info = tflm.run(model_bytes, inputs)
    if raw is None:
        msg = _short(info.get("error", ""))
        if "filter type: INT8" in msg or "Hybrid" in msg:
            msg += (" (this is a hybrid / dynamic-range model: TFLM runs float32 or fully integer models; "
                    "give the variant quantization = \"int8\" with a representative dataset to run it on the device)")
        return None, {"error": msg, "arena_size": info.get("arena_size")}
    return ({k: dequantize(v, info["output_scale"], info["output_zero_point"]) for k, v in raw.items()},
            {"arena_size": info["arena_size"]})


def _short(text: str, limit: int = 600) -> str:
    lines = []
    for ln in text.splitlines():
        ln = ln.strip()
        if ln and ln not in lines:
            lines.append(ln)
    out = " | ".join(lines)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _run_keras(path: Path, inputs: dict) -> dict:
    import numpy as np

    from .engine.keras_io import load_model

    if not path.is_file():
        raise TinyMLError(f"evaluate: the Keras reference model {path} does not exist; run `doit train` first.")
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
