"""The figures people compare, computed from a runtime's outputs on the test split (numpy, lazily).

Regression: MAE, RMSE. Classification: accuracy, precision, recall, F1 (positive class 1 when
binary, macro otherwise), confusion matrix. Anomaly detection with an autoencoder: reconstruction
error (mean squared or mean absolute) against a threshold of mean + k * std of the training errors,
then the same classification figures, with and without voting over groups of consecutive samples
(a group is anomalous when its flagged members exceed T, learned from the training groups: their
maximum, or mean + vote_k * std). Every runtime block also records `distinct_predictions`, so the
report can tell a constant prediction from a model.
"""
from __future__ import annotations

from pathlib import Path

from .errors import TinyMLError


def max_abs(a, b) -> float:
    import numpy as np

    return float(np.max(np.abs(a.reshape(len(a), -1) - b.reshape(len(b), -1)))) if len(a) else 0.0


def supervised_metrics(task: str, out, y, meta: dict, npz: Path):
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
        return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2))),
                "distinct_predictions": distinct(pred)}, pred
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
    m = classification_metrics(y, pred, n_classes, binary=(task == "binary"))
    m["distinct_predictions"] = distinct(pred)
    return m, pred


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


ERRORS = ("mse", "mae")
VOTE_RULES = ("max", "mean+k*std")


def reconstruction_error(x, x_hat, kind: str = "mse"):
    """Reconstruction error per sample (per window in window mode): "mse" mean squared, "mae" mean absolute."""
    import numpy as np

    n = len(x)
    diff = x.reshape(n, -1).astype(np.float64) - x_hat.reshape(n, -1)
    if kind == "mae":
        return np.mean(np.abs(diff), axis=1)
    if kind == "mse":
        return np.mean(diff ** 2, axis=1)
    raise TinyMLError(f"evaluate: anomaly error = {kind!r}; allowed: {', '.join(ERRORS)}.")


def distinct(pred) -> int:
    """How many different predictions (decisions, or output vectors for regression) a runtime gave."""
    import numpy as np

    pred = np.asarray(pred)
    if len(pred) == 0:
        return 0
    return int(len(np.unique(pred.reshape(len(pred), -1), axis=0)))


def vote_count_threshold(train_counts, rule: str, vote_k: float) -> tuple[float, str]:
    """T from the flagged members per training group: a group is anomalous when its flagged count > T.

    "max": T = the most flagged members of any training group (no training group is flagged).
    "mean+k*std": T = mean + vote_k * std (population std) of the flagged counts per training group.
    """
    import numpy as np

    counts = np.asarray(train_counts, dtype=np.float64)
    if rule == "max":
        return float(counts.max()), "flagged members > the most flagged members of any training group"
    if rule == "mean+k*std":
        return (float(counts.mean() + vote_k * counts.std()),
                f"flagged members > mean + {vote_k:g} * std of the flagged members per training group")
    raise TinyMLError(f"evaluate: anomaly vote_threshold = {rule!r}; allowed: {', '.join(VOTE_RULES)}.")


def anomaly_metrics(outs: dict, inputs: dict, labels, s: dict, npz: Path):
    import math

    import numpy as np

    kind = s.get("error", "mse")
    err_train = reconstruction_error(inputs["train"], outs["train"], kind)
    err_test = reconstruction_error(inputs["test"], outs["test"], kind)
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
        "reconstruction_error": kind,
        "threshold": threshold,
        "train_error_mean": mean,
        "train_error_std": std,
        "k": s["k"],
        "test_error_mean": float(err_test.mean()),
        "distinct_predictions": distinct(flags),
    })
    vw = s["vote_window"]
    if vw > 1:
        rule, vote_k = s.get("vote_threshold", "max"), float(s.get("vote_k", 1.0))
        train_flags = (err_train > threshold).astype(np.int64)
        n_train_groups = len(train_flags) // vw
        n_groups = n // vw
        if n_train_groups and n_groups:
            train_counts = train_flags[: n_train_groups * vw].reshape(n_train_groups, vw).sum(axis=1)
            t, text = vote_count_threshold(train_counts, rule, vote_k)
            if abs(t - round(t)) < 1e-9:  # mean + k * std landing on a whole count: no rounding noise
                t = float(round(t))
            # the smallest flagged count above T; when no group could ever exceed T, a fully flagged one does
            need = math.floor(t) + 1
            capped = need > vw
            need = min(need, vw)
            counts = flags[: n_groups * vw].reshape(n_groups, vw).sum(axis=1)
            group_pred = (counts >= need).astype(np.int64)
            group_truth = labels[: n_groups * vw].reshape(n_groups, vw).max(axis=1)
            voted = classification_metrics(group_truth, group_pred, 2, binary=True)
            voted.update({
                "vote_window": vw,
                "vote_rule": rule,
                "vote_k": vote_k if rule == "mean+k*std" else None,
                "vote_count_threshold": t,
                "vote_min_members": need,
                "vote_fraction": need / vw,
                "train_group_counts": {"mean": float(train_counts.mean()), "std": float(train_counts.std()),
                                       "max": int(train_counts.max()), "groups": int(n_train_groups)},
                "threshold_rule": (text if not capped else
                                   f"{text}, but T = {t:.4g} >= vote_window {vw}: capped, a fully flagged group "
                                   "is anomalous"),
                "groups": int(n_groups),
                "dropped_tail_samples": int(n - n_groups * vw),
                "distinct_predictions": distinct(group_pred),
            })
            m["voted"] = voted
        else:
            m["voted"] = {"error": f"vote_window {vw} is larger than the training ({len(train_flags)}) "
                                   f"or test ({n}) split"}
    return m, flags
