"""doit-tinyml: dataset -> trained model -> compressed model -> .tflite -> C header -> firmware -> report.

A project's dodo.py is two lines:

    from tasks import load_project
    globals().update(load_project("tinyml.toml"))

Importing this package is cheap: no TensorFlow, tfmot, PlatformIO or numpy until a stage runs.
"""
from .util import PLUGIN_VERSION as __version__, TinyMLError


def load_project(path="tinyml.toml"):
    """DOIT_CONFIG and the task creators for the project described by `path` (see tasks.dag)."""
    from .dag import load_project as _load

    return _load(path)


__all__ = ["load_project", "TinyMLError", "__version__"]
