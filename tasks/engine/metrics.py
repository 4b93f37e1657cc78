"""The figures people compare, computed from a runtime's outputs on the test split (numpy, lazily).

Regression: MAE, RMSE. Classification: accuracy, precision, recall, F1 (positive class 1 when
binary, macro otherwise), confusion matrix. Anomaly detection with an autoencoder: reconstruction
error against a threshold of mean + k * std of the training errors, then the same classification
figures, with and without voting over groups of consecutive samples.
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


def anomaly_metrics(outs: dict, inputs: dict, labels, s: dict, npz: Path):
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
