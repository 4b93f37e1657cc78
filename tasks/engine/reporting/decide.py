"""The verdicts: does a row fit, what to ship per board, the CI gates, the diff against the previous report.

Decided from the rows collect.py read (and its `Facts`); nothing here reads a file.
"""
from __future__ import annotations

from typing import Any, Iterable

from .collect import Collected, Facts
from .columns import DIFFED, fmt_metric, metric_label, shorten


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
        rows.append(row)
    return rows


def fits(row: dict, facts: Facts) -> tuple[str, str]:
    """(verdict, text): yes, estimate, no, incompatible, missing; "-" without a board."""
    if row["board"] is None:
        return "-", "-"
    # A model the runtime cannot execute does not "fit", whatever its size: say why first.
    if row["runtime"] in (None, "tflm"):
        if facts.tflm_compatible is False:
            return "incompatible", f"incompatible ({shorten(facts.tflm_problem or 'TFLM cannot run it')})"
        if row.get("tflm_error"):
            return "incompatible", f"incompatible (TFLM: {shorten(row['tflm_error'])})"
    if facts.size_problem:
        return "incompatible", f"incompatible ({shorten(facts.size_problem)})"
    if facts.size_fits is not None:
        if facts.size_fits:
            return ("estimate", "estimate") if row["estimate"] else ("yes", "yes")
        over = []
        if row["flash_over_by"]:
            over.append(f"+{row['flash_over_by']} B flash")
        if row["ram_over_by"]:
            over.append(f"+{row['ram_over_by']} B RAM")
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
        ok = [r for r in rs if r["fits_with_headroom"] and r["value"] is not None]
        rec: dict[str, Any] = {"board": board, "model": model, "headroom": headroom}
        if ok:
            sign = -1.0 if ok[0]["higher_is_better"] else 1.0
            best = min(ok, key=lambda r: (sign * r["value"], r["flash_used"] or 0, r["ram_used"] or 0))
            rec.update({"variant": best["variant"], "runtime": best["runtime"], "metric": best["metric"],
                        "value": best["value"], "flash_pct": best["flash_pct"], "ram_pct": best["ram_pct"],
                        "estimate": best["fits"] == "estimate"})
            what = f"{model}/{best['variant']}" + (f" [{best['runtime']}]" if best["runtime"] not in (None, "tflm") else "")
            rec["text"] = (f"Ship: {board} -> {what} ({metric_label(best['metric'])} {fmt_metric(best['value'])}, "
                           f"flash {best['flash_pct']:.1f} %, RAM {best['ram_pct']:.1f} %"
                           f"{', estimate' if rec['estimate'] else ''})")
        else:
            rec["variant"] = None
            if not any(r["flash_used"] is not None for r in rs):
                rec["text"] = f"Ship: {board} -> unknown for {model}: no firmware size yet (run `doit firmware`)"
            elif not any(r["value"] is not None for r in rs):
                rec["text"] = f"Ship: {board} -> unknown for {model}: no metrics yet (run `doit evaluate`)"
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
        checked = sorted(required) or sorted({(r["model"], r["variant"]) for r in rows})
        for model, variant in checked:
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
