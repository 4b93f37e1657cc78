"""Milliseconds per inference from what the inference executes: the instruction classes, the profile the QEMU
plugin records, the time model on a profile (core timings, flash waits, the band), the fallback on a bare
count, and what a person sees (size.json fields, report columns in every format, the ship decision)."""
from __future__ import annotations

import csv
import json

import pytest

from doit_tinyml.engine import boards, latency, profile
from doit_tinyml.engine.reporting import decide


@pytest.mark.parametrize("mn,ops,expected", [
    ("adds", "r3, #1", ("alu", 1, False)),
    ("add.w", "lr, lr, #1", ("alu", 1, False)),
    ("ldr.w", "r8, [sp]", ("load", 1, False)),
    ("ldrb", "r1, [r0, r2]", ("load", 1, False)),
    ("ldrd", "r2, r3, [r0]", ("load2", 2, False)),
    ("strh", "r2, [r3, #4]", ("store", 1, False)),
    ("push", "{r4, r5, r6, r7, lr}", ("stm", 5, False)),
    ("pop", "{r4, r5, r6, pc}", ("ldm", 4, True)),
    ("ldmia.w", "sp!, {r4, r5, r6, r7, r8, r9, sl, fp, pc}", ("ldm", 9, True)),
    ("bgt.n", "bfe <x>", ("branch", 1, True)),
    ("cbz", "r6, c5a <x>", ("branch", 1, True)),
    ("bls.n", "1a <x>", ("branch", 1, True)),
    ("bics", "r1, r2", ("alu", 1, False)),
    ("itt", "eq", ("it", 1, False)),
    ("moveq", "r0, #1", ("alu", 1, False)),
    ("smlad", "r0, r1, r2, r0", ("dsp", 1, False)),
    ("sxtb16", "r1, r2", ("dsp", 1, False)),
    ("mla", "r0, r1, r2, r3", ("mla", 1, False)),
    ("udiv", "r7, r4, r6", ("div", 1, False)),
    ("vfma.f32", "s15, s12, s14", ("fp_mac", 1, False)),
    ("vmul.f32", "s16, s4, s16", ("fp", 1, False)),
    ("vdiv.f32", "s0, s1, s2", ("fp_div", 1, False)),
    ("vldmia", "sl!, {s12}", ("fp_ldm", 1, False)),
    ("vldmia", "r4!, {s4-s11}", ("fp_ldm", 8, False)),
    ("vpush", "{d8-d15}", ("fp_stm", 16, False)),  # one cycle per word: a D register is two
    ("vpop", "{s16-s31}", ("fp_ldm", 16, False)),
    ("vldr", "s3, [pc, #868]", ("fp_load", 1, False)),
    ("vmov", "r0, s15", ("fp_xfer", 1, False)),
    ("vmov.f32", "s15, s3", ("fp", 1, False)),
    ("vmrs", "APSR_nzcv, fpscr", ("fp_xfer", 1, False)),
    ("bkpt", "0x00ab", ("sys", 1, False)),
])
def test_instruction_classes(mn, ops, expected):
    assert profile.classify(mn, ops) == expected


def _profile_text():
    # two blocks as the plugin writes them: the float MAC loop (run 100 times, left by its jump 99 times; the
    # weight load reads flash, the input load RAM) and a straight block run once
    return ("tinyml-profile 1 begin=1 end=2\n"
            "tb 100 6 100 99 100:4:0:100:0 104:4:100:0:0 108:4 10c:4 110:2 112:2\n"
            "tb 200 2 1 0 200:2 202:2:0:0:1\n")


DIS = {0x100: ("vldmia", "sl!, {s12}"), 0x104: ("vldmia", "fp!, {s14}"), 0x108: ("vfma.f32", "s15, s12, s14"),
       0x10C: ("add.w", "lr, lr, #1"), 0x110: ("cmp", "r7, lr"), 0x112: ("bgt.n", "100 <x>"),
       0x200: ("movs", "r0, #0"), 0x202: ("str", "r0, [r1, #0]")}


@pytest.mark.parametrize("seq, paired", [
    ([("ldr", "r0, [r1]"), ("ldr", "r2, [r3]"), ("ldr", "r4, [r5]")], 2),     # loads pipeline into loads
    ([("str", "r0, [r1]"), ("str", "r2, [r3]"), ("str", "r4, [r5]")], 0),     # nothing pipelines after a store
    ([("ldr", "r0, [r1]"), ("str", "r0, [r3, #20]")], 0),                    # a store already costs its one cycle
    ([("ldr", "r0, [r1]"), ("ldr", "r2, [r0]")], 0),                         # the address needs the loaded value
    ([("ldr", "r0, [r1], #4"), ("ldr", "r2, [r1], #4")], 0),                 # a base update does not pipeline
    ([("ldr", "r0, [r1, #4]!"), ("ldr", "r2, [r3]")], 0),
    ([("vldr", "s0, [r1]"), ("vldr", "s1, [r1, #4]"), ("vstr", "s2, [r2]")], 2),
])
def test_load_pipelining_follows_the_trm(seq, paired):
    """Cortex-M4 TRM 3.3.2: a load pipelines into the next load/store unless it updated its base or the next
    address depends on it; nothing pipelines after a store."""
    dis = {0x100 + 4 * i: insn for i, insn in enumerate(seq)}
    text = "tinyml-profile 1 begin=1 end=2\ntb 100 %d 1 0 %s\n" % (len(seq), " ".join(f"{a:x}:4" for a in dis))
    assert profile.parse(text, dis).blocks[0].paired == paired


def test_a_qemu_that_refuses_the_plugin_falls_back_to_the_count():
    # QEMU 9.0 and later (plugin API 2), and a QEMU built without plugins, as they say it
    assert profile.plugin_refused("qemu-system-arm: Could not load plugin x.so: plugin requires API version 1, "
                                  "but this QEMU supports only a minimum version of 2")
    assert profile.plugin_refused("qemu-system-arm: -plugin x.so: invalid option: TCG plugins not enabled")
    assert not profile.plugin_refused("qemu-system-arm: terminating on signal 15")


def test_the_plugin_output_is_classified_per_block():
    p = profile.parse(_profile_text(), DIS)
    assert p.instructions == 100 * 6 + 2
    loop = next(b for b in p.blocks if b.execs == 100)
    assert loop.classes == {"fp_ldm": 2, "fp_mac": 1, "alu": 2, "branch": 1} and loop.taken == 99
    assert loop.code_reads == 100 and loop.code_reads_fp == 100 and loop.ram_reads == 100 and loop.multi == 2
    assert loop.bytes == 0x114 - 0x100
    d = p.to_dict()
    assert profile.Profile.from_dict(d).totals() == p.totals() and d["block_fields"][-1] == "classes"


def _prof(n_inferences=1):
    d = profile.parse(_profile_text(), DIS).to_dict()
    d["inferences"] = n_inferences
    return d


def test_the_time_model_on_a_profile_by_hand():
    """Core cycles from the M4's timings, flash waits from the board's memory class, then its factor."""
    m = latency.model()
    m4 = m["cores"]["cortex-m4"]
    # the loop per execution at typical costs: 2 VLDM (1 each + 1 per LDM) + VFMA 3 + 2 ALU + branch 1 = 10,
    # 99 taken jumps x P; the straight block: mov 1 + str 1
    P = latency._triple(m4["taken"])[1]
    core = 100 * (2 * 1 + 2 * 1 + 3 + 2 + 1) + 99 * P + (1 + latency._triple(m4["classes"]["store"])[1])
    (lo, typ, hi), by_class = latency.core_cycles(_prof(), "cortex-m4")
    assert typ == pytest.approx(core) and lo <= typ <= hi and by_class["fp_mac"] == 300
    nano = boards.CATALOGUE["nano33ble"]
    mem = m["memory"][nano.memory]
    wait_fp, refill, factor = (latency._triple(mem[k])[1] for k in ("fp_data_wait", "refill", "factor"))
    ms, basis = latency.estimate_from_profile(_prof(), nano, dtype="float32", source="t")
    cycles = (core + 100 * wait_fp + 99 * refill) * factor
    assert ms == pytest.approx(cycles / 64 / 1000, rel=1e-4) and basis["cycles"]["typical"] == round(cycles)
    lo_ms, hi_ms = basis["band_ms"]
    assert lo_ms < ms < hi_ms and basis["kind"] == "estimate" and basis["model"] == "instruction mix"
    # the same profile counted over 4 inferences is a quarter per inference
    ms4, _ = latency.estimate_from_profile(_prof(4), nano, dtype="float32", source="t")
    assert ms4 == pytest.approx(ms / 4, rel=1e-3)


def test_flash_waits_and_caches_order_the_boards():
    """The same code: zero-wait TCM is fastest per MHz, an M4 with uncached float weight reads from flash slowest."""
    p = _prof()
    per_mhz = {}
    for bid in ("teensy41", "nucleo_f446re", "nano33ble", "nucleo_f746zg"):
        b = boards.CATALOGUE[bid]
        ms, basis = latency.estimate_from_profile(p, b, dtype="float32", source="t")
        per_mhz[bid] = ms * b.cpu_mhz
        assert basis["memory"] == b.memory
    assert per_mhz["teensy41"] < per_mhz["nucleo_f746zg"] < per_mhz["nano33ble"]
    # a float profile counted with the M4's FPU says nothing about a core without one
    ms, basis = latency.estimate_from_profile(p, boards.CATALOGUE["nano_33_iot"], dtype="float32", source="t")
    assert ms is None and "cortex-m0+" in basis["why_not"]


def test_a_profile_is_preferred_to_the_bare_count():
    b = boards.CATALOGUE["nucleo_f446re"]
    ms, basis = latency.estimate({"cortex-m4f": 602}, b, dtype="float32", code="plain_c", source="t",
                                 profiles={"cortex-m4f": _prof()})
    assert basis["model"] == "instruction mix" and basis["instructions"] == 602
    ms2, basis2 = latency.estimate({"cortex-m4f": 602}, b, dtype="float32", code="plain_c", source="t")
    assert basis2["model"].startswith("cycles per instruction") and ms2 > 0


def test_the_fallback_on_a_count_and_its_band():
    b = boards.CATALOGUE["nano33ble"]
    ms, basis = latency.estimate({"cortex-m4f": 640_000}, b, dtype="int8", code="cmsis_nn", source="test")
    m = latency.model()
    cpi = latency._triple(m["cores"]["cortex-m4"]["fallback_cpi"]["int8"])
    f = latency._triple(m["memory"]["flash_icache"]["factor"])
    assert ms == pytest.approx(640_000 * cpi[1] * f[1] / 64 / 1000, rel=1e-4)
    lo, hi = basis["band_ms"]
    assert lo == pytest.approx(640_000 * cpi[0] * f[0] / 64e3, rel=1e-3)
    assert hi == pytest.approx(640_000 * cpi[2] * f[2] / 64e3, rel=1e-3)
    assert lo < ms < hi and basis["counted_on"] == "cortex-m4f" and basis["isa_factor"]["typical"] == 1.0
    assert "not a measurement" in basis["note"]


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


def test_aot_profiles_are_found_per_core():
    aot = {"targets": {"mps2_an386": {"board": "mps2_an386", "profile": _prof()},
                       "mps2_an385": {"board": "mps2_an385", "profile": {"blocks": "garbage"}}}}
    assert list(latency.profiles_from_aot(aot)) == ["cortex-m4f"]


def test_every_catalogue_memory_class_and_core_is_in_the_model():
    m = latency.model()
    assert set(boards.MEMORY_CLASSES) == set(m["memory"])
    for b in boards.CATALOGUE.values():
        assert b.memory in m["memory"], b.id
    for mem in m["memory"].values():
        for k in ("data_wait", "fp_data_wait", "refill", "factor"):
            lo, typ, hi = latency._triple(mem[k])
            assert 0 <= lo <= typ <= hi
    for c in ("cortex-m0+", "cortex-m3", "cortex-m4", "cortex-m33", "cortex-m7"):
        for dt in ("int8", "float"):
            lo, typ, hi = latency._triple(m["cores"][c]["fallback_cpi"][dt])
            assert 0 < lo <= typ <= hi
    assert set(m["cores"]["cortex-m4"]["classes"]) == set(profile.CLASSES)
    assert m["sources"]["mlperf"]


def rows(*specs):
    out = []
    for variant, value, ms, limit in specs:
        out.append({"board": "nano33ble", "model": "m", "variant": variant, "runtime": "tflm", "value": value,
                    "metric": "mae", "higher_is_better": False, "fits": "yes", "fits_with_headroom": True,
                    "flash_pct": 1.0, "ram_pct": 1.0, "flash_used": 100, "ram_used": 100, "ship_blocked_by": [],
                    "latency_ms": ms, "max_latency_ms": limit, "latency_kind": "estimate"})
    return out


def test_ship_decision_respects_max_latency():
    # without a limit, the most accurate ships
    assert decide.ship(rows(("float32", 0.01, 9.0, None), ("int8", 0.02, 2.0, None)), 0.1)[0]["variant"] == "float32"
    # with max_latency_ms = 5, the float model is too slow
    rec = decide.ship(rows(("float32", 0.01, 9.0, 5.0), ("int8", 0.02, 2.0, 5.0)), 0.1)[0]
    assert rec["variant"] == "int8" and "~2.00 ms/inference (est.)" in rec["text"]
    # a measured figure says so
    measured = rows(("float32", 0.01, 9.0, 5.0), ("int8", 0.02, 2.0, 5.0))
    measured[1]["latency_kind"] = "measured"
    assert "2.00 ms/inference (measured)" in decide.ship(measured, 0.1)[0]["text"]
    # nothing fast enough (or no estimate): says so
    rec = decide.ship(rows(("float32", 0.01, 9.0, 1.0), ("int8", 0.02, None, 1.0)), 0.1)[0]
    assert rec["variant"] is None and "max_latency_ms = 1" in rec["text"] and "no time estimate" in rec["text"]


def _entry(vd, b, **extra):
    return {"model": "m", "variant": "int8", "required": False, "task": "regression",
            "metrics": vd / "metrics.json", "analysis": vd / "analysis.json", "convert": vd / "convert.json",
            "compress": None, "aot": None, "header": vd / "model_data.cc", "trained": b / "m" / "trained.keras",
            "history": b / "m" / "history.json", "chain": [], "sweep": None, "board": "nano33ble",
            "runtime": "tflm", "size": vd / "nano33ble" / "size.json", **extra}


def _write_variant(b, latency_ms=1.234, basis=None, sha="abc"):
    from doit_tinyml.engine.io import write_json

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
            "latency_ms": latency_ms, "firmware_sha256": sha,
            "latency_basis": basis if basis is not None else {"band_ms": [0.9, 1.8], "instructions": 56000}}
    if latency_ms is None:
        del size["latency_ms"]
    write_json(vd / "nano33ble" / "size.json", size)
    return vd


def test_report_shows_latency_in_every_format(tmp_path, capsys):
    """A size.json with latency_ms: the terminal, md, html, csv and json reports all carry it, marked an estimate."""
    from doit_tinyml import report

    b = tmp_path / "build"
    vd = _write_variant(b)
    report.run([_entry(vd, b)], b, headroom=0.1, gates={}, previous=b / "report.json",
               failed_dir=b / ".tinyml" / "failed")
    out = capsys.readouterr().out
    assert "~1.23 (0.900-1.80)" in out and "an estimate from the instruction profile" in out
    assert "~1.23 (0.900-1.80)" in (b / "report.md").read_text()
    assert "~1.23 (0.900-1.80)" in (b / "report.html").read_text()
    row = next(csv.DictReader((b / "report.csv").open()))
    assert float(row["latency_ms"]) == 1.234 and float(row["latency_high_ms"]) == 1.8
    assert row["latency_kind"] == "estimate"
    rj = json.loads((b / "report.json").read_text())
    assert rj["rows"][0]["latency_basis"]["kind"] == "estimate" and rj["rows"][0]["latency_basis"]["instructions"] == 56000


def _measure(vd, sha, ms=2.5, outputs=None):
    from doit_tinyml.engine import artifacts

    artifacts.write(vd / "nano33ble" / "measure.json", artifacts.Measure(
        board="nano33ble", runtime="tflm", env="nano33ble", port="/dev/ttyACM0", measured_at="2026-12-07T10:00:00+00:00",
        firmware_sha256=sha, core="cortex-m4", clock_hz=64_000_000, timer="dwt", runs=10, cycles=[160_000] * 10,
        cycles_median=160_000, latency_ms=ms, latency_min_ms=ms - 0.1, latency_max_ms=ms + 0.1, outputs=outputs))


def test_a_measurement_whose_outputs_differ_says_so_beside_its_time(tmp_path, capsys):
    from doit_tinyml import report

    b = tmp_path / "build"
    vd = _write_variant(b, sha="f" * 64)
    _measure(vd, "f" * 64, outputs={"outputs_equal": False, "mismatch": "input 3: output 0 is 12, the host says 14"})
    e = _entry(vd, b, measure=vd / "nano33ble" / "measure.json", measure_task="measure:m/int8@nano33ble")
    report.run([e], b, headroom=0.1, gates={}, previous=b / "report.json", failed_dir=b / ".tinyml" / "failed")
    out = capsys.readouterr().out
    assert "2.50 measured" in out and "OUTPUTS DIFFER on the board" in out and "output 0 is 12" in out
    assert "OUTPUTS DIFFER on the board" in json.loads((b / "report.json").read_text())["rows"][0]["latency_note"]


def test_a_measurement_of_this_firmware_is_shown_as_measured(tmp_path, capsys):
    from doit_tinyml import report

    b = tmp_path / "build"
    vd = _write_variant(b, sha="f" * 64)
    _measure(vd, "f" * 64)
    e = _entry(vd, b, measure=vd / "nano33ble" / "measure.json", measure_task="measure:m/int8@nano33ble")
    report.run([e], b, headroom=0.1, gates={}, previous=b / "report.json", failed_dir=b / ".tinyml" / "failed")
    out = capsys.readouterr().out
    assert "2.50 measured" in out and "~1.23" not in out
    assert "2.50 measured" in (b / "report.md").read_text() and "2.50 measured" in (b / "report.html").read_text()
    row = next(csv.DictReader((b / "report.csv").open()))
    assert row["latency_kind"] == "measured" and float(row["latency_ms"]) == 2.5
    basis = json.loads((b / "report.json").read_text())["rows"][0]["latency_basis"]
    assert basis["kind"] == "measured" and basis["measured_on"]["port"] == "/dev/ttyACM0"
    assert basis["measured_on"]["firmware_sha256"] == "f" * 64 and basis["estimate"]["latency_ms"] == 1.234


def test_a_stale_measurement_is_never_shown_as_current(tmp_path, capsys):
    from doit_tinyml import report

    b = tmp_path / "build"
    vd = _write_variant(b, sha="a" * 64)
    _measure(vd, "b" * 64)  # measured on another build of the firmware
    e = _entry(vd, b, measure=vd / "nano33ble" / "measure.json", measure_task="measure:m/int8@nano33ble")
    report.run([e], b, headroom=0.1, gates={}, previous=b / "report.json", failed_dir=b / ".tinyml" / "failed")
    out = capsys.readouterr().out
    assert "~1.23 (0.900-1.80)" in out and "2.50" not in out and "measured on another build" in out
    row = json.loads((b / "report.json").read_text())["rows"][0]
    assert row["latency_kind"] == "estimate" and row["latency_ms"] == 1.234


def test_a_tflm_row_without_a_library_says_why_it_has_no_time(tmp_path, capsys):
    from doit_tinyml import report

    b = tmp_path / "build"
    vd = _write_variant(b, latency_ms=None, basis={"why_not": "no TFLite Micro instruction count: ...",
                                                    "why_short": "no TFLM library"})
    report.run([_entry(vd, b)], b, headroom=0.1, gates={}, previous=b / "report.json",
               failed_dir=b / ".tinyml" / "failed")
    assert "- (no TFLM library)" in capsys.readouterr().out
    assert "- (no TFLM library)" in (b / "report.md").read_text()
