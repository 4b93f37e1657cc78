"""Milliseconds per inference from QEMU instruction counts: the model, its inputs read defensively, and
what a person sees (size.json fields, report columns in every format, the ship decision's max_latency_ms)."""
from __future__ import annotations

import csv
import json

import pytest

from doit_tinyml.engine import boards, latency
from doit_tinyml.engine.reporting import decide


def test_the_formula_and_its_band():
    b = boards.CATALOGUE["nano33ble"]  # Cortex-M4F at 64 MHz, flash behind the NVMC cache
    ms, basis = latency.estimate({"cortex-m4f": 640_000}, b, dtype="int8", code="cmsis_nn", source="test")
    m = latency.model()
    cpi = m["cores"]["cortex-m4"]["cpi_int8"]
    mem = m["memory"]["flash_cache"]
    assert ms == pytest.approx(640_000 * cpi["typical"] * mem["typical"] / 64 / 1000)
    lo, hi = basis["band_ms"]
    assert lo == pytest.approx(640_000 * cpi["low"] * mem["low"] / 64e3, rel=1e-3)
    assert hi == pytest.approx(640_000 * cpi["high"] * mem["high"] / 64e3, rel=1e-3)
    assert lo < ms < hi and basis["counted_on"] == "cortex-m4f" and basis["isa_factor"]["typical"] == 1.0
    assert "not a measurement" in basis["note"]


def test_slower_memory_and_clock_scale_the_estimate():
    n = {"cortex-m4f": 1_000_000}
    nano, _ = latency.estimate(n, boards.CATALOGUE["nano33ble"], dtype="int8", code="plain_c", source="t")
    samd51, basis = latency.estimate(n, boards.CATALOGUE["adafruit_pybadge_m4"], dtype="int8", code="plain_c", source="t")
    # 120 MHz against 64 MHz, but SAMD51 flash has wait states behind a small cache
    assert samd51 == pytest.approx(nano * 64 / 120 * 1.2 / 1.0, rel=1e-6)
    assert basis["memory"] == "flash_small_cache"


def test_other_instruction_sets():
    n = {"cortex-m4f": 1_000_000}
    m0, basis = latency.estimate(n, boards.CATALOGUE["nano_33_iot"], dtype="int8", code="cmsis_nn", source="t")
    assert basis["counted_on"] == "cortex-m4f" and 3.0 <= basis["isa_factor"]["typical"] <= 3.8
    assert "scaled to cortex-m0+" in basis["note"]
    # a float model counted with the M4's FPU says nothing about soft-float code: no estimate, and why
    ms, basis = latency.estimate(n, boards.CATALOGUE["nano_33_iot"], dtype="float32", code="plain_c", source="t")
    assert ms is None and "FPU" in basis["why_not"]
    # a Cortex-M3 count (the AOT stage's mps2-an385 run) is used as it is on a Cortex-M3 board
    ms3, basis = latency.estimate({"cortex-m4f": 1_000_000, "cortex-m3": 1_400_000}, boards.CATALOGUE["bluepill_f103c8"],
                                  dtype="float32", code="plain_c", source="t")
    assert basis["counted_on"] == "cortex-m3" and basis["instructions"] == 1_400_000 and ms3 > 0
    # no Cortex-M: no cycles-per-instruction model
    ms, basis = latency.estimate(n, boards.CATALOGUE["uno"], dtype="int8", code="plain_c", source="t")
    assert ms is None and "no cycles-per-instruction model for avr" in basis["why_not"]


@pytest.mark.parametrize("aot,expected", [
    ({"instructions_per_inference": 1234}, {"cortex-m4f": 1234}),
    ({"instructions_per_inference": 1234, "targets": {"cortex-m3": {"instructions_per_inference": 2000}}},
     {"cortex-m4f": 1234, "cortex-m3": 2000}),
    ({"targets": [{"board": "mps2_an385", "instructions_per_inference": 7}]}, {"cortex-m3": 7}),
    ({"target": {"core": "cortex-m3", "instructions_per_inference": 9}, "instructions_per_inference": 5},
     {"cortex-m3": 9, "cortex-m4f": 5}),
    ({"instructions_per_inference": None, "targets": "garbage"}, {}),
    (None, {}),
])
def test_aot_counts_are_read_defensively(aot, expected):
    assert latency.counts_from_aot(aot) == expected


def test_every_catalogue_memory_class_is_in_the_model():
    m = latency.model()
    for b in boards.CATALOGUE.values():
        assert b.memory in m["memory"], b.id
    for c in ("cortex-m0+", "cortex-m3", "cortex-m4", "cortex-m33", "cortex-m7"):
        for dt in ("cpi_int8", "cpi_float"):
            v = m["cores"][c][dt]
            assert 0 < v["low"] <= v["typical"] <= v["high"]
    assert m["sources"]["mlperf"] and m["error_band"]


def rows(*specs):
    out = []
    for variant, value, ms, limit in specs:
        out.append({"board": "nano33ble", "model": "m", "variant": variant, "runtime": "tflm", "value": value,
                    "metric": "mae", "higher_is_better": False, "fits": "yes", "fits_with_headroom": True,
                    "flash_pct": 1.0, "ram_pct": 1.0, "flash_used": 100, "ram_used": 100, "ship_blocked_by": [],
                    "latency_ms": ms, "max_latency_ms": limit})
    return out


def test_ship_decision_respects_max_latency():
    # without a limit, the most accurate ships
    assert decide.ship(rows(("float32", 0.01, 9.0, None), ("int8", 0.02, 2.0, None)), 0.1)[0]["variant"] == "float32"
    # with max_latency_ms = 5, the float model is too slow
    rec = decide.ship(rows(("float32", 0.01, 9.0, 5.0), ("int8", 0.02, 2.0, 5.0)), 0.1)[0]
    assert rec["variant"] == "int8" and "~2.00 ms/inference" in rec["text"]
    # nothing fast enough (or no estimate): says so
    rec = decide.ship(rows(("float32", 0.01, 9.0, 1.0), ("int8", 0.02, None, 1.0)), 0.1)[0]
    assert rec["variant"] is None and "max_latency_ms = 1" in rec["text"] and "no time estimate" in rec["text"]


def test_report_shows_latency_in_every_format(tmp_path, capsys):
    """A size.json with latency_ms: the terminal, md, html, csv and json reports all carry it."""
    from doit_tinyml import report
    from doit_tinyml.engine.io import write_json

    b = tmp_path / "build"
    vd = b / "m" / "int8"
    write_json(vd / "metrics.json", {"schema": "metrics/1", "task": "regression", "counts": {"test": 10},
                                     "tflite_bytes": 1000, "primary": {"name": "mae", "value": 0.1,
                                                                       "higher_is_better": False, "runtime": "tflm"},
                                     "litert": {"mae": 0.1}, "tflm": {"mae": 0.1}, "keras": {"mae": 0.1},
                                     "agreement": None})
    size = {"schema": "size/1", "board": "nano33ble", "runtime": "tflm", "estimate": False, "flash_used": 50_000,
            "flash_limit": 983040, "ram_used": 9000, "ram_limit": 262144, "flash_over_by": 0, "ram_over_by": 0,
            "fits": True, "breakdown": {"flash": {"model": 1000, "inference": 40_000, "application": 9000},
                                        "ram": {"arena": 2000, "stack_heap": 5120, "application": 1880}},
            "latency_ms": 1.234, "latency_basis": {"band_ms": [0.9, 1.8], "instructions": 56000}}
    write_json(vd / "nano33ble" / "size.json", size)
    entry = {"model": "m", "variant": "int8", "required": False, "task": "regression",
             "metrics": vd / "metrics.json", "analysis": vd / "analysis.json", "convert": vd / "convert.json",
             "compress": None, "aot": None, "header": vd / "model_data.cc", "trained": b / "m" / "trained.keras",
             "history": b / "m" / "history.json", "chain": [], "sweep": None, "board": "nano33ble",
             "runtime": "tflm", "size": vd / "nano33ble" / "size.json"}
    report.run([entry], b, headroom=0.1, gates={}, previous=b / "report.json", failed_dir=b / ".tinyml" / "failed")
    assert "~1.23 (0.900-1.80)" in capsys.readouterr().out  # the terminal table: ms/inf (est.)
    assert "~1.23 (0.900-1.80)" in (b / "report.md").read_text()
    assert "~1.23 (0.900-1.80)" in (b / "report.html").read_text()
    row = next(csv.DictReader((b / "report.csv").open()))
    assert float(row["latency_ms"]) == 1.234 and float(row["latency_high_ms"]) == 1.8
    rj = json.dumps(json.loads((b / "report.json").read_text()))
    assert '"latency_ms": 1.234' in rj and '"instructions": 56000' in rj
