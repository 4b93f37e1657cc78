"""Callable dataset sources that return what a dataset must not be (tests/bad_configs)."""
import numpy as np


def strings():
    return np.array([["a"], ["b"]] * 10), np.zeros(20)


def mismatched():
    return np.zeros((20, 2), "float32"), np.zeros(19, "float32")


def with_nan():
    x = np.linspace(0, 1, 40, dtype="float32").reshape(20, 2)
    x[5, 1] = np.nan
    return x, x[:, 0]


def not_a_tuple():
    return 42


def two_features():
    x = np.linspace(-1, 1, 80, dtype="float32").reshape(40, 2)
    return x, x[:, 0] - x[:, 1]
