"""The verdicts: does a row fit, its warnings, what to ship per board, the CI gates, the diff.

Decided from the rows collect.py read (and its `Facts`); nothing here reads a file. Also the
quantized / float32 ratios of each row (its float32 sibling at the same point, board and runtime).
"""
from __future__ import annotations

import statistics
from typing import Any, Iterable

from .collect import Collected, Facts
from .columns import DIFFED, fmt_metric, fmt_ms, metric_label


# --------------------------------------------------------------------------------------------
# fits


def judge(collected: Iterable[Collected], *, headroom: float | None = None,
          required: Iterable[tuple] = ()) -> list[dict]:
    """The rows with `fits`, `fits_text`, the `required` flag and (given a headroom) `fits_with_headroom`."""
    required = {tuple(x) for x in required}
    rows = []
    for row, facts in collected:
        if row["failed"] is not None:
            # a failed stage: its older artifacts (if any) describe another build; show why instead
            f = row["failed"]
            row["fits"], row["fits_text"] = "failed", f"failed at {f['stage']} ({f['task']}): {f['message']}"
            row["value"] = None
        elif facts.metric_not_finite:
            row["fits"], row["fits_text"] = "failed", "metric is not a finite number: see metrics.json"
        else:
            row["fits"], row["fits_text"] = fits(row, facts)
        row["required"] = row["required"] or (row["model"], row["variant"]) in required
        if headroom is not None:
            row["fits_with_headroom"] = fits_with_headroom(row, headroom) if row["board"] else None
        row["_warnings"] = figure_warnings(row, facts)
        rows.append(row)
    for row, extra in zip(rows, training_warnings(rows)):
        row["_warnings"] += extra
    for row in rows:
        ws = sorted(row.pop("_warnings"), key=lambda w: not w[1])  # what blocks shipping first
        row["warnings"] = [text for text, _ in ws]
        row["ship_blocked_by"] = [text for text, blocks in ws if blocks]
    pair_with_float(rows)
    return rows


def fits(row: dict, facts: Facts) -> tuple[str, str]:
    """(verdict, text): yes, estimate, no, incompatible, missing; "-" without a board."""
    if row["board"] is None:
        return "-", "-"
    # A model the runtime cannot execute does not "fit", whatever its size: say why first.
    if row["runtime"] in (None, "tflm"):
        if facts.tflm_compatible is False:
            return "incompatible", f"incompatible ({facts.tflm_problem or 'TFLM cannot run it'})"
        if row.get("tflm_error"):
            return "incompatible", f"incompatible (TFLM: {row['tflm_error']})"
    if facts.size_problem:
        return "incompatible", f"incompatible ({facts.size_problem})"
    if facts.size_fits is not None:
        if facts.size_fits:
            return ("estimate", "yes (estimate)") if row["estimate"] else ("yes", "yes")
        over = []
        if row["flash_over_by"]:
            over.append(f"+{row['flash_over_by']:,} B flash")
        if row["ram_over_by"]:
            over.append(f"+{row['ram_over_by']:,} B RAM")
        return "no", f"NO ({', '.join(over) or 'over the limit'} over{', estimate' if row['estimate'] else ''})"
    what = ("size.json unreadable" if facts.size_status == "unreadable"
            else "no size.json: firmware stage failed or not run")
    return "missing", f"missing ({what})"


def fits_with_headroom(r: dict, headroom: float) -> bool:
    if r["fits"] not in ("yes", "estimate"):
        return False
    for what in ("flash", "ram"):
        used, limit = r[f"{what}_used"], r[f"{what}_limit"]
        if used is None or not limit or used > limit * (1.0 - headroom):
            return False
    return True


# --------------------------------------------------------------------------------------------
# warnings: figures that cannot be compared, and what they keep from being shipped

SIBLING_FACTOR = 2.0  # early stopping at a validation loss above this many times the siblings' median


def figure_warnings(row: dict, facts: Facts) -> list[tuple[str, bool]]:
    """(text, blocks shipping) for the figures of one row: an empty class, a constant prediction, NaN."""
    out: list[tuple[str, bool]] = []
    task = row.get("task")
    if facts.not_finite:
        out.append((f"metrics.json holds {', '.join(facts.not_finite)} that {'is' if len(facts.not_finite) == 1 else 'are'} "
                    "not a finite number", True))
    truth, pred = facts.truth_counts, facts.pred_counts
    if task in ("binary", "autoencoder") and truth is not None and len(truth) == 2:
        pos, neg = ("anomalous", "normal") if task == "autoencoder" else ("positive (class 1)", "negative (class 0)")
        if truth[1] == 0:
            out.append((f"the test split has no {pos} sample: precision, recall and F1 are 0 whatever the model "
                        "does", True))
        if truth[0] == 0:
            out.append((f"the test split has no {neg} sample: false alarms cannot show, accuracy is the recall", True))
    elif task == "multiclass" and truth is not None:
        empty = [str(i) for i, n in enumerate(truth) if n == 0]
        if empty:
            many = len(empty) > 1
            out.append((f"class{'es' if many else ''} {', '.join(empty)} {'have' if many else 'has'} no test "
                        f"sample: macro precision, recall and F1 count {'them' if many else 'it'} as 0", False))
    n = row.get("test_samples")
    constant = row.get("distinct_predictions") == 1
    if row.get("distinct_predictions") is None and pred is not None and sum(pred) > 1:
        constant = sum(1 for x in pred if x) == 1   # an older metrics.json: from the confusion matrix
    if constant and (n is None or n > 1):
        if task == "regression":
            what = "gives the same output for every test sample"
        elif task == "autoencoder":
            what = ("flags every test sample as anomalous" if pred and pred[0] == 0 else
                    "flags no test sample as anomalous")
        elif pred is not None and any(pred):
            what = f"predicts class {next(i for i, x in enumerate(pred) if x)} for every test sample"
        else:
            what = "gives the same prediction for every test sample"
        out.append((f"{what} (a constant prediction)", True))
    vp = facts.voted_pred_counts
    if task == "autoencoder" and vp is not None and len(vp) == 2 and sum(vp) > 1 and 0 in vp:
        what = "flags every group" if vp[0] == 0 else "flags no group"
        rule = row.get("vote_rule")
        hint = ': try [anomaly] vote_threshold = "mean+k*std"' if rule == "max" and vp[1] == 0 else ""
        out.append((f"voting {what} (rule {rule or '?'}), so the voted figures are constant{hint}", False))
    return out


def training_warnings(rows: list[dict]) -> list[list[tuple[str, bool]]]:
    """Per row: early stopping far above its sweep siblings (models in the same model sweep group).

    A model whose training stopped early with a best validation loss more than SIBLING_FACTOR times the
    median best validation loss of the other models of its sweep group is flagged on every row of it.
    History is per model, so only model sweeps have siblings; without a sweep nothing is compared.
    """
    per_model: dict[str, dict] = {}
    for r in rows:
        if r.get("sweep_kind") == "model" and r["model"] not in per_model:
            per_model[r["model"]] = r
    groups: dict[str, list[dict]] = {}
    for r in per_model.values():
        groups.setdefault(r["sweep_group"], []).append(r)
    flagged: dict[str, str] = {}
    for group, members in groups.items():
        for r in members:
            best = r.get("best_val_loss")
            if not r.get("early_stopped") or best is None:
                continue
            others = [o["best_val_loss"] for o in members if o is not r and o.get("best_val_loss") is not None]
            if not others:
                continue
            med = statistics.median(others)
            if med >= 0 and best > SIBLING_FACTOR * med:
                times = f", {best / med:.1f}x" if med > 0 else ", above"
                at = (f" (epoch {r['epochs_run']} of {r['epochs']})"
                      if r.get("epochs_run") is not None and r.get("epochs") is not None else "")
                flagged[r["model"]] = (
                    f"training stopped early{at} at validation loss {best:.4g}{times} the median of its sweep "
                    f"siblings in {group} ({med:.4g}): raise [training] early_stopping patience or check this point")
    return [[(flagged[r["model"]], True)] if r["model"] in flagged else [] for r in rows]


def warning_list(rows: list[dict]) -> list[dict]:
    """The report's warnings, once per model/variant; one line for a model when every variant has it."""
    variants: dict[str, list[str]] = {}
    texts: dict[tuple, dict] = {}
    for r in rows:
        vs = variants.setdefault(r["model"], [])
        if r["variant"] not in vs:
            vs.append(r["variant"])
        for t in r.get("warnings") or []:
            w = texts.setdefault((r["model"], t), {"variants": [], "blocks_ship": t in r["ship_blocked_by"]})
            if r["variant"] not in w["variants"]:
                w["variants"].append(r["variant"])
    out = []
    for (model, text), w in texts.items():
        if len(variants[model]) > 1 and w["variants"] == variants[model]:
            out.append({"model": model, "variant": None, "text": text, "blocks_ship": w["blocks_ship"]})
        else:
            out += [{"model": model, "variant": v, "text": text, "blocks_ship": w["blocks_ship"]}
                    for v in w["variants"]]
    return out


# --------------------------------------------------------------------------------------------
# quantized against float32, per point


def pair_with_float(rows: list[dict]) -> None:
    """Set `float_ratio_tflite` and `float_ratio_time` (quantized / float32) on each quantized row.

    The float32 sibling has the same model, board and runtime, and the same sweep point: in a variant
    sweep a float32 point with the same swept values, else the model's float32 variant outside any
    variant sweep. Without exactly one such sibling the ratios are None.
    """
    for r in rows:
        r["float_ratio_tflite"] = r["float_ratio_time"] = None
    floats = [r for r in rows if r.get("quantization") == "float32"]
    for r in rows:
        if r.get("quantization") in (None, "float32"):
            continue
        same = [f for f in floats if (f["model"], f["board"], f["runtime"]) == (r["model"], r["board"], r["runtime"])]
        if r.get("sweep_kind") == "variant":
            point = [f for f in same if f.get("sweep_kind") == "variant" and f["sweep_group"] == r["sweep_group"]
                     and f["sweep_values"] == r["sweep_values"]]
            same = point or [f for f in same if f.get("sweep_kind") != "variant"]
        else:
            same = [f for f in same if f.get("sweep_kind") != "variant"]
        if len(same) != 1:
            continue
        f = same[0]
        if r["tflite_bytes"] is not None and f["tflite_bytes"]:
            r["float_ratio_tflite"] = r["tflite_bytes"] / f["tflite_bytes"]
        if r.get("latency_ms") is not None and f.get("latency_ms"):
            r["float_ratio_time"] = r["latency_ms"] / f["latency_ms"]


# --------------------------------------------------------------------------------------------
# diff against the previous report


def row_key(r: dict) -> str:
    key = f"{r.get('model')}/{r.get('variant')}"
    if r.get("board"):
        key += f" @ {r['board']}"
        if r.get("runtime") and r["runtime"] != "tflm":
            key += f" [{r['runtime']}]"
    return key


def diff(rows: list[dict], previous_rows: list[dict]) -> list[dict]:
    """Per row key: "new", "removed", "changed" (old -> new, delta per diffed column) or "unchanged"."""
    old = {row_key(r): r for r in previous_rows if isinstance(r, dict)}
    new = {row_key(r): r for r in rows}
    out = []
    for k, r in new.items():
        if k not in old:
            out.append({"key": k, "status": "new", "changes": {}})
            continue
        changes = {}
        for col in DIFFED:
            a, b = old[k].get(col.key), r.get(col.key)
            if a != b:
                delta = b - a if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None
                changes[col.key] = {"old": a, "new": b, "delta": delta}
        if old[k].get("fits") != r.get("fits"):
            changes["fits"] = {"old": old[k].get("fits"), "new": r.get("fits"), "delta": None}
        out.append({"key": k, "status": "changed" if changes else "unchanged", "changes": changes})
    out += [{"key": k, "status": "removed", "changes": {}} for k in old if k not in new]
    return out


# --------------------------------------------------------------------------------------------
# what to ship


def ship(rows: list[dict], headroom: float) -> list[dict]:
    """Per (board, model): the most accurate variant that fits with `headroom` to spare."""
    out = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["board"]:
            groups.setdefault((r["board"], r["model"]), []).append(r)
    for (board, model), rs in groups.items():
        fitting = [r for r in rs if r["fits_with_headroom"] and r["value"] is not None]
        # [boards.<id>] max_latency_ms: only variants whose estimated time per inference is known and within it
        limit = next((r.get("max_latency_ms") for r in rs if r.get("max_latency_ms") is not None), None)
        too_slow = []
        if limit is not None:
            too_slow = [r for r in fitting if r.get("latency_ms") is None or r["latency_ms"] > limit]
            fitting = [r for r in fitting if r not in too_slow]
        ok = [r for r in fitting if not r.get("ship_blocked_by")]
        rec: dict[str, Any] = {"board": board, "model": model, "headroom": headroom}
        if ok:
            sign = -1.0 if ok[0]["higher_is_better"] else 1.0
            best = min(ok, key=lambda r: (sign * r["value"], r["flash_used"] or 0, r["ram_used"] or 0))
            rec.update({"variant": best["variant"], "runtime": best["runtime"], "metric": best["metric"],
                        "value": best["value"], "flash_pct": best["flash_pct"], "ram_pct": best["ram_pct"],
                        "estimate": best["fits"] == "estimate", "latency_ms": best.get("latency_ms")})
            what = f"{model}/{best['variant']}" + (f" [{best['runtime']}]" if best["runtime"] not in (None, "tflm") else "")
            ms = ("" if best.get("latency_ms") is None else
                  f", {fmt_ms(best['latency_ms'])} ms/inference (measured)" if best.get("latency_kind") == "measured"
                  else f", ~{fmt_ms(best['latency_ms'])} ms/inference (est.)")
            rec["text"] = (f"Ship: {board} -> {what} ({metric_label(best['metric'])} {fmt_metric(best['value'])}, "
                           f"flash {best['flash_pct']:.1f} %, RAM {best['ram_pct']:.1f} %{ms}"
                           f"{', estimate' if rec['estimate'] else ''})")
        else:
            rec["variant"] = None
            if fitting:
                # fits, but its figures cannot be compared: say why instead of recommending it
                reasons = {r["variant"]: r["ship_blocked_by"][0] for r in fitting}
                if len(set(reasons.values())) == 1:
                    why = next(iter(reasons.values()))
                else:
                    why = "; ".join(f"{v}: {t}" for v, t in reasons.items())
                rec["text"] = f"Ship: {board} -> no ship decision for {model}: {why}"
            elif not any(r["flash_used"] is not None for r in rs):
                rec["text"] = f"Ship: {board} -> unknown for {model}: no firmware size yet (run `doit firmware`)"
            elif not any(r["value"] is not None for r in rs):
                rec["text"] = f"Ship: {board} -> unknown for {model}: no metrics yet (run `doit evaluate`)"
            elif too_slow:
                unknown = [r for r in too_slow if r.get("latency_ms") is None]
                rec["text"] = (f"Ship: {board} -> nothing of {model} fits with {headroom * 100:.0f} % headroom within "
                               f"max_latency_ms = {limit:g}"
                               + (f" ({len(unknown)} fitting variant(s) have no time estimate)" if unknown else ""))
            else:
                rec["text"] = (f"Ship: {board} -> nothing of {model} fits with {headroom * 100:.0f} % headroom; "
                               "see the fits column")
        out.append(rec)
    return out


# --------------------------------------------------------------------------------------------
# CI gates


def gate_settings(gates: dict | None) -> dict:
    """The gates as report.json records them: required (sorted [model, variant] pairs), max_accuracy_drop."""
    gates = gates or {}
    return {"required": sorted([list(x) for x in {tuple(x) for x in gates.get("required") or ()}]),
            "max_accuracy_drop": gates.get("max_accuracy_drop")}


def check_gates(rows: list[dict], gates: dict | None) -> list[str]:
    """Reasons the build must fail (empty: pass)."""
    gates = gates or {}
    required = {tuple(x) for x in gates.get("required") or ()}
    required |= {(r["model"], r["variant"]) for r in rows if r.get("required")}
    max_drop = gates.get("max_accuracy_drop")
    reasons = []
    for model, variant in sorted(required):
        rs = [r for r in rows if r["model"] == model and r["variant"] == variant]
        if not rs:
            reasons.append(f"{model}/{variant} is required but is not in this build (check the variant name in tinyml.toml)")
            continue
        for r in rs:
            if r["fits"] == "failed":
                reasons.append(f"{model}/{variant} is required but {r['fits_text']}")
                continue
            if r["board"] is None or r["fits"] in ("yes", "estimate"):
                continue
            where = f"{r['board']}" + (f" [{r['runtime']}]" if r["runtime"] not in (None, "tflm") else "")
            if r["fits"] == "no":
                reasons.append(f"{model}/{variant} is required but does not fit on {where}: {r['fits_text']}")
            elif r["fits"] == "incompatible":
                reasons.append(f"{model}/{variant} is required but cannot run on {where}: {r['fits_text']}")
            else:
                reasons.append(f"{model}/{variant} is required but its firmware for {where} has no size.json "
                               f"(the firmware stage failed or did not run: see `doit firmware`)")
    if max_drop is not None:
        for model, variant in sorted(required):  # the gate is on required variants only
            rs = [r for r in rows if r["model"] == model and r["variant"] == variant]
            if not rs:
                continue
            r = rs[0]
            label = metric_label(r["metric"]) if r["metric"] else "metric"
            if r["value"] is None:
                reasons.append(f"{model}/{variant}: no metrics.json, so the accuracy gate cannot be checked "
                               f"(run `doit evaluate:{model}/{variant}`)")
            elif r["keras_value"] is None:
                reasons.append(f"{model}/{variant}: metrics.json has no Keras reference {label}, so the accuracy gate "
                               f"cannot be checked")
            elif r["drop"] > float(max_drop) + 1e-12:
                verb = "loses" if r["higher_is_better"] else "rises by"
                reasons.append(f"{model}/{variant} {verb} {r['drop']:.4g} {label} against the Keras reference "
                               f"({fmt_metric(r['keras_value'])} -> {fmt_metric(r['value'])}); "
                               f"allowed: {float(max_drop):g} (max_accuracy_drop)")
    return reasons
