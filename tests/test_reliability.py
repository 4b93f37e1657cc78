"""Nothing is lost: finished work survives any stop, damaged artifacts are rebuilt, a failed variant
is a report row, missing tools stop the build before any training. Run as a user would."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from project import doit, executed, make_project

pytestmark = pytest.mark.slow


def _start(root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "doit"], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for(p: subprocess.Popen, needle: str, timeout: float = 300) -> str:
    seen, deadline = "", time.time() + timeout
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line and p.poll() is not None:
            break
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never appeared:\n{seen}")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_stop_after_training_keeps_the_training(proj, sig):
    toml = proj / "tinyml.toml"
    toml.write_text(toml.read_text().replace("samples = 400", "samples = 420"))  # new data: the whole chain
    p = _start(proj)
    seen = _wait_for(p, "convert:sine/")  # dataset and train finished, a conversion is under way
    assert ".  train:sine" in seen, seen
    os.killpg(p.pid, sig)
    p.wait()
    ran = executed(doit(proj).stdout)
    assert "train:sine" not in ran and "dataset:sine" not in ran, ran
    assert {"convert:sine/float32", "convert:sine/int8"} & ran, ran
    assert not list((proj / "build").rglob(".tmp-*")), "temporary files left behind"


def test_damaged_or_edited_artifacts_are_rebuilt(proj):
    b = proj / "build" / "sine"
    keep = {rel: (b / rel).read_bytes() for rel in (
        "dataset.npz", "trained.keras", "int8/model.tflite", "int8/analysis.json", "float32/metrics.json",
        "float32/model_data.h", "int8/nano33ble/size.json")}
    (b / "dataset.npz").write_bytes(keep["dataset.npz"][:200])                  # truncated
    (b / "trained.keras").write_bytes(keep["trained.keras"][:-100])             # truncated zip
    (b / "int8/model.tflite").write_bytes((b / "float32/model.tflite").read_bytes())  # swapped model
    (b / "int8/analysis.json").write_text("{")                                   # no longer parses
    (b / "float32/metrics.json").write_text(keep["float32/metrics.json"].decode().replace("0", "1", 1))
    (b / "float32/model_data.h").write_text(keep["float32/model_data.h"].decode() + "// edited by hand\n")
    (b / "int8/nano33ble/size.json").write_text("")
    proc = doit(proj)
    ran = executed(proc.stdout)
    assert {"dataset:sine", "train:sine", "convert:sine/int8", "analyze:sine/int8", "evaluate:sine/float32",
            "header:sine/float32", "firmware:sine/int8@nano33ble"} <= ran, ran
    assert "Traceback" not in proc.stdout + proc.stderr
    for rel, data in keep.items():
        assert (b / rel).read_bytes() == data, f"{rel} was not restored"
    assert executed(doit(proj).stdout) == set()


SKETCH_WITHOUT_INT8 = """#include "model_data.h"
#if TINYML_INPUT_IS_INT8
#error "this sketch feeds float32 input only"
#endif
alignas(16) static unsigned char arena[TINYML_ARENA_SIZE];
int main(void) {
  volatile unsigned char s = 0;
  for (unsigned int i = 0; i < g_model_len; ++i) s = s + g_model[i];
  for (unsigned int i = 0; i < sizeof arena; ++i) arena[i] = s;
  return arena[3];
}
"""


def test_a_failed_variant_is_a_report_row_and_gates_only_when_required(proj):
    (proj / "sketches/sine/src/main.cpp").write_text(SKETCH_WITHOUT_INT8)
    proc = doit(proj, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    assert "doit-tinyml: firmware:sine/int8@nano33ble failed:" in out
    assert "this sketch feeds float32 input only" in out
    assert (proj / "build/sine/float32/nano33ble/size.json").is_file()  # the other variant still built

    rep = doit(proj, "report")  # not required: the report is written and the gate passes
    rows = json.loads((proj / "build/report.json").read_text())["rows"]
    failed = [r for r in rows if r["variant"] == "int8"]
    assert failed and all(r["fits"] == "failed" for r in failed)
    assert all("firmware" in r["fits_text"] and "float32 input only" in r["fits_text"] for r in failed)
    assert "failed at firmware" in rep.stdout and "gate: passed" in rep.stdout
    assert "int8" not in "".join(ln for ln in rep.stdout.splitlines() if ln.startswith("Ship:"))

    toml = proj / "tinyml.toml"
    toml.write_text(toml.read_text().replace('representative_samples = 50', 'representative_samples = 50\nrequired = true'))
    rep = doit(proj, "report", check=False)
    assert rep.returncode != 0 and "sine/int8 is required but failed at firmware" in rep.stdout
    assert (proj / "build/report.md").is_file()


def _path_without(tmp_path: Path, *missing: str) -> str:
    """A PATH holding links to every tool doit-tinyml uses except `missing`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("gcc", "qemu-system-arm") + tuple(
            f"arm-none-eabi-{t}" for t in ("gcc", "g++", "as", "ld", "ar", "size", "objcopy", "nm", "gcc-ar",
                                            "gcc-ranlib", "ranlib", "objdump", "readelf", "cpp", "strip")):
        found = shutil.which(tool)
        if found and not any(tool.startswith(m) for m in missing):
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


@pytest.mark.parametrize("missing, needle", [
    ("arm-none-eabi-", "sudo apt-get install gcc-arm-none-eabi"),
    ("qemu-system-arm", "sudo apt-get install qemu-system-arm"),
])
def test_a_missing_tool_stops_the_build_before_any_training(tmp_path, missing, needle):
    root = make_project(tmp_path / "p")
    toml = root / "tinyml.toml"
    toml.write_text(toml.read_text().replace('sketch = "sketches/sine"', 'sketch = "sketches/sine"\nruntime = ["tflm", "aot"]'))
    proc = doit(root, check=False, env={"PATH": _path_without(tmp_path, missing)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out and needle in out, out
    assert executed(proc.stdout) == set(), "work started although a tool is missing"
    assert not (root / "build/sine/dataset.npz").exists()
