"""Firmware stage with real PlatformIO, real arm-none-eabi-gcc and real QEMU (no network)."""
from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from doit_tinyml import firmware
from doit_tinyml.engine import boards
from doit_tinyml.engine import artifacts, platformio, qemu
from doit_tinyml.engine import elf as elfsize
from doit_tinyml.engine.errors import TinyMLError

ROOT = Path(__file__).resolve().parent.parent
SINE = ROOT / "sketches" / "sine"

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")


def make_model_dir(d: Path, model_bytes: int, arena: int, seed: int = 0) -> Path:
    """A minimal variant folder (model_data.h/.cc, analysis.json) with `model_bytes` of pseudo-random weights."""
    d.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    data = bytes(rnd.randrange(256) for _ in range(model_bytes))
    (d / "model_data.h").write_text(
        "#pragma once\n"
        f"#define TINYML_ARENA_SIZE {arena}          /* bytes */\n"
        "#define TINYML_OP_COUNT 2\n"
        "extern const unsigned char g_model[];\n"
        "extern const unsigned int g_model_len;\n"
    )
    rows = ",\n".join(",".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16))
    (d / "model_data.cc").write_text(
        '#include "model_data.h"\n'
        f"alignas(16) const unsigned char g_model[] = {{\n{rows}\n}};\n"
        f"const unsigned int g_model_len = {model_bytes};\n"
    )
    artifacts.write(d / "analysis.json", artifacts.Analysis(
        tflite_bytes=model_bytes, tflite_gzip_bytes=model_bytes, flatbuffer={}, ops=[], op_count=0, n_subgraphs=1,
        input={}, output={}, inputs=[], outputs=[], params=0, macs=0, hybrid=False, float16=False,
        arena={"bytes": arena}, arena_margin=0.1, tflm_compatible=True, problems=[], layers=[], peak_layer=None,
        peak_alive_bytes=0))
    return d


@pytest.fixture(scope="module")
def core_dir(tmp_path_factory) -> Path:
    core = tmp_path_factory.mktemp("pio") / ".platformio"
    platformio.ensure_core(core)
    return core


def build(tmp: Path, core: Path, board_id: str, model_bytes: int, arena: int, name: str, **kw) -> dict:
    model_dir = make_model_dir(tmp / name / "sine" / "int8", model_bytes, arena)
    return firmware.run(SINE, model_dir, boards.CATALOGUE[board_id], tmp / name / "out" / board_id, core, **kw)


def test_ensure_core_from_nothing_is_idempotent(tmp_path):
    core = tmp_path / ".platformio"
    platform = platformio.ensure_core(core)
    assert (core / "packages" / "tool-scons" / "scons.py").is_file()
    assert json.loads((core / "packages" / "tool-scons" / "package.json").read_text())["version"] == "4.41101.0"
    assert json.loads((core / "packages" / "tool-scons" / ".piopm").read_text())["spec"]["owner"] == "platformio"
    gcc = core / "tinyml" / "toolchain-gccarmnoneeabi" / "bin" / "arm-none-eabi-gcc"
    assert gcc.is_symlink() and gcc.resolve() == Path(shutil.which("arm-none-eabi-gcc")).resolve()
    pj = json.loads((platform / "platform.json").read_text())
    assert pj["packages"]["toolchain-gccarmnoneeabi"]["version"].startswith("symlink:///")
    for bid, b in boards.CATALOGUE.items():
        assert (platform / "boards" / f"{bid}.json").is_file() == b.buildable_offline
    man = json.loads((platform / "boards" / "nano33ble.json").read_text())
    assert man["upload"] == {"maximum_size": 983040, "maximum_ram_size": 262144}
    # second call: nothing rewritten
    mtime = (platform / "platform.json").stat().st_mtime_ns
    assert platformio.ensure_core(core) == platform
    assert (platform / "platform.json").stat().st_mtime_ns == mtime
    # a run killed half-way (fingerprint gone, stray temp folder) recovers
    (core / "tinyml" / "installed.json").unlink()
    (core / "tinyml" / ".tmp-platform-999999").mkdir()
    assert platformio.ensure_core(core) == platform
    assert not list((core / "tinyml").glob(".tmp-*"))


def test_missing_toolchain_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without arm-none-eabi-gcc
    with pytest.raises(TinyMLError) as e:
        platformio.ensure_core(tmp_path / ".platformio")
    msg = str(e.value)
    assert "arm-none-eabi-gcc was not found" in msg
    assert "sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib" in msg
    assert "scripts/setup.sh" in msg


@pytest.mark.parametrize("board_id", ["nano33ble", "adafruit_pybadge_m4"])
def test_sizes_follow_arena_and_model(tmp_path, core_dir, board_id, capsys):
    small = build(tmp_path, core_dir, board_id, 3000, 1328, "small")
    out = capsys.readouterr().out
    assert f"sine/int8 @ {board_id}: flash ~{small['flash_used']:,} / {boards.CATALOGUE[board_id].flash:,} B" in out
    # offline without a TFLM library: the build holds the model and the arena, the interpreter is added from
    # the table of real links, and every figure says it is an estimate
    on_disk = json.loads((tmp_path / "small" / "out" / board_id / "size.json").read_text())
    assert on_disk == small
    ie = small["interpreter_estimate"]
    assert "fits (estimate)" in out and (f"[estimate: the interpreter's {ie['flash']:,} B flash, {ie['ram']:,} B RAM "
                                         f"from the table of real links ({ie['config']}, never below them, at most "
                                         f"+{ie['error_pct']} %") in out
    # no tree is known: the larger generation is assumed, and the line names the other one's figure
    for g, o in ie["other_generations"].items():
        assert o["flash"] <= ie["flash"] and f"{g} {o['flash']:,} B" in out
    assert small["estimate_basis"].startswith("measured the offline build")
    assert (tmp_path / "small" / "out" / board_id / "firmware.elf").is_file()
    assert small["fits"] and small["estimate"] and small["flash_limit"] == boards.CATALOGUE[board_id].flash
    est = small["interpreter_estimate"]
    assert est["config"].startswith("cortex-m4f/") and est["flash"] > 15_000
    assert small["flash_used"] == est["measured_without"]["flash_used"] + est["flash"]
    assert small["ram_used"] == est["measured_without"]["ram_used"] + est["ram"]
    assert "estimated from tflm_size_table.json" in small["estimate_basis"]
    assert small["breakdown"]["ram"]["arena"] == 1328
    assert small["breakdown"]["flash"]["model"] == 3000
    assert small["flash_used"] > 3000 and small["ram_used"] > 1328

    big_arena = build(tmp_path, core_dir, board_id, 3000, 1328 + 4096, "arena")
    assert big_arena["ram_used"] - small["ram_used"] in range(4096, 4096 + 16)
    assert big_arena["breakdown"]["ram"]["arena"] == 1328 + 4096

    big_model = build(tmp_path, core_dir, board_id, 3000 + 5000, 1328, "model")
    assert big_model["flash_used"] - small["flash_used"] in range(5000, 5000 + 16)
    assert big_model["ram_used"] == small["ram_used"]


def test_breakdown_adds_up(tmp_path, core_dir):
    rec = build(tmp_path, core_dir, "nucleo_f446re", 2048, 1024, "bd")
    elf = tmp_path / "bd" / "out" / "nucleo_f446re" / "firmware.elf"
    bd = elfsize.breakdown(elf, boards.CATALOGUE["nucleo_f446re"])
    est = rec["interpreter_estimate"]
    assert sum(bd["flash"].values()) == est["measured_without"]["flash_used"]
    assert sum(bd["ram"].values()) == est["measured_without"]["ram_used"]
    assert bd["flash"]["inference"] == 0  # the bare-metal sketch has no interpreter: the estimate adds it
    assert rec["breakdown"]["flash"]["inference"] == est["flash"]
    assert sum(rec["breakdown"]["flash"].values()) == rec["flash_used"]
    assert sum(rec["breakdown"]["ram"].values()) == rec["ram_used"]
    assert bd["ram"]["stack_heap"] == 4096 + 1024
    assert bd["flash"]["application"] > 0 and bd["ram"]["application"] >= 0


def test_inference_objects_are_attributed(tmp_path, core_dir):
    # a stand-in "kernel" source named like the AOT runtime's: its code must count as inference
    kern = tmp_path / "tinyml_k_demo.cc"
    kern.write_text(
        "extern \"C\" int tinyml_k_demo(const unsigned char *w, int n) {\n"
        "  int s = 0; for (int i = 0; i < n; ++i) s += w[i] * (i ^ 0x5a); return s; }\n"
    )
    sketch = tmp_path / "sk"
    (sketch / "src").mkdir(parents=True)
    (sketch / "src" / "main.cpp").write_text(
        '#include "model_data.h"\n'
        'extern "C" int tinyml_k_demo(const unsigned char *w, int n);\n'
        "int main() { return tinyml_k_demo(g_model, (int)g_model_len); }\n"
    )
    model_dir = make_model_dir(tmp_path / "m" / "v", 1000, 256)
    (model_dir / "aot").mkdir()
    artifacts.write(model_dir / "aot.json", artifacts.Aot(supported=True, weights_bytes=64, planned_bytes=16))
    (model_dir / "aot" / "tinyml_model.c").write_text(kern.read_text().replace('extern "C" ', ""))  # C, as AOT is
    (sketch / "src" / "main.cpp").write_text(
        'extern "C" int tinyml_k_demo(const unsigned char *w, int n);\n'
        "static const unsigned char w[64] = {1, 2, 3};\n"
        "int main() { return tinyml_k_demo(w, 64); }\n"
    )
    rec = firmware.run(sketch, model_dir, boards.CATALOGUE["nano33ble"], tmp_path / "o", core_dir,
                       runtime="aot", quiet=True)
    nm = subprocess.run(["arm-none-eabi-nm", "-S", str(tmp_path / "o" / "firmware.elf")],
                        capture_output=True, text=True, check=True).stdout
    size = next(int(line.split()[1], 16) for line in nm.splitlines() if line.endswith(" tinyml_k_demo"))
    assert rec["breakdown"]["flash"]["inference"] == size
    assert sum(rec["breakdown"]["flash"].values()) == rec["flash_used"]


def test_too_big_is_reported_not_raised(tmp_path, core_dir, capsys):
    # bluepill: 65,536 B flash. 80 KB of weights links (the linker regions are generous) but does not fit.
    rec = build(tmp_path, core_dir, "bluepill_f103c8", 80_000, 512, "over")
    assert not rec["fits"]
    assert rec["flash_over_by"] == rec["flash_used"] - 65536 > 80_000 - 65536
    assert rec["ram_over_by"] == 0
    assert "DOES NOT FIT: flash over by " + f"{rec['flash_over_by']:,} B" in capsys.readouterr().out
    with pytest.raises(TinyMLError, match="DOES NOT FIT: flash over by"):
        build(tmp_path, core_dir, "bluepill_f103c8", 80_000, 512, "over", fail_on_overflow=True)


def test_linker_region_overflow_is_reported(tmp_path, core_dir):
    # bigger than even the generous linker region (2 x 65,536): the linker says `region FLASH
    # overflowed by N bytes`; the stage relinks and reports the exact overflow, it does not crash.
    rec = build(tmp_path, core_dir, "bluepill_f103c8", 140_000, 512, "ld")
    assert not rec["fits"]
    n = rec["linker_overflow"]["FLASH"]
    measured = rec["interpreter_estimate"]["measured_without"]["flash_used"]
    assert measured == 2 * 65536 + n
    assert rec["flash_over_by"] == rec["flash_used"] - 65536 > 65536 + n
    # RAM overflow: arena larger than the 20 KB of RAM
    rec = build(tmp_path, core_dir, "bluepill_f103c8", 1000, 24_000, "ram")
    assert not rec["fits"] and rec["flash_over_by"] == 0
    assert rec["ram_over_by"] == rec["ram_used"] - 20480 > 24_000 - 20480


@pytest.mark.parametrize("board_id", ["uno", "esp32dev"])
def test_estimate_boards(tmp_path, board_id, capsys):
    model_dir = make_model_dir(tmp_path / "sine" / "int8", 3000, 1328)
    rec = firmware.run(SINE, model_dir, boards.CATALOGUE[board_id], tmp_path / "out", tmp_path / "core")
    assert rec["estimate"] is True
    base = firmware.ESTIMATE_BASELINES[(boards.CATALOGUE[board_id].arch, "tflm")]
    assert rec["flash_used"] == 3000 + base["flash"]
    assert rec["ram_used"] == 1328 + base["ram"]
    assert rec["flash_limit"] == boards.CATALOGUE[board_id].flash
    assert "estimate" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "size.json").read_text())["estimate"] is True
    assert not (tmp_path / "core").exists()  # no PlatformIO involved
    if board_id == "uno":
        assert not rec["fits"]


def test_parse_pio_sizes():
    text = (
        "RAM:   [=         ]   2.5% (used 6548 bytes from 262144 bytes)\n"
        "Flash: [==========]  125.0% (used 81920 bytes from 65536 bytes)\n"
        "ld: region `FLASH' overflowed by 1234 bytes\n"
    )
    assert platformio.parse_pio_sizes(text) == {
        "flash": (81920, 65536), "ram": (6548, 262144), "overflow": {"FLASH": 1234}}


def test_run_qemu_semihosting(tmp_path, core_dir):
    results = {}
    for n in (100, 300):
        sketch = tmp_path / f"q{n}"
        (sketch / "src").mkdir(parents=True)
        (sketch / "src" / "main.cpp").write_text(
            "#include <stdio.h>\n#include \"model_data.h\"\nvolatile unsigned sink;\n"
            "int main() {\n"
            "  printf(\"hello from qemu: %u model bytes\\n\", g_model_len);\n"
            f"  for (volatile int i = 0; i < {n}; ++i) sink += i;\n"
            "  return 7;\n}\n"
        )
        model_dir = make_model_dir(tmp_path / "m", 100, 64)
        firmware.run(sketch, model_dir, boards.CATALOGUE["mps2_an386"], tmp_path / f"o{n}", core_dir, quiet=True)
        r = qemu.run_qemu(tmp_path / f"o{n}" / "firmware.elf", timeout=30)
        assert "hello from qemu: 100 model bytes" in r["stdout"]
        assert r["exit_code"] == 7 and not r["timed_out"]
        assert r["instructions"] and r["instructions"] > 0
        assert qemu.run_qemu(tmp_path / f"o{n}" / "firmware.elf", timeout=30)["instructions"] == r["instructions"]
        results[n] = r["instructions"]
    # the loop's extra 200 iterations cost a whole, fixed number of instructions per iteration
    extra = results[300] - results[100]
    assert extra > 0 and extra % 200 == 0 and 4 <= extra // 200 <= 20


def test_board_override_reaches_platformio(tmp_path, core_dir):
    # [boards.nano33ble] flash = 4096: PlatformIO's own Flash: line now compares against 4,096
    board = boards.resolve("nano33ble", {"flash": 4096, "ram": 8192}, "tinyml.toml")
    model_dir = make_model_dir(tmp_path / "sine" / "int8", 6000, 256)
    rec = firmware.run(SINE, model_dir, board, tmp_path / "out", core_dir, quiet=True)
    assert (rec["flash_limit"], rec["ram_limit"]) == (4096, 8192)
    assert not rec["fits"] and rec["flash_over_by"] == rec["flash_used"] - 4096


def test_compile_error_names_board_and_cause(tmp_path, core_dir):
    sketch = tmp_path / "broken"
    (sketch / "src").mkdir(parents=True)
    (sketch / "src" / "main.cpp").write_text('#include "model_data.h"\nint main() { return undefined_thing; }\n')
    model_dir = make_model_dir(tmp_path / "m" / "v", 100, 64)
    firmware.run(SINE, model_dir, boards.CATALOGUE["pico"], tmp_path / "out", core_dir, quiet=True)
    assert (tmp_path / "out" / "size.json").exists()
    with pytest.raises(TinyMLError) as e:
        firmware.run(sketch, model_dir, boards.CATALOGUE["pico"], tmp_path / "out", core_dir)
    assert "for board pico" in str(e.value) and "undefined_thing" in str(e.value)
    assert not (tmp_path / "out" / "size.json").exists()
