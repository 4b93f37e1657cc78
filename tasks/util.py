"""Transition shim: the helpers moved to the engine (engine.io, engine.errors, engine.keras_io).

Kept only while modules still import `util`; new code imports the engine modules directly.
"""
from . import __version__ as PLUGIN_VERSION  # noqa: F401
from .engine.errors import TinyMLError  # noqa: F401
from .engine.io import (atomic_path, dumps_json, native_output_to, read_json, sha256_file,  # noqa: F401
                        sha256_text, write_bytes, write_json, write_text)
from .engine.keras_io import (import_tensorflow, normalise_keras_zip, seed_everything)  # noqa: F401
