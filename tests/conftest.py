"""Shared fixtures: one full build of the tiny sine project, copied for each test that changes it."""
from __future__ import annotations

from pathlib import Path

import pytest

from project import copy_project, doit, executed, make_project


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> Path:
    """The tiny sine project (two variants, two boards), built once with `doit` as a user would."""
    root = make_project(tmp_path_factory.mktemp("base") / "proj")
    proc = doit(root)
    ran = executed(proc.stdout)
    assert {"dataset:sine", "train:sine", "convert:sine/int8", "firmware:sine/int8@nano33ble"} <= ran
    return root


@pytest.fixture
def proj(built, tmp_path) -> Path:
    """A private copy of the built project, free to change."""
    return copy_project(built, tmp_path / "proj")
