"""The measure stage end to end, with QEMU standing in for the board (examples/measure_qemu): the sketch's own
PlatformIO environment uploads by starting qemu-system-arm, its serial port is QEMU's UART on a TCP socket, and
the same upload, serial and protocol code runs as with a board on a USB port. Then every way it goes wrong: one
line, exit 2, nothing lost, and the report keeps the estimate and says why."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from project import REPO, copy_project, doit, executed

EXAMPLE = REPO / "examples" / "measure_qemu"
TFLM_DIR = os.environ.get("TINYML_TFLM_DIR", "").strip()
FAST = {"TINYML_MEASURE_READY_TIMEOUT": "8"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make(root: Path, *, runtime: str | None = None) -> Path:
    """The example in a temporary folder, on a port of its own, trained briefly."""
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("build", ".pio"))
    ini = root / "sketches" / "sine_qemu" / "platformio.ini"
    ini.write_text(ini.read_text().replace("4555", str(free_port())))
    toml = root / "tinyml.toml"
    text = toml.read_text().replace("epochs = 60", "epochs = 5")
    if runtime:
        text = text.replace('runtime = ["tflm", "aot"]', f"runtime = {runtime}")
    toml.write_text(text)
    return root


def port_of(root: Path) -> str:
    return re.search(r"monitor_port = (\S+)", (root / "sketches/sine_qemu/platformio.ini").read_text()).group(1)


def stop_qemu(root: Path) -> None:
    subprocess.run([sys.executable, "-m", "doit_tinyml.engine.qemu_board", "stop", port_of(root)], capture_output=True)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """The example built and measured by `doit` (aot rows always; tflm rows too with a TFLM library)."""
    root = make(tmp_path_factory.mktemp("measure") / "proj", runtime=None if TFLM_DIR else '["aot"]')
    try:
        doit(root, timeout=1500, env={"TINYML_TFLM_DIR": TFLM_DIR} if TFLM_DIR else None)
    finally:
        stop_qemu(root)
    return root


def sha256(p: Path) -> str:
    from doit_tinyml.engine.elf import content_sha256

    return content_sha256(p)


def test_doit_measures_every_row_on_the_qemu_board(measured):
    rows = []
    for fw in sorted((measured / "build" / "sine").glob("*/mps2_an386*")):
        m = json.loads((fw / "measure.json").read_text())
        rows.append(fw)
        assert m["core"] == "cortex-m4" and m["timer"] == "systick" and m["clock_hz"] == 25_000_000
        assert m["firmware_sha256"] == sha256(fw / "firmware.elf")  # keyed to the firmware it stands for
        assert m["outputs"]["outputs_equal"] and m["outputs"]["samples"] == 8 and m["runs"] == 10
        assert m["port"].startswith("socket://127.0.0.1:") and "monitor_port" in m["port_source"]
        assert m["arena_used_bytes"] > 0 and 0 < m["stack_used_bytes"] < 16384 and "painted" in m["stack_method"]
        # QEMU's virtual time: one instruction is 64 ns, the 25 MHz SysTick 1.6 ticks: the cycles the harness
        # read are the instructions of the inference the aot/tflm stage counted (within the call overhead)
        variant = fw.parent.name
        rec = json.loads((fw.parent / ("aot.json" if fw.name.endswith(".aot") else "tflm.json")).read_text())
        assert m["cycles_median"] / 1.6 == pytest.approx(rec["instructions_per_inference"], rel=0.05, abs=40), variant
    assert len(rows) == (4 if TFLM_DIR else 2)
    rep = doit(measured, "report", check=False, env={"TINYML_TFLM_DIR": TFLM_DIR} if TFLM_DIR else None)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert rep.stdout.count(" measured ") >= len(rows) and "'x measured' the median on the board" in rep.stdout
    report = json.loads((measured / "build" / "report.json").read_text())
    for r in report["rows"]:
        assert r["latency_kind"] == "measured" and r["latency_basis"]["kind"] == "measured"
        on = r["latency_basis"]["measured_on"]
        assert on["board"] == "mps2_an386" and on["port"].startswith("socket://") and on["firmware_sha256"]
        assert r["latency_basis"]["estimate"]["kind"] == "estimate"  # the estimate stays beside it
    csv_text = (measured / "build" / "report.csv").read_text()
    assert "latency_kind" in csv_text.splitlines()[0] and ",measured," in csv_text


def test_a_measurement_runs_again_only_when_its_firmware_changes_or_when_asked(measured, tmp_path):
    root = copy_project(measured, tmp_path / "proj")
    try:
        env = {"TINYML_TFLM_DIR": TFLM_DIR} if TFLM_DIR else None
        assert not {t for t in executed(doit(root, env=env).stdout) if t.startswith("measure:")}  # up to date
        out = doit(root, "forget", "measure:sine/float32@mps2_an386+aot", env=env)
        assert out.returncode == 0
        assert executed(doit(root, env=env).stdout) == {"measure:sine/float32@mps2_an386+aot"}
        # a new firmware (the sketch's application changed) is measured again; the harness is rebuilt with it
        main = root / "sketches" / "sine_qemu" / "src" / "main.cpp"
        main.write_text(main.read_text().replace("step < 20", "step < 21"))
        ran = executed(doit(root, env=env).stdout)
        assert {"firmware:sine/float32@mps2_an386+aot", "measure:sine/float32@mps2_an386+aot"} <= ran
    finally:
        stop_qemu(root)


def _fails(root: Path, *needles: str) -> str:
    proc = doit(root, check=False, env=FAST, timeout=900)
    stop_qemu(root)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    lines = [ln for ln in out.splitlines() if ln.startswith("doit-tinyml: measure:")]
    assert lines, out
    for n in needles:
        assert n in lines[0], lines[0]
    rep = doit(root, "report", check=False)
    assert "not measured: " in rep.stdout and "~" in rep.stdout  # the estimate stays, with why it is not measured
    for r in json.loads((root / "build" / "report.json").read_text())["rows"]:
        assert r["latency_kind"] != "measured"  # an earlier measurement of another firmware is never shown
    return lines[0]


def _set_board(root: Path, table: str) -> None:
    toml = root / "tinyml.toml"
    toml.write_text(toml.read_text() + f"\n[boards.mps2_an386]\n{table}\n")


def _aot_only(measured: Path, dest: Path) -> Path:
    root = copy_project(measured, dest)
    toml = root / "tinyml.toml"
    toml.write_text(re.sub(r"runtime = \[[^\]]*\]", 'runtime = ["aot"]', toml.read_text()))
    return root


def test_no_board_on_the_port(measured, tmp_path):
    root = _aot_only(measured, tmp_path / "proj")
    _set_board(root, 'port = "/dev/tinyml-no-such-board"')
    line = _fails(root, "no board on /dev/tinyml-no-such-board", "the port does not exist")
    assert "tinyml.toml [boards.mps2_an386] port" in line


def test_a_board_that_prints_nothing(measured, tmp_path):
    """The upload puts another firmware on the board, which never speaks: a timeout. (The sketch's own application
    runs once and stops the emulator: the board goes away.)"""
    from doit_tinyml.engine import platformio
    from doit_tinyml.engine.boards import CATALOGUE

    src = tmp_path / "silent.c"
    src.write_text("int main(void) { for (;;) { __asm__ volatile(\"wfi\"); } }\n")
    res = platformio.build(tmp_path / "silent", CATALOGUE["mps2_an386"], tmp_path / "core", {"main.c": src})
    root = _aot_only(measured, tmp_path / "proj")
    ini = root / "sketches" / "sine_qemu" / "platformio.ini"
    ini.write_text(ini.read_text().replace("upload $SOURCE", f"upload {res.elf}"))
    _fails(root, "printed nothing in 8 s after the upload (timeout)")
    app = (root / "build/sine/float32/mps2_an386.aot/firmware.elf").resolve()
    ini.write_text(ini.read_text().replace(f"upload {res.elf}", f"upload {app}"))
    _fails(root, "went away after the upload and did not come back in 8 s")


def test_a_board_that_prints_something_else(measured, tmp_path):
    """Another firmware on the board, talking on the same UART."""
    from doit_tinyml.engine import platformio
    from doit_tinyml.engine.boards import CATALOGUE

    src = tmp_path / "other.c"
    src.write_text("""
#include <stdint.h>
#define UART(o) (*(volatile uint32_t *)(0x40004000u + (o)))
int main(void) {
  UART(0x10) = 16; UART(0x08) = 3;
  for (;;) { for (const char *s = "hello from another firmware\\n"; *s; ++s) { while (UART(4) & 1u) {} UART(0) = *s; }
             for (volatile int i = 0; i < 200000; i = i + 1) {} }
}
""")
    res = platformio.build(tmp_path / "other", CATALOGUE["mps2_an386"], tmp_path / "core", {"main.c": src})
    root = _aot_only(measured, tmp_path / "proj")
    ini = root / "sketches" / "sine_qemu" / "platformio.ini"
    ini.write_text(ini.read_text().replace("upload $SOURCE", f"upload {res.elf}"))
    _fails(root, "printed 'hello from another firmware", "never the doit-tinyml harness's ready line")


def test_a_different_board_than_configured(measured, tmp_path):
    root = _aot_only(measured, tmp_path / "proj")
    _set_board(root, 'core = "cortex-m3"')  # the firmware is built for an M3; QEMU's board is an M4
    _fails(root, "is a cortex-m4 (CPUID 410fc24", "but board mps2_an386 is a cortex-m3", "a different board")


def test_a_firmware_too_big_to_upload(measured, tmp_path):
    root = _aot_only(measured, tmp_path / "proj")
    _set_board(root, "flash = 4000")
    _fails(root, "over the board's flash: it cannot be uploaded")


def test_a_port_needs_the_sketchs_own_environment(tmp_path):
    """A board doit builds on its bare-metal platform has no serial port to measure on: refused at load."""
    from project import make_project

    root = make_project(tmp_path / "proj")
    (root / "tinyml.toml").write_text((root / "tinyml.toml").read_text()
                                      + '\n[boards.nano33ble]\nport = "/dev/ttyACM0"\n')
    proc = doit(root, "list", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "[boards.nano33ble] key 'port'" in proc.stderr and "envs = { nano33ble" in proc.stderr

