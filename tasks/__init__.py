"""doit-tinyml: dataset -> trained model -> compressed model -> .tflite -> C header -> firmware -> report.

A project's dodo.py is two lines:

    from doit_tinyml import load_project
    globals().update(load_project("tinyml.toml"))

Importing this package is cheap: no TensorFlow, tfmot, PlatformIO or numpy until a stage runs.
The repository keeps the package in `tasks/` (the stage table); it installs as `doit_tinyml`.
"""
__version__ = "0.2.0"

from .engine.errors import TinyMLError  # noqa: E402


def load_project(path="tinyml.toml"):
    """DOIT_CONFIG and the task creators for the project described by `path` (see the dag module)."""
    from .dag import load_project as _load

    return _load(path)


__all__ = ["load_project", "TinyMLError", "__version__"]
