"""The sketch's own platformio.ini environments, built as they are (envs = [...]).

The environment here names doit's local platform (`platform = symlink://${sysenv.TINYML_LOCAL_PLATFORM}`):
the same code path an official platform takes online (doit injects the variant's files with a pre-script,
runs `pio run -e <env>`, reads PlatformIO's own RAM/Flash lines and limits), so what CI proves is what an
online user runs. Needs arm-none-eabi-gcc and PlatformIO, no network.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from doit_tinyml import firmware
from doit_tinyml.engine import boards, platformio
from doit_tinyml.engine import artifacts
from doit_tinyml.engine.errors import TinyMLError

from test_firmware import make_model_dir

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None and os.environ.get("CI", "").lower() not in ("1", "true", "yes"),
    reason="needs arm-none-eabi-gcc (not installed here)")]

INI = """; a user's firmware repository: one environment per board
[platformio]
default_envs = board_a

[env]
build_flags = -DUSER_FLAG=3

[env:board_a]
platform = symlink://${sysenv.TINYML_LOCAL_PLATFORM}
board = nano33ble
extra_scripts = pre:own_script.py

[env:board_b]
extends = env:board_a
board = adafruit_pybadge_m4
"""

MAIN = """#include "model_data.h"
#include <stdint.h>
#ifndef USER_FLAG  /* the environment's build_flags define it; doit's generated project (no environment) does not */
#define USER_FLAG 0
#endif
alignas(16) static uint8_t tensor_arena[TINYML_ARENA_SIZE];
int main(void) {
  const volatile unsigned char *m = g_model;
  volatile uint8_t *a = tensor_arena;
  uint32_t s = 0;
  for (unsigned i = 0; i < g_model_len; ++i) s += m[i];
  for (unsigned i = 0; i < sizeof(tensor_arena); ++i) a[i] = (uint8_t)(s + i);
  return USER_FLAG + (int)(s == 1u);
}
"""


def sketch(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "platformio.ini").write_text(INI)
    (root / "src" / "main.cpp").write_text(MAIN)
    # the user's own pre-script keeps running: it proves the environment is built as it is
    (root / "own_script.py").write_text('Import("env")\nenv.Append(CPPDEFINES=["OWN_SCRIPT_RAN"])\n')
    return root


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def core_dir(tmp_path_factory) -> Path:
    core = tmp_path_factory.mktemp("pio") / ".platformio"
    platformio.ensure_core(core)
    return core


def test_environment_is_built_as_it_is(tmp_path, core_dir, capsys):
    sk = sketch(tmp_path / "repo" / "sketches" / "demo")
    before = tree_hash(sk)
    vd = make_model_dir(tmp_path / "build" / "demo" / "int8", 3000, 1328)
    out = tmp_path / "build" / "demo" / "int8" / "nano33ble"
    rec = firmware.run(sk, vd, boards.CATALOGUE["nano33ble"], out, core_dir, runtime="tflm", env="board_a")
    assert tree_hash(sk) == before and not (sk / ".pio").exists()  # nothing in the sketch changed or appeared
    assert rec["env"]["name"] == "board_a" and rec["env"]["platformio_ini"].endswith("platformio.ini")
    assert (rec["flash_limit"], rec["ram_limit"]) == (983040, 262144)  # PlatformIO's own limits
    assert (out / "firmware.elf").is_file() and (out / "size.json").is_file()
    assert rec["breakdown"]["flash"]["model"] == 3000 and rec["breakdown"]["ram"]["arena"] == 1328
    # this environment links no TFLM interpreter: its tflm row gets the interpreter estimate, marked
    assert rec["estimate"] is True and "environment 'board_a'" in rec["estimate_basis"]
    measured = rec["interpreter_estimate"]["measured_without"]
    assert rec["flash_used"] - measured["flash_used"] == rec["interpreter_estimate"]["flash"] > 0
    log = (out / "env.output.txt").read_text()
    assert "Processing board_a" in log and f"(used {measured['flash_used']} bytes from 983040 bytes)" in log
    assert "board_a" in capsys.readouterr().out


def test_extends_and_board_override_reach_platformio(tmp_path, core_dir):
    sk = sketch(tmp_path / "sk")
    vd = make_model_dir(tmp_path / "m" / "v", 6000, 256)
    # [boards.adafruit_pybadge_m4] flash = 4096 in tinyml.toml: the environment's own Flash: line uses it
    board = boards.resolve("adafruit_pybadge_m4", {"flash": 4096}, "tinyml.toml")
    rec = firmware.run(sk, vd, board, tmp_path / "o", core_dir, runtime="tflm", env="board_b", quiet=True)
    assert rec["flash_limit"] == 4096 and not rec["fits"]
    assert "(used" in (tmp_path / "o" / "env.output.txt").read_text() and "from 4096 bytes" in (
        tmp_path / "o" / "env.output.txt").read_text()


def test_aot_runtime_in_an_environment(tmp_path, core_dir):
    sk = sketch(tmp_path / "sk")
    (sk / "src" / "main.cpp").write_text('#include "tinyml_model.h"\nint main(void) { return tinyml_k(); }\n')
    vd = make_model_dir(tmp_path / "m" / "v", 100, 64)
    (vd / "aot").mkdir()
    (vd / "aot" / "tinyml_model.h").write_text("#ifdef __cplusplus\nextern \"C\"\n#endif\nint tinyml_k(void);\n")
    (vd / "aot" / "tinyml_model.c").write_text("int tinyml_k(void) { return 5; }\n")
    artifacts.write(vd / "aot.json", artifacts.Aot(supported=True, weights_bytes=64, planned_bytes=16))
    rec = firmware.run(sk, vd, boards.CATALOGUE["nano33ble"], tmp_path / "o", core_dir, runtime="aot", env="board_a",
                       quiet=True)
    assert rec["runtime"] == "aot" and not rec["estimate"] and rec["breakdown"]["flash"]["inference"] > 0


def test_compile_error_names_environment_and_cause(tmp_path, core_dir):
    sk = sketch(tmp_path / "sk")
    (sk / "src" / "main.cpp").write_text('#include "model_data.h"\nint main(void) { return not_declared; }\n')
    vd = make_model_dir(tmp_path / "m" / "v", 100, 64)
    with pytest.raises(TinyMLError) as e:
        firmware.run(sk, vd, boards.CATALOGUE["nano33ble"], tmp_path / "o", core_dir, env="board_a")
    msg = str(e.value)
    assert "environment 'board_a'" in msg and "src/main.cpp" in msg and "not_declared" in msg
    assert not (tmp_path / "o" / "size.json").exists()


def test_pio_ini_reader(tmp_path):
    from doit_tinyml.engine.pio_ini import read_envs

    sk = sketch(tmp_path / "sk")
    envs = read_envs(sk / "platformio.ini")
    assert list(envs) == ["board_a", "board_b"]
    assert envs["board_b"]["board"] == "adafruit_pybadge_m4" and envs["board_b"]["extra_scripts"] == "pre:own_script.py"
    assert envs["board_a"]["build_flags"] == "-DUSER_FLAG=3"


def test_doit_builds_the_environment(tmp_path):
    """Through doit: envs in tinyml.toml, the report shows the environment's row."""
    from project import TINY_SINE, doit, make_project

    root = make_project(tmp_path / "proj", TINY_SINE.replace("{epochs}", "2").replace(
        'boards = ["nano33ble", "adafruit_pybadge_m4"]', 'boards = ["pico"]\nenvs = { nano33ble = "board_a" }'),
        sketch="")
    sk = sketch(root / "sketches" / "sine")
    (sk / "src" / "main.cpp").write_text(MAIN)
    proc = doit(root, env={"TINYML_TFLM_DIR": ""})
    size = json.loads((root / "build" / "sine" / "int8" / "nano33ble" / "size.json").read_text())
    assert size["env"]["name"] == "board_a"
    assert "firmware:sine/int8@nano33ble" in proc.stdout
    rep = doit(root, "report", check=False, env={"TINYML_TFLM_DIR": ""})
    assert "nano33ble" in rep.stdout and "pico" in rep.stdout


def test_the_demo_sketch_own_model_script_and_doits_injection_coexist(tmp_path, core_dir):
    """sketches/sine's environments run its pre-script tinyml_model.py (it compiles model_data.cc from
    $TINYML_MODEL_DIR); doit sets that variable and does not compile the file a second time."""
    sk = tmp_path / "sine"
    shutil.copytree(Path(__file__).resolve().parents[1] / "sketches" / "sine", sk)
    # the same environment offline: the local platform instead of nordicnrf52, no framework, no TFLM
    (sk / "platformio.ini").write_text(
        "[env:nano33ble]\nplatform = symlink://${sysenv.TINYML_LOCAL_PLATFORM}\nboard = nano33ble\n"
        "extra_scripts = pre:tinyml_model.py\n")
    vd = make_model_dir(tmp_path / "m" / "v", 2000, 512)
    rec = firmware.run(sk, vd, boards.CATALOGUE["nano33ble"], tmp_path / "o", core_dir, env="nano33ble", quiet=True)
    assert rec["breakdown"]["flash"]["model"] == 2000  # linked once (twice would not link at all)
