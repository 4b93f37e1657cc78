"""DatasetSettings.deps: the files a dataset is made from, for doit's file_dep. Data files for file
sources; for a callable, its module and the modules it imports from its own package (or, for a module
in the project folder, from beside it), found with ast without importing anything."""
from __future__ import annotations

import sys

from doit_tinyml import config
from doit_tinyml.engine import data
from project import make_project

TOML = """
[models.m]
task = "regression"

[models.m.dataset]
source = "{source}"

[models.m.model]
layers = [{{ type = "dense", units = 1 }}]

[models.m.training]
epochs = 2

[models.m.variants.float32]
"""


def write(root, files: dict):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


PACKAGE = {
    "sensors/__init__.py": "",
    "sensors/data.py": (
        "import json\n"
        "import numpy as np\n"                       # third party: not a dependency
        "from . import filters\n"
        "from .io.readers import read_log\n"
        "from sensors import units\n"
        "import helpers\n"                           # a module beside the package, in the project
        "def load():\n"
        "    from .late import extra\n"              # lazy imports count too
        "    import sensors.calib as c\n"
        "    return read_log()\n"),
    "sensors/filters.py": "from .maths import smooth\n",
    "sensors/maths.py": "import math\n",
    "sensors/io/__init__.py": "",
    "sensors/io/readers.py": "from ..units import G\n",
    "sensors/units.py": "G = 9.81\n",
    "sensors/late.py": "extra = 1\n",
    "sensors/calib.py": "",
    "sensors/unused.py": "",                        # not imported: not a dependency
    "helpers.py": "import sensors.units\n",
    "other.py": "",
}


def test_a_callables_package_files_are_its_deps(tmp_path, monkeypatch):
    root = make_project(tmp_path / "p", TOML.format(source="sensors.data:load"), sketch=None)
    write(root, PACKAGE)
    before = set(sys.modules)
    (m,) = config.load(root / "tinyml.toml").models
    assert not {"sensors", "helpers"} & set(sys.modules) - before        # found by reading, nothing imported
    assert m.dataset.deps == ("helpers.py", "sensors/__init__.py", "sensors/calib.py", "sensors/data.py",
                              "sensors/filters.py", "sensors/io/__init__.py", "sensors/io/readers.py",
                              "sensors/late.py", "sensors/maths.py", "sensors/units.py")


def test_a_top_level_module_and_its_neighbours(tmp_path):
    write(tmp_path, {"mydata.py": "import os\nimport shapes\nfrom numpy import zeros\ndef load(): pass\n",
                     "shapes.py": "import missing_module\n"})
    assert data.callable_files("mydata:load", tmp_path) == ("mydata.py", "shapes.py")
    # a module outside the project: only its own package counts, never the environment beside it
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    write(outside, {"ext_mod.py": "import shapes_elsewhere\n", "shapes_elsewhere.py": ""})
    sys.path.insert(0, str(outside))
    try:
        assert data.callable_files("ext_mod:load", tmp_path) == (str((outside / "ext_mod.py").resolve()),)
    finally:
        sys.path.remove(str(outside))


def test_unknown_module_and_file_sources(tmp_path):
    assert data.callable_files("no_such_module_here:load", tmp_path) == ()
    root = make_project(tmp_path / "p", TOML.format(source="sine"), sketch=None)
    (m,) = config.load(root / "tinyml.toml").models
    assert m.dataset.deps == ()
    (root / "data").mkdir()
    (root / "data" / "r.csv").write_text("a,y\n" + "".join(f"{i},{i}\n" for i in range(20)))
    (root / "tinyml.toml").write_text(TOML.format(source="data/r.csv").replace('source = "data/r.csv"',
                                                                            'source = "./data/../data/r.csv"\nlabel = "y"'))
    (m,) = config.load(root / "tinyml.toml").models
    assert m.dataset.deps == ("data/r.csv",) and m.dataset.source == "data/r.csv"
