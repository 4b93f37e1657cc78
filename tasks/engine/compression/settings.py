"""The compression steps' settings: defaults, allowed values, stated bounds, and their validation.

Pure Python (this runs when tinyml.toml is loaded). Every mistake raises a one-line TinyMLError
naming the variant's step, the key, what was given and what is allowed.
"""
from __future__ import annotations

import difflib
import math
from typing import Any

from ..errors import TinyMLError

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




def _closest(word: str, choices) -> str:
    m = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.5)
    return f" (did you mean {m[0]!r}?)" if m else ""


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# What each method needs of the model it is given: the earlier steps it cannot follow, and why.
# Any order these rules allow is run as written (e.g. prune then remove, as the 1D-CNN literature does).
CANNOT_FOLLOW: dict[str, dict[str, str]] = {
    "distill": {m: "distill trains a new student from scratch, so what the earlier steps did to the teacher "
                   "does not carry into it; put distill first" for m in ("distill", "remove", "prune", "cluster", "qat")},
    "remove": {"cluster": "removing units and fine-tuning breaks the clusters; put remove before cluster",
               "qat": "qat must be the last step"},
    "prune": {"cluster": "pruning after clustering breaks the clusters (clustering after pruning keeps the zeros); "
                         "put prune before cluster",
              "qat": "qat must be the last step"},
    "cluster": {"cluster": "the weights are already clustered; give one cluster step with the clusters you want",
                "qat": "qat must be the last step"},
    "qat": {"qat": "quantization-aware training appears twice; keep one qat step, last"},
}
REPEATABLE = ("prune", "remove")   # gradual pruning, or removal in rounds


def _order_problem(method: str, before: list[str]) -> str | None:
    """Why `method` cannot come after the steps `before` (None: it can)."""
    for earlier in before:
        why = CANNOT_FOLLOW.get(method, {}).get(earlier)
        if why:
            return f"{method!r} cannot come after {earlier!r}: {why}"
    return None


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
        problem = _order_problem(method, [o["method"] for o in out])
        if problem:
            raise TinyMLError(f"{loc}: {problem}")
        seen[method] = i
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


