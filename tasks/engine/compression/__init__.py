"""Compression methods, one module each, as the TinyML literature chains them:

* ``distill``  train a smaller student from the teacher's soft targets              (distill.py)
* ``remove``   structured removal of the least important Dense units / conv filters   (remove.py)
* ``prune``    magnitude pruning (tfmot), polynomial or constant schedule, optional 2:4  (prune.py)
* ``cluster``  weight clustering (tfmot), sparsity-preserving after ``prune``           (cluster.py)
* ``qat``      quantization-aware training (tfmot), pruning/cluster-preserving         (qat.py)

This package's top level is pure Python: `validate_steps` (settings.py) runs when tinyml.toml is
loaded, on the no-op path. `apply(method)` imports a method's module (and TensorFlow) only when a
step runs. Each method is `apply(model, step, ctx) -> (model, record)` with `ctx` a common.Context.
"""
from __future__ import annotations

from typing import Callable

from .settings import METHODS, ORDER, validate_steps  # noqa: F401


def apply(method: str) -> Callable:
    """The `apply(model, step, ctx)` of a method."""
    import importlib

    return importlib.import_module(f".{method}", __name__).apply
