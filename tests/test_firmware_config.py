"""[models.<m>.firmware] envs and tflm, [boards.<id>] max_latency_ms / memory: checked when doit loads the
project, one line naming the file, the table, the key (or the path / environment variable) and what is allowed.

Pure Python and fast: no TFLM tree is needed (a fake one with TFLM's marker files stands in)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from doit_tinyml.config import ConfigError, load
from doit_tinyml.engine import tflm_link
from doit_tinyml.engine.errors import TinyMLError

REPO = Path(__file__).resolve().parents[1]

TOML = """
[project]
build_dir = "build"

[models.sine]
task = "regression"
[models.sine.dataset]
source = "sine"
[models.sine.model]
layers = [{{ type = "dense", units = 4, activation = "relu" }}, {{ type = "dense", units = 1 }}]
[models.sine.variants.int8]
quantization = "int8"
[models.sine.firmware]
sketch = "sketches/sine"
{firmware}
{extra}
"""


def project(tmp_path: Path, firmware: str, extra: str = "") -> Path:
    shutil.copytree(REPO / "sketches" / "sine", tmp_path / "sketches" / "sine")
    (tmp_path / "tinyml.toml").write_text(TOML.format(firmware=firmware, extra=extra))
    return tmp_path / "tinyml.toml"


def fake_arduino_tree(root: Path, *, cmsis: bool = True, per_channel: bool = False) -> Path:
    """The marker files of an Arduino_TensorFlowLite library (no TFLM source)."""
    micro = root / "src" / "tensorflow" / "lite" / "micro"
    (micro / "kernels").mkdir(parents=True)
    (micro / "micro_interpreter.cpp").write_text("// marker\n")
    (micro / "debug_log.h").write_text('extern "C" void DebugLog(const char* s);\n')
    (micro / "kernels" / "fully_connected.h").write_text("// is_per_channel\n" if per_channel else "//\n")
    (root / "library.properties").write_text("name=Arduino_TensorFlowLite\nversion=2.4.0-ALPHA\n")
    if cmsis:
        (micro / "kernels" / "cmsis_nn").mkdir()
        (root / "src" / "third_party" / "cmsis_nn" / "Source").mkdir(parents=True)
    return root


def error(path: Path) -> str:
    with pytest.raises(ConfigError) as e:
        load(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path.name) in msg
    return msg


# ----------------------------------------------------------------------------------------------- envs
def test_envs_list_takes_the_board_of_each_environment(tmp_path):
    p = load(project(tmp_path, 'envs = ["nano33ble"]\nboards = ["pico"]'))
    fw = p.models[0].firmware
    assert fw.envs == (("nano33ble", "nano33ble"),)
    assert fw.boards == ("pico", "nano33ble")          # generated project for pico, the user's env for nano33ble
    assert fw.env_for("nano33ble") == "nano33ble" and fw.env_for("pico") is None
    assert "nano33ble" in p.boards                      # resolved against the catalogue like any board


def test_envs_table_maps_boards_to_environments(tmp_path):
    fw = load(project(tmp_path, 'envs = { adafruit_pybadge_m4 = "adafruit_pybadge_m4" }')).models[0].firmware
    assert fw.envs == (("adafruit_pybadge_m4", "adafruit_pybadge_m4"),)


def test_unknown_environment_names_the_file_and_lists_the_environments(tmp_path):
    msg = error(project(tmp_path, 'envs = ["nano33bl"]'))
    assert "[models.sine.firmware] key 'envs'" in msg
    assert "environment 'nano33bl' is not in sketches/sine/platformio.ini, which has: nano33ble, adafruit_pybadge_m4" in msg
    assert "did you mean 'nano33ble'" in msg


def test_envs_without_platformio_ini(tmp_path):
    path = project(tmp_path, 'envs = ["x"]')
    (tmp_path / "sketches" / "sine" / "platformio.ini").unlink()
    assert "sketches/sine/platformio.ini does not exist" in error(path)


def test_envs_wrong_types_and_duplicates(tmp_path):
    assert "must be a list or a table" in error(project(tmp_path / "a", 'envs = "nano33ble"'))
    ini = tmp_path / "b" / "sketches" / "sine" / "platformio.ini"
    path = project(tmp_path / "b", 'envs = ["nano33ble", "second"]')
    ini.write_text(ini.read_text() + "\n[env:second]\nplatform = nordicnrf52\nboard = nano33ble\n")
    assert "board 'nano33ble' is built by two environments" in error(path)


# ----------------------------------------------------------------------------------------------- tflm
def test_tflm_library_that_does_not_exist_names_the_path_and_what_was_expected(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYML_TFLM_DIR", raising=False)
    msg = error(project(tmp_path, 'tflm = { library = "no/such/tflm" }'))
    assert "[models.sine.firmware] [models.sine.firmware.tflm] key 'library'" in msg
    assert "no/such/tflm: the path does not exist; expected an Arduino_TensorFlowLite library" in msg
    assert "tensorflow/lite/micro/micro_interpreter.cc" in msg


def test_tflm_library_that_is_not_tflm(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYML_TFLM_DIR", raising=False)
    (tmp_path / "notflm").mkdir()
    msg = error(project(tmp_path, 'tflm = { library = "notflm" }'))
    assert "does not hold TFLite Micro: expected" in msg


def test_tflm_env_var_is_named_when_wrong(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYML_TFLM_DIR", str(tmp_path / "missing"))
    msg = error(project(tmp_path, ""))
    assert f"environment variable TINYML_TFLM_DIR={tmp_path / 'missing'}" in msg and "does not exist" in msg


def test_tflm_from_env_var_and_kernels(tmp_path, monkeypatch):
    tree = fake_arduino_tree(tmp_path / "Arduino_TensorFlowLite")
    monkeypatch.setenv("TINYML_TFLM_DIR", str(tree))
    t = load(project(tmp_path, "")).models[0].firmware.tflm
    assert (t.library, t.source, t.kernels) == (tree, "TINYML_TFLM_DIR", "cmsis_nn")
    # an Arduino export has no reference variants of eight kernels: naming reference needs a tflite-micro checkout
    msg = error(project(tmp_path / "r", 'tflm = { kernels = "reference" }'))
    assert "key 'kernels'" in msg and "ships only the CMSIS-NN variants" in msg and "reference_kernels" in msg
    assert "allowed: cmsis_nn, reference" in error(project(tmp_path / "k", 'tflm = { kernels = "cmsis" }'))
    # tinyml.toml wins over the environment variable; false never links one
    monkeypatch.delenv("TINYML_TFLM_DIR")
    assert load(project(tmp_path / "f", "tflm = { library = false }")).models[0].firmware.tflm.library is None


def test_tflm_found_in_the_sketch_libdeps(tmp_path, monkeypatch):
    monkeypatch.delenv("TINYML_TFLM_DIR", raising=False)
    path = project(tmp_path, "")
    fake_arduino_tree(tmp_path / "sketches" / "sine" / ".pio" / "libdeps" / "nano33ble" / "Arduino_TensorFlowLite")
    t = load(path).models[0].firmware.tflm
    assert t.library.name == "Arduino_TensorFlowLite" and "PlatformIO's copy" in t.source


def test_find_tree_recognises_layouts(tmp_path):
    t = tflm_link.find_tree(fake_arduino_tree(tmp_path / "a", per_channel=False))
    assert (t.layout, t.debuglog_api, t.per_channel_fc, t.kernel_sets) == ("arduino", "legacy", False, ("cmsis_nn",))
    assert t.version == "Arduino_TensorFlowLite 2.4.0-ALPHA"
    assert tflm_link.find_tree(t.root / "src").root == t.root  # the library's src/ is accepted too
    up = tmp_path / "up"
    (up / "tensorflow" / "lite" / "micro").mkdir(parents=True)
    (up / "tensorflow" / "lite" / "micro" / "micro_interpreter.cc").write_text("//\n")
    with pytest.raises(TinyMLError, match="without its third-party downloads"):
        tflm_link.find_tree(up)
    for d in ("flatbuffers/include", "gemmlowp", "ruy"):
        (up / "downloads" / d).mkdir(parents=True)
    t = tflm_link.find_tree(up)
    assert t.layout == "upstream" and t.kernel_sets == ("reference",) and "cmsis_nn" in t.missing


# ----------------------------------------------------------------------------------------------- boards
def test_board_latency_settings(tmp_path):
    p = load(project(tmp_path, 'boards = ["nano33ble"]', "[boards.nano33ble]\nmax_latency_ms = 50\n"))
    b = p.boards["nano33ble"]
    assert b.max_latency_ms == 50.0 and b.flash == 983040 and b.memory == "flash_icache"
    assert "max_latency_ms = -1: must be a positive number" in error(
        project(tmp_path / "n", 'boards = ["nano33ble"]', "[boards.nano33ble]\nmax_latency_ms = -1\n"))
    msg = error(project(tmp_path / "m", 'boards = ["nano33ble"]', '[boards.nano33ble]\nmemory = "flash"\n'))
    assert "memory = 'flash' is not known" in msg and "flash_cache" in msg


def test_tflm_is_a_reserved_board_id(tmp_path):
    assert "is reserved" in error(project(tmp_path, 'boards = ["tflm"]', "[boards.tflm]\nflash = 1\nram = 1\ncore = \"cortex-m4f\"\n"))
