"""The plugin installs as `doit_tinyml` from a wheel as well as editable: every module and data file
is in the wheel, the dependency backend is registered, and a project loads with the installed copy."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from project import make_project

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _uv() -> str | None:
    return shutil.which("uv") or next((str(p) for p in [Path.home() / ".local/bin/uv"] if p.exists()), None)


def test_editable_install_maps_the_import_name_to_tasks():
    import doit_tinyml

    assert Path(doit_tinyml.__file__).resolve() == REPO / "tasks" / "__init__.py"


def test_wheel_holds_every_module_and_data_file_and_installs(tmp_path):
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, text=True)
    (wheel,) = out.glob("doit_tinyml-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"doit_tinyml/" + p.relative_to(REPO / "tasks").as_posix()
                for p in (REPO / "tasks").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert not expected - names, f"missing from the wheel: {sorted(expected - names)[:10]}"
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "[doit.BACKEND]" in entry_points and "doit_tinyml.dag.depdb:TaskDB" in entry_points

    uv = _uv()
    if uv is None:
        pytest.skip("uv is not installed (scripts/setup.sh installs it)")
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    # the plugin's dependencies come from uv's cache (hard links), as a user's offline install would
    r = subprocess.run([uv, "pip", "install", "-q", "--offline", "-p", str(venv / "bin" / "python"), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    root = make_project(tmp_path / "proj")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([str(venv / "bin" / "python"), "-m", "doit", "list", "--all"], cwd=root, capture_output=True,
                       text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert "firmware:sine/int8@nano33ble" in p.stdout
    q = subprocess.run([str(venv / "bin" / "python"), "-c",
                        "import doit_tinyml, doit_tinyml.dag as d; print(doit_tinyml.__file__); print(d._backend())"],
                       cwd=root, capture_output=True, text=True, env=env)
    where, backend = q.stdout.split()
    assert str(venv) in where and backend == "tinyml"
