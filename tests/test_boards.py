"""The board catalogue: real PlatformIO limits, overrides, helpful errors."""
from __future__ import annotations

import pytest

from doit_tinyml.engine.boards import CATALOGUE, OVERRIDE_KEYS, resolve
from doit_tinyml.engine.errors import TinyMLError


def test_catalogue_has_the_boards_with_platformio_limits():
    assert len(CATALOGUE) >= 16
    expect = {
        "nano33ble": (983040, 262144, 64, "nrf52840"),
        "adafruit_pybadge_m4": (524288, 196608, 120, "samd51j19a"),
        "esp32dev": (1310720, 327680, 240, "esp32"),
        "uno": (32256, 2048, 16, "atmega328p"),
    }
    for bid, (flash, ram, mhz, mcu) in expect.items():
        b = CATALOGUE[bid]
        assert (b.flash, b.ram, b.cpu_mhz, b.mcu) == (flash, ram, mhz, mcu)
    for bid in ("adafruit_feather_m4", "pico", "nucleo_f446re", "nucleo_f746zg", "portenta_h7_m7",
                "nicla_vision", "xiaoblesense", "teensy41", "m5stack-core2", "nano_33_iot",
                "disco_f746ng", "bluepill_f103c8", "nrf52840_dk", "mps2_an386"):
        assert bid in CATALOGUE
    for b in CATALOGUE.values():
        assert b.id and b.source and b.flash > 0 and b.ram > 0
        assert b.buildable_offline == (b.arch == "arm")
        if b.id != "mps2_an386":
            assert b.source.startswith("platformio/platform-"), b.id
    assert not CATALOGUE["esp32dev"].buildable_offline and not CATALOGUE["uno"].buildable_offline
    assert CATALOGUE["mps2_an386"].semihosting and CATALOGUE["mps2_an386"].flash_origin == 0


def test_gcc_flags_per_core():
    assert CATALOGUE["nano33ble"].gcc_flags == ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]
    assert CATALOGUE["pico"].gcc_flags == ["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"]
    assert CATALOGUE["uno"].gcc_flags == []
    man = CATALOGUE["nucleo_f746zg"].manifest()
    assert man["upload"] == {"maximum_size": 1048576, "maximum_ram_size": 327680}
    assert man["build"]["cpu"] == "cortex-m7" and man["build"]["f_cpu"] == "216000000L"
    assert man["build"]["flash_origin"] == "0x8000000"


def test_unknown_board_suggests_close_one():
    with pytest.raises(TinyMLError) as e:
        resolve("nano33bel", None, "tinyml.toml")
    msg = str(e.value)
    assert "unknown board 'nano33bel'" in msg and "'nano33ble'" in msg
    assert "[boards.nano33bel]" in msg and "flash" in msg and "ram" in msg and "tinyml.toml" in msg


def test_overrides_and_custom_boards():
    b = resolve("nano33ble", {"flash": 500_000, "name": "Nano with bootloader"}, "tinyml.toml")
    assert (b.flash, b.ram, b.name, b.custom) == (500_000, 262144, "Nano with bootloader", True)
    assert "overridden in tinyml.toml [boards.nano33ble]" in b.source
    assert resolve("nano33ble", {}, "x") is CATALOGUE["nano33ble"]
    c = resolve("my_board", {"flash": 65536, "ram": 8192, "core": "cortex-m0+", "cpu_mhz": 48}, "tinyml.toml")
    assert c.buildable_offline and c.arch == "arm" and c.flash == 65536 and c.gcc_flags[0] == "-mcpu=cortex-m0plus"
    x = resolve("my_esp", {"flash": 1 << 20, "ram": 1 << 18, "core": "xtensa-lx6"}, "t")
    assert not x.buildable_offline and x.arch == "xtensa"


@pytest.mark.parametrize("overrides,fragment", [
    ({"flsh": 1}, "Did you mean 'flash'?"),
    ({"ram": -5}, "must be a positive integer"),
    ({"flash": "1MB"}, "must be a positive integer"),
    ({"core": "cortex-m4ff"}, "Did you mean 'cortex-m4f'?"),
])
def test_bad_overrides(overrides, fragment):
    with pytest.raises(TinyMLError, match="tinyml.toml") as e:
        resolve("nano33ble", overrides, "tinyml.toml")
    assert fragment in str(e.value)
    assert set(OVERRIDE_KEYS) >= {"flash", "ram", "name", "cpu_mhz", "core"}
