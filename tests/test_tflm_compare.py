"""Target outputs against the host interpreter's: integers byte for byte, float32 within float32 rounding."""
from __future__ import annotations

import numpy as np

from doit_tinyml.engine.tflm_target import compare


def _hex(rows, dtype):
    return {i: np.asarray(r, dtype=dtype).tobytes().hex() for i, r in enumerate(rows)}


def test_float_outputs_that_differ_by_m4_rounding_agree():
    """The shipped tapping_anomaly example: the Cortex-M4 differs from the host by at most 5.7e-6 (fused
    multiply-adds, another order of sums); that is the same model computing the same thing."""
    host = np.array([[0.0512, -0.0301, 0.0044, 0.0], [0.0931, 0.0102, -0.0007, 0.0005]], dtype=np.float32)
    target = host + np.array([[5.7e-6, -3e-6, 1e-6, 4e-7], [-5.2e-6, 2e-6, 0.0, -8e-7]], dtype=np.float32)
    out = compare(_hex(target, np.float32), host, "float32")
    assert out["outputs_equal"] and not out["bit_identical"] and out["max_abs_diff"] < 6e-6
    assert "float32 rounding" in out["tolerance"]


def test_float_outputs_that_differ_for_real_do_not():
    host = np.array([[0.5, -0.25, 0.125]], dtype=np.float32)
    target = host.copy()
    target[0, 1] = -0.2493  # 0.14 % of the largest output: a wrong kernel, not rounding
    out = compare(_hex(target, np.float32), host, "float32")
    assert not out["outputs_equal"] and "vector 0, output element 1" in out["mismatch"]


def test_int8_outputs_are_compared_byte_for_byte():
    host = np.array([[1, -5, 7]], dtype=np.int8)
    assert compare(_hex(host, np.int8), host, "int8")["outputs_equal"]
    off = host.copy()
    off[0, 2] = 8
    out = compare(_hex(off, np.int8), host, "int8")
    assert not out["outputs_equal"] and out["max_abs_diff"] == 1


def test_a_short_output_is_named():
    host = np.array([[0.5, 0.25]], dtype=np.float32)
    out = compare({0: "0000"}, host, "float32")
    assert not out["outputs_equal"] and "printed 2 output bytes, expected 8" in out["mismatch"]
