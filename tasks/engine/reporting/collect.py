"""Artifacts -> rows: the only part of the report that reads a file.

One row per entry (model, variant, board, runtime), every figure read from an artifact a stage
wrote (metrics.json, analysis.json, size.json, convert.json, compress.json, aot.json, history.json,
the C array source, trained.keras) and the entry's sweep point. A missing or unreadable artifact gives
None figures and a name in the row's `missing` list, never an exception. The verdicts (fits, warnings,
ship, gates) are decide.py's; what they are decided from, beyond the row's figures, travels beside
the row as `Facts`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .. import artifacts
from ..errors import TinyMLError

ARTIFACTS = ("metrics", "analysis", "size", "convert", "compress", "aot", "history", "measure")
RECORDS = {"metrics": artifacts.Metrics, "analysis": artifacts.Analysis, "size": artifacts.Size,
           "convert": artifacts.Convert, "compress": artifacts.Compress, "aot": artifacts.Aot,
           "measure": artifacts.Measure, "report": artifacts.Report}


@dataclass(frozen=True)
class Facts:
    """What a row's fits verdict is decided from, beyond its figures (not written to report.json)."""
    size_status: str                 # "ok", "absent", "missing", "unreadable"
    size_fits: bool | None = None    # size.json "fits", when a bool
    size_problem: str | None = None  # size.json "error" or "incompatible"
    tflm_compatible: bool | None = None  # analysis.json "tflm_compatible"
    tflm_problem: str = ""           # analysis.json's first problem, "op: message"
    metric_not_finite: bool = False  # metrics.json has a primary value that is NaN or infinite
    not_finite: tuple = ()           # the figures (of the primary runtime) that are NaN or infinite
    truth_counts: tuple | None = None   # test samples per true class (rows of the confusion matrix)
    pred_counts: tuple | None = None    # test samples per predicted class (its columns)
    voted_pred_counts: tuple | None = None  # the same for the voted groups (anomaly detection)


class Collected(NamedTuple):
    row: dict
    facts: Facts


# --------------------------------------------------------------------------------------------
# reading


def path_of(entry: dict, key: str) -> Path | None:
    """An entry's path for `key`, given at the top level or under a "paths" dict.

    history.json lies beside trained.keras (docs/ARTIFACTS.md): an entry that does not name it at all
    gets that one.
    """
    paths = entry.get("paths")
    where = paths if isinstance(paths, dict) else entry
    p = where.get(key)
    if key == "history" and "history" not in where and where.get("trained"):
        p = Path(where["trained"]).with_name("history.json")
    return Path(p) if p else None


def load(path: Path | None, kind: str | None = None) -> tuple[dict | None, str]:
    """(content, status) with status "ok", "absent" (not expected for this entry), "missing", "unreadable".

    An artifact with a record in engine.artifacts (`kind`) is read and checked through it.
    """
    if path is None:
        return None, "absent"
    if kind == "history":
        if not Path(path).is_file():
            return None, "missing"
        try:
            return artifacts.read_history(path), "ok"
        except TinyMLError:
            return None, "unreadable"
    record = RECORDS.get(kind)
    if record is not None:
        if not Path(path).is_file():
            return None, "missing"
        try:
            return artifacts.read_dict(path, record), "ok"
        except TinyMLError:
            return None, "unreadable"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError):
        return None, "unreadable"
    return (data, "ok") if isinstance(data, dict) else (None, "unreadable")


def file_size(path: Path | None) -> int | None:
    try:
        return path.stat().st_size if path is not None else None
    except OSError:
        return None


def get(d: Any, *keys, default=None):
    """d[k1][k2]... or `default` when any level is not a dict holding the key."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def first(*values):
    for v in values:
        if v is not None:
            return v
    return None


def num(v) -> float | None:
    """A finite number, or None: NaN and infinities are not figures (never shown, never shipped)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def previous_rows(path: Path | None) -> tuple[list | None, str]:
    """The rows of an earlier report.json: (rows, "ok"), or (None, "absent" / "unreadable")."""
    if path is None or not Path(path).is_file():
        return None, "absent"
    prev, _ = load(Path(path), "report")
    if prev is not None and isinstance(prev.get("rows"), list):
        return prev["rows"], "ok"
    return None, "unreadable"


def failure(entry: dict, failed_dir: Path | None) -> dict | None:
    """The first task of the row's chain (stage order) whose last run failed: {task, stage, message}."""
    if failed_dir is None:
        return None
    from urllib.parse import quote

    for name in entry.get("chain") or ():
        rec, _ = load(Path(failed_dir) / (quote(name, safe="") + ".json"))
        if rec is not None:
            return {"task": name, "stage": rec.get("stage") or name.split(":", 1)[0],
                    "message": str(rec.get("message") or "")}
    return None


# --------------------------------------------------------------------------------------------
# rows


def read(entries: list[dict], failed_dir: Path | None = None) -> list[Collected]:
    """One (row, facts) per entry, in entry order."""
    return [_read_one(e, failed_dir) for e in entries]


def _read_one(e: dict, failed_dir: Path | None) -> Collected:
    art, status = {}, {}
    for key in ARTIFACTS:
        art[key], status[key] = load(path_of(e, key), key)
    m, a, s, c, comp, aot, hist, meas = (art[k] for k in ARTIFACTS)
    board = e.get("board")
    runtime = e.get("runtime") or get(s, "runtime") or ("tflm" if board else None)
    row: dict[str, Any] = {
        "model": e.get("model"), "variant": e.get("variant"), "board": board, "runtime": runtime,
        "task": first(get(m, "task"), e.get("task")), "required": bool(e.get("required", False)),
        # a measurement that never ran (no board attached yet) leaves the row's estimate: not a missing figure
        "missing": sorted(k for k, st in status.items() if st in ("missing", "unreadable")
                          and not (k == "size" and board is None) and k != "measure"),
    }
    # ---- accuracy
    primary = get(m, "primary")
    primary = primary if isinstance(primary, dict) else {}
    name = primary.get("name") if isinstance(primary.get("name"), str) else None
    row["metric"] = name
    row["value"] = num(primary.get("value"))
    row["higher_is_better"] = bool(primary.get("higher_is_better")) if name else None
    row["metric_runtime"] = primary.get("runtime")
    keras = num(get(m, "keras", name)) if name else None
    row["keras_value"] = keras
    row["delta_vs_keras"] = (row["value"] - keras) if keras is not None and row["value"] is not None else None
    row["drop"] = None
    if row["delta_vs_keras"] is not None:
        row["drop"] = -row["delta_vs_keras"] if row["higher_is_better"] else row["delta_vs_keras"]
    block = get(m, row["metric_runtime"]) if isinstance(row["metric_runtime"], str) else None
    block = block if isinstance(block, dict) else {}
    voted = block.get("voted") if isinstance(block.get("voted"), dict) else {}
    not_finite = []

    def figure(d: dict, key: str, label: str):
        v = d.get(key)
        if v is not None and num(v) is None and isinstance(v, (int, float)) and not isinstance(v, bool):
            not_finite.append(label)
        return num(v)

    row["test_samples"] = get(m, "counts", "test")
    for k in ("mae", "rmse", "accuracy", "precision", "recall", "f1"):
        row[k] = figure(block, k, k)
    row["average"] = block.get("average")
    for k in ("accuracy", "precision", "recall", "f1"):
        row[f"voted_{k}"] = figure(voted, k, f"voted {k}")
    row["anomaly_threshold"] = figure(block, "threshold", "threshold")
    row["anomaly_error"] = block.get("reconstruction_error") or (
        (get(m, "anomaly", "error") or "mse") if "threshold" in block else None)  # before `error` existed: mse
    row["vote_window"] = voted.get("vote_window")
    row["vote_rule"] = voted.get("vote_rule") or ("max" if "vote_min_members" in voted else None)
    row["vote_k"] = voted.get("vote_k")
    row["vote_count_threshold"] = figure(voted, "vote_count_threshold", "vote count threshold")
    row["vote_error"] = voted.get("error")
    d = block.get("distinct_predictions")
    row["distinct_predictions"] = d if isinstance(d, int) and not isinstance(d, bool) else None
    row["tflm_error"] = get(m, "tflm", "error")
    row["estimate"] = bool(get(s, "estimate", default=False))
    row["breakdown"] = get(s, "breakdown")
    # where the breakdown's bytes come from: the linked ELF, the ELF plus the interpreter from the table of
    # real links, or an estimate without any build (a board the local platform cannot build)
    row["breakdown_basis"] = (None if not row["breakdown"] else "ELF" if not row["estimate"]
                              else "ELF + interpreter estimate" if get(s, "interpreter_estimate") else "estimate, no build")
    row["aot_planned_bytes"] = get(aot, "planned_bytes")
    row["aot_instructions"] = get(aot, "instructions_per_inference")
    row["aot_verified"] = get(aot, "passed")
    # ---- sizes of the model itself
    tflite = first(num(get(a, "tflite_bytes")), num(get(c, "tflite_bytes")), num(get(m, "tflite_bytes")))
    row["tflite_bytes"] = int(tflite) if tflite is not None else None
    keras_bytes = first(file_size(path_of(e, "trained")), num(get(comp, "trained", "keras_bytes")),
                        num(get(c, "keras_bytes")))
    # the literature's Keras size: the trained model's weights alone as HDF5 (no optimizer state)
    h5 = first(num(get(hist, "weights_h5_bytes")), num(get(comp, "trained", "weights_h5_bytes")))
    h5_gzip = first(num(get(hist, "weights_h5_gzip_bytes")), num(get(comp, "trained", "weights_h5_gzip_bytes")))
    row.update({
        "data_bytes": get(a, "flatbuffer", "data_bytes"),
        "non_data_bytes": get(a, "flatbuffer", "non_data_bytes"),
        "c_source_bytes": first(file_size(path_of(e, "header")), get(a, "header_bytes")),
        "tflite_gzip_bytes": first(get(a, "tflite_gzip_bytes"), get(a, "gzip_bytes"), get(c, "tflite_gzip_bytes")),
        "keras_bytes": int(keras_bytes) if keras_bytes is not None else None,
        "keras_gzip_bytes": first(get(comp, "final", "keras_gzip_bytes"), get(comp, "trained", "keras_gzip_bytes")),
        "keras_h5_bytes": int(h5) if h5 is not None else None,
        "keras_h5_gzip_bytes": int(h5_gzip) if h5_gzip is not None else None,
        "compressed_h5_bytes": get(comp, "final", "weights_h5_bytes"),
        "compressed_h5_gzip_bytes": get(comp, "final", "weights_h5_gzip_bytes"),
        "quantization": get(c, "quantization"),
        "params": first(get(a, "params"), get(comp, "final", "params")),
        "macs": first(get(a, "macs"), get(comp, "final", "macs")),
        "arena_bytes": get(a, "arena", "bytes"),
    })
    row["ratio_vs_keras"] = row["tflite_bytes"] / h5 if row["tflite_bytes"] is not None and h5 else None
    gz = num(row["tflite_gzip_bytes"])
    row["gzip_ratio_vs_keras"] = gz / h5_gzip if gz is not None and h5_gzip else None
    # ---- training (history.json, per model)
    row["epochs"] = get(hist, "epochs")
    row["epochs_run"] = get(hist, "epochs_run")
    row["early_stopped"] = get(hist, "early_stopped")
    row["best_val_loss"] = num(get(hist, "best_val_loss"))
    # ---- the sweep point this row belongs to (from the entry: tinyml.toml's sweep, expanded by the dag)
    sweep = e.get("sweep") if isinstance(e.get("sweep"), dict) else {}
    values = sweep.get("values") if isinstance(sweep.get("values"), dict) else {}
    row["sweep_group"] = str(sweep["group"]) if sweep.get("group") is not None and values else None
    row["sweep_kind"] = sweep.get("kind") if row["sweep_group"] else None
    row["sweep_values"] = dict(values) if row["sweep_group"] else None
    keys = sweep.get("keys") if isinstance(sweep.get("keys"), dict) else {}
    row["sweep_keys"] = {k: str(keys.get(k, k)) for k in values} if row["sweep_group"] else None
    # ---- the board
    for k in ("flash_used", "flash_limit", "ram_used", "ram_limit", "flash_over_by", "ram_over_by"):
        v = num(get(s, k))
        row[k] = int(v) if v is not None else None
    for what in ("flash", "ram"):
        used, limit = row[f"{what}_used"], row[f"{what}_limit"]
        row[f"{what}_pct"] = 100.0 * used / limit if used is not None and limit else None
    _latency(row, s, meas, e, failed_dir)
    row["max_latency_ms"] = num(get(s, "max_latency_ms"))
    row["failed"] = failure(e, failed_dir)
    cm = block.get("confusion_matrix")
    return Collected(row, _facts(m, a, s, status["size"], row, tuple(not_finite), cm, voted.get("confusion_matrix")))


def _latency(row: dict, s: dict | None, meas: dict | None, e: dict, failed_dir: Path | None) -> None:
    """Time per inference: measured on the board (measure.json, when it stands for this very firmware) or the
    firmware stage's estimate (size.json) with its band; `latency_kind` says which, `latency_why` why none."""
    basis = get(s, "latency_basis")
    basis = dict(basis) if isinstance(basis, dict) else None
    est = num(get(s, "latency_ms"))
    band = get(basis, "band_ms")
    ok_band = isinstance(band, list) and len(band) == 2 and all(num(b) is not None for b in band)
    row["latency_ms"] = est
    row["latency_low_ms"], row["latency_high_ms"] = (num(band[0]), num(band[1])) if ok_band else (None, None)
    row["latency_kind"] = "estimate" if est is not None else None
    row["latency_why"] = None if est is not None else (get(basis, "why_short") or get(basis, "why_not") or None)
    row["latency_note"] = None
    if basis is not None and est is not None:
        basis["kind"] = "estimate"
    measured = num(get(meas, "latency_ms"))
    if meas is not None and measured is not None and not meas.get("skipped"):
        fw = get(s, "firmware_sha256")
        if fw and meas.get("firmware_sha256") == fw:
            row["latency_ms"] = measured
            row["latency_low_ms"], row["latency_high_ms"] = num(meas.get("latency_min_ms")), num(meas.get("latency_max_ms"))
            row["latency_kind"] = "measured"
            row["latency_why"] = None
            basis = {"kind": "measured",
                     "measured_on": {"board": meas.get("board"), "port": meas.get("port"), "date": meas.get("measured_at"),
                                     "firmware_sha256": fw, "env": meas.get("env")},
                     "runs": meas.get("runs"), "cycles_median": meas.get("cycles_median"), "clock_hz": meas.get("clock_hz"),
                     "timer": meas.get("timer"), "core": meas.get("core"),
                     "range_ms": [row["latency_low_ms"], row["latency_high_ms"]],
                     "estimate": ({"latency_ms": est, **(basis or {})} if est is not None else None)}
            outs = meas.get("outputs") if isinstance(meas.get("outputs"), dict) else {}
            if outs.get("outputs_equal") is False:  # timed, but the board computes something else: say so
                row["latency_note"] = (f"OUTPUTS DIFFER on the board from the host interpreter: "
                                       f"{outs.get('mismatch') or 'see measure.json'}")
        else:
            row["latency_note"] = ("measure.json was measured on another build of this firmware (its hash differs): "
                                   "not shown; `doit` measures the current one")
    elif meas is not None and meas.get("skipped"):
        row["latency_note"] = str(meas["skipped"])
    task = e.get("measure_task")
    if task and failed_dir is not None and row["latency_kind"] != "measured":
        from urllib.parse import quote

        rec, _ = load(Path(failed_dir) / (quote(task, safe="") + ".json"))
        if rec is not None:
            row["latency_note"] = f"not measured: {rec.get('message')}"
    row["latency_basis"] = basis


def _counts(cm) -> tuple[tuple | None, tuple | None]:
    """(per true class, per predicted class) from a confusion matrix, or (None, None)."""
    if not (isinstance(cm, list) and cm and all(isinstance(r, list) and len(r) == len(cm) for r in cm)):
        return None, None
    if not all(isinstance(x, int) and not isinstance(x, bool) for r in cm for x in r):
        return None, None
    return tuple(sum(r) for r in cm), tuple(sum(r[j] for r in cm) for j in range(len(cm)))


def _facts(m: dict | None, a: dict | None, s: dict | None, size_status: str, row: dict,
           not_finite: tuple = (), cm=None, voted_cm=None) -> Facts:
    problem = ""
    if a is not None:
        probs = a.get("problems") or []
        p = probs[0] if isinstance(probs, list) and probs else {}
        p = p if isinstance(p, dict) else {"message": p}
        problem = ": ".join(str(x) for x in (p.get("op"), p.get("message")) if x)
    size_problem = (s.get("error") or s.get("incompatible")) if s is not None else None
    return Facts(
        size_status=size_status,
        size_fits=s["fits"] if s is not None and isinstance(s.get("fits"), bool) else None,
        size_problem=str(size_problem) if size_problem else None,
        tflm_compatible=a.get("tflm_compatible") if a is not None else None,
        tflm_problem=problem,
        metric_not_finite=bool(row["metric"]) and get(m, "primary", "value") is not None and row["value"] is None,
        not_finite=not_finite, truth_counts=_counts(cm)[0], pred_counts=_counts(cm)[1],
        voted_pred_counts=_counts(voted_cm)[1])


# --------------------------------------------------------------------------------------------
# per-layer tables


def layers(entries: list[dict]) -> dict[str, dict]:
    """Per model/variant with a per-layer analysis: {peak_layer, peak_alive_bytes, layers (as in analysis.json)}."""
    out: dict[str, dict] = {}
    for e in entries:
        key = f"{e.get('model')}/{e.get('variant')}"
        if key in out:
            continue
        a, _ = load(path_of(e, "analysis"), "analysis")
        if a and isinstance(a.get("layers"), list):
            out[key] = {"peak_layer": a.get("peak_layer"), "peak_alive_bytes": a.get("peak_alive_bytes"),
                        "layers": a["layers"]}
    return out
