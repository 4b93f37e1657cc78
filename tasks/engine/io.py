"""Artifacts on disk: atomic writes, strict deterministic JSON, hashes, deterministic .npz, native logs.

Every artifact is written to a temporary file in its folder and renamed into place, so a build
killed at any moment leaves the old file or the new one, never half of one. JSON is strict (no
NaN, no Infinity) with sorted keys, so identical content gives identical bytes. Pure Python: no
numpy until an .npz is written or read.
"""
from __future__ import annotations

import contextlib
import hashlib
import io as _io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

from .errors import TinyMLError

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if needed) for the block: one process at a time."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    A process killed inside the block leaves at most a `.tmp-*` file, never a half-written target.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".tmp-{target.name}-*"):  # left by a killed earlier run
        if stale.is_dir():
            import shutil

            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.name}-", suffix=suffix or target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():  # mkstemp makes 0600; artifacts get the usual 0644 less the umask
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            if tmp_path.is_dir():
                import shutil

                shutil.rmtree(tmp_path, ignore_errors=True)
            else:
                tmp_path.unlink()


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def dumps_json(obj: Any, where: str = "JSON") -> str:
    """Strict JSON (no NaN or Infinity, which are not JSON), sorted keys: identical content, identical bytes."""
    try:
        return json.dumps(obj, indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n"
    except ValueError:
        path = _non_finite_path(json.loads(json.dumps(obj, default=_json_default)))
        raise TinyMLError(f"{where}: the figure at {path or '?'} is not a finite number (NaN or infinity); "
                          "the stage that computed it met data, a loss or weights that are not numbers") from None


def _non_finite_path(obj: Any, path: str = "") -> str | None:
    import math

    if isinstance(obj, float) and not math.isfinite(obj):
        return path or "the top level"
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = ((f"[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for k, v in items:
        found = _non_finite_path(v, f"{path}.{k}" if isinstance(obj, dict) else f"{path}{k}")
        if found:
            return found.lstrip(".")
    return None


def write_json(target: str | os.PathLike, obj: Any) -> None:
    """Write strict JSON atomically with sorted keys, so identical content gives identical bytes."""
    write_text(target, dumps_json(obj, where=str(target)))


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _json_default(o: Any) -> Any:
    # numpy scalars and arrays, Paths, tuples-as-dataclasses
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_npz(path: str | os.PathLike, arrays: dict) -> None:
    """np.savez, but byte-deterministic (fixed zip timestamps, sorted names) and atomic."""
    import numpy as np

    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name in sorted(arrays):
                buf = _io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_DATE), buf.getvalue())


def read_npz(path: str | os.PathLike) -> dict:
    """Every array of an .npz (no pickles), or a TinyMLError naming the file."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise TinyMLError(f"{path}: cannot be read as an .npz ({e}); delete it and run `doit` again") from None


@contextlib.contextmanager
def native_output_to(log_path: str | os.PathLike) -> Iterator[None]:
    """Send file descriptor 2 (TensorFlow's and TFLite's C++ logging) to `log_path` for the block.

    Keeps the terminal readable; the log stays beside the artifacts for when something fails.
    File descriptors belong to the process: under `doit -P thread` two tasks would swap each
    other's stderr, so in a worker thread native output is left on the terminal (run parallel
    builds with processes, doit's default for `-n`, to keep one log per task).
    """
    import sys
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "ab") as f:
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
