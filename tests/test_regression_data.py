"""Regression from a user's own data, through the whole chain (issue 8, item 1).

Every CSV regression and every `.npz` regression with a 1-D `y` used to fail in `train` ("needs shape
()"): the dataset kept y as (n,) while a Dense(1) model outputs (n, 1). The dataset stage now stores a
1-D regression target as one output column, so both sources build to firmware like the sine does.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from project import doit, executed, make_project

TOML = """
[project]
seed = 3

[models.csvreg]
task = "regression"
[models.csvreg.dataset]
source = "data/plant.csv"
label = "power"
normalize = "standard"
[models.csvreg.model]
layers = [{ type = "dense", units = 8, activation = "relu" }, { type = "dense", units = 1 }]
[models.csvreg.training]
epochs = 4
learning_rate = 0.01
[models.csvreg.variants.float32]
[models.csvreg.firmware]
sketch = "sketches/sine"
boards = ["nano33ble"]

[models.npzreg]
task = "regression"
[models.npzreg.dataset]
source = "data/readings.npz"
[models.npzreg.model]
layers = [{ type = "dense", units = 8, activation = "relu" }, { type = "dense", units = 1 }]
[models.npzreg.training]
epochs = 4
learning_rate = 0.01
[models.npzreg.variants.int8]
quantization = "int8"
representative_samples = 20
[models.npzreg.firmware]
sketch = "sketches/sine"
boards = ["nano33ble"]
"""


@pytest.fixture(scope="module")
def regression_built(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("reg") / "p", TOML)
    rng = np.random.default_rng(0)
    (root / "data").mkdir()
    temp, hum = rng.uniform(10, 35, 120), rng.uniform(20, 90, 120)
    rows = ["temp,humidity,power"] + [f"{t:.2f},{h:.1f},{3 * t - 0.5 * h + 7:.3f}" for t, h in zip(temp, hum)]
    (root / "data" / "plant.csv").write_text("\n".join(rows) + "\n")
    x = rng.uniform(-1, 1, (120, 3)).astype("float32")
    np.savez(root / "data" / "readings.npz", x=x, y=(x @ np.array([0.5, -1.0, 0.25])).astype("float64"))  # 1-D y
    proc = doit(root)
    return root, proc


@pytest.mark.slow
@pytest.mark.parametrize("model, variant, n_features", [("csvreg", "float32", 2), ("npzreg", "int8", 3)])
def test_regression_from_files_builds_to_firmware(regression_built, model, variant, n_features):
    root, proc = regression_built
    ran = executed(proc.stdout)
    assert {f"dataset:{model}", f"train:{model}", f"firmware:{model}/{variant}@nano33ble"} <= ran, proc.stdout
    b = root / "build" / model
    meta = json.loads((b / "dataset.json").read_text())
    assert meta["input_shape"] == [n_features] and meta["output_shape"] == [1]
    history = json.loads((b / "history.json").read_text())
    assert history["epochs_run"] == 4 and all(math.isfinite(v) for v in history["loss"])
    metrics = json.loads((b / variant / "metrics.json").read_text())
    assert "mae" in json.dumps(metrics)
    size = json.loads((b / variant / "nano33ble" / "size.json").read_text())
    assert size["flash_used"] > (b / variant / "model.tflite").stat().st_size
    # and a second doit runs nothing
    assert not executed(doit(root).stdout) - {"report"}
