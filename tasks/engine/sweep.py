"""Sweeps: one table in tinyml.toml that varies settings over lists, expanded into one model or
variant per point, with a readable generated name. Pure Python (runs when tinyml.toml loads).

    [models.sine.sweep]                      # every point is a model: sine-units16, sine-units32, ...
    "model.layers[0,1].units" = [16, 32, 64] # a dotted path into the model's table; [0,1] sets both layers

    [models.sine.variants.pruned.sweep]      # every point is a variant: pruned-final_sparsity0p5, ...
    "steps[0].final_sparsity" = [0.5, 0.7, 0.9]

Several keys make the product of their lists (`combine = "zip"` pairs them up instead, lists of equal
length). A path names an existing table or list element; its last key may be one the table does not
set yet (the setting's default is then replaced). Every point is then validated like a hand-written
table; a mistake is reported with the sweep key and value that made it.
"""
from __future__ import annotations

import copy
import itertools
import math
import re
from typing import Any

from .errors import TinyMLError

_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+(?:\s*,\s*\d+)*)\])?$")
COMBINE = ("product", "zip")
MAX_POINTS = 1000


def parse_path(path: str) -> list[tuple[str, list[int] | None]]:
    """'model.layers[0,1].units' -> [('model', None), ('layers', [0, 1]), ('units', None)]."""
    segments = []
    for part in path.split("."):
        m = _SEGMENT.match(part.strip())
        if not m:
            raise ValueError(part)
        idx = [int(i) for i in m.group(2).split(",")] if m.group(2) else None
        segments.append((m.group(1), idx))
    return segments


def _targets(table: dict, segments, path: str, where: str) -> list[tuple[dict, str]]:
    """The (container, key) pairs a path sets; the last key may be new, everything before must exist."""
    current: list[Any] = [table]
    for depth, (key, idx) in enumerate(segments):
        last = depth == len(segments) - 1
        nxt = []
        for node in current:
            if not isinstance(node, dict):
                raise TinyMLError(f"{where} key {path!r}: {'.'.join(s for s, _ in segments[:depth])!r} is not a "
                                  f"table, so it has no {key!r}")
            if last and idx is None:
                nxt.append((node, key))
                continue
            if key not in node:
                known = ", ".join(sorted(node)) or "nothing"
                raise TinyMLError(f"{where} key {path!r}: no setting {key!r} here (this table sets: {known}); "
                                  f"a sweep varies settings the table already has")
            value = node[key]
            if idx is None:
                nxt.append(value)
                continue
            if not isinstance(value, list):
                raise TinyMLError(f"{where} key {path!r}: {key!r} is not a list, so it has no [{idx[0]}]")
            for i in idx:
                if not 0 <= i < len(value):
                    raise TinyMLError(f"{where} key {path!r}: {key!r} has {len(value)} entries, no [{i}]")
                if last:
                    nxt.append((value, i))
                else:
                    nxt.append(value[i])
        current = nxt
    return current


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return type(v).__name__


def _fmt(v: Any) -> str:
    """A value as part of a name: 16, 0p5, 1em05, int8, true."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        v = int(v)
    text = repr(v) if isinstance(v, float) else str(v)
    text = text.replace(".", "p").replace("-", "m").replace("+", "")
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def _short_names(paths: list[str]) -> dict[str, str]:
    """path -> a short readable name: its last key, or more of it when two paths end alike."""
    segs = {p: [s for s, _ in parse_path(p)] for p in paths}
    depth = {p: 1 for p in paths}
    while True:
        names = {p: "_".join(segs[p][-depth[p]:]) for p in paths}
        clash = [p for p in paths if list(names.values()).count(names[p]) > 1 and depth[p] < len(segs[p])]
        if not clash:
            return names
        for p in clash:
            depth[p] += 1


def expand(name: str, table: Any, *, where: str, kind: str) -> list[tuple[str, Any, dict | None]]:
    """[(point name, table with the point's values, sweep record)] for a model or variant table.

    Without a `sweep` key: [(name, table, None)]. The sweep record is
    {"group": name, "kind": kind, "values": {short: value}, "keys": {short: path}}.
    """
    if not isinstance(table, dict) or "sweep" not in table:
        return [(name, table, None)]
    sweep = table["sweep"]
    swhere = f"[{where}.sweep]"
    if not isinstance(sweep, dict) or not sweep:
        raise TinyMLError(f"{swhere}: must be a table of \"dotted.path\" = [values, ...] (e.g. "
                          f"\"model.layers[0].units\" = [16, 32, 64]), got {sweep!r}")
    combine = sweep.get("combine", "product")
    if combine not in COMBINE:
        raise TinyMLError(f"{swhere} key 'combine': got {combine!r}; allowed: {', '.join(COMBINE)}")
    axes = {k: v for k, v in sweep.items() if k != "combine"}
    if not axes:
        raise TinyMLError(f"{swhere}: no setting to sweep; add \"dotted.path\" = [values, ...]")
    base = {k: v for k, v in table.items() if k != "sweep"}
    for path, values in axes.items():
        try:
            segments = parse_path(path)
        except ValueError as e:
            raise TinyMLError(f"{swhere} key {path!r}: {str(e)!r} is not a key or key[index, ...]; write a dotted "
                              f"path such as \"model.layers[0,1].units\" or \"steps[0].final_sparsity\"") from None
        if segments[0][0] == "sweep":
            raise TinyMLError(f"{swhere} key {path!r}: a sweep cannot vary itself")
        if not isinstance(values, list):
            raise TinyMLError(f"{swhere} key {path!r}: must be a list of the values to try, got {_kind(values)} "
                              f"{values!r}")
        if not values:
            raise TinyMLError(f"{swhere} key {path!r}: the list is empty; give at least one value")
        kinds = {_kind(v) for v in values}
        if len(kinds) > 1:
            raise TinyMLError(f"{swhere} key {path!r}: the values mix types ({', '.join(sorted(kinds))}): "
                              f"{values!r}; give values of one type")
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise TinyMLError(f"{swhere} key {path!r}: {values!r} holds a value that is not a finite number")
        keys = [repr(v) for v in values]
        if len(set(keys)) != len(keys):
            raise TinyMLError(f"{swhere} key {path!r}: {values!r} repeats a value; each point must differ")
        _targets(copy.deepcopy(base), segments, path, swhere)  # the path exists
    paths = list(axes)
    if combine == "zip":
        lengths = {len(axes[p]) for p in paths}
        if len(lengths) > 1:
            raise TinyMLError(f"{swhere}: combine = \"zip\" pairs the lists up, so they need one length; got "
                              + ", ".join(f"{p!r}: {len(axes[p])}" for p in paths))
        points = list(zip(*(axes[p] for p in paths)))
    else:
        points = list(itertools.product(*(axes[p] for p in paths)))
    if len(points) > MAX_POINTS:
        raise TinyMLError(f"{swhere}: {len(points)} points; at most {MAX_POINTS} (shorten the lists)")
    short = _short_names(paths)
    out = []
    for values in points:
        t = copy.deepcopy(base)
        for path, value in zip(paths, values):
            for container, key in _targets(t, parse_path(path), path, swhere):
                container[key] = copy.deepcopy(value)
        point = name + "".join(f"-{short[p]}{_fmt(v)}" for p, v in zip(paths, values))
        record = {"group": name, "kind": kind, "values": {short[p]: v for p, v in zip(paths, values)},
                  "keys": {short[p]: p for p in paths}}
        out.append((point, t, record))
    return out
