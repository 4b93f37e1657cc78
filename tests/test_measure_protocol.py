"""The measure stage's line protocol (engine/measure.py), line by line: what the harness prints is parsed with the
build it names, and a damaged report is one clear error. (End to end with QEMU as the board: test_measure.py.)"""
from __future__ import annotations

import pytest

# ------------------------------------------------------------------------------ the protocol, line by line (fast)
_CORE_LINE = "core cpuid=410fc241 fpu=1 f_cpu=0 core_clock=25000000 timer=systick runtime=aot build=0badcafe"


def _block(*extra: str) -> list[str]:
    return [_CORE_LINE, "arena used=32 size=32", "stack used=260 method=painted (__StackLimit)", "cycles 10 12 11",
            *extra]


def test_the_harness_report_is_parsed_with_its_build():
    from doit_tinyml.engine import measure

    p = measure.parse(_block("out 0 0a0b"))
    assert p["core"] == "cortex-m4" and p["build"] == "0badcafe" and p["outputs"] == {0: "0a0b"}
    assert measure.summarise(p, 25_000_000)["cycles_median"] == 11


def test_a_damaged_report_is_one_clear_error():
    from doit_tinyml.engine import measure
    from doit_tinyml.engine.errors import TinyMLError

    with pytest.raises(TinyMLError, match="does not understand"):  # a character lost in an output line
        measure.parse(_block("out 0 0a0"))
    with pytest.raises(TinyMLError, match="lacks cycles"):
        measure.parse(_block()[:3])
    with pytest.raises(TinyMLError, match="timer does not run"):  # micros() at 0 Hz counts nothing
        measure.summarise(measure.parse(_block()[:3] + ["cycles 0 0 0"]), 48_000_000)
