"""The board catalogue: the one place where board limits live (flash, RAM, clock, core).

Figures are PlatformIO's own: `upload.maximum_size` (flash available to the application, i.e.
what PlatformIO's `Flash:` line compares against), `upload.maximum_ram_size`, `build.mcu`,
`build.f_cpu` and `build.cpu` from the official platform's `boards/<id>.json`; `source` records
which manifest (and key) each figure comes from. Pure Python: imported on the no-op path.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from typing import Any

from .errors import TinyMLError

# What the local PlatformIO platform needs per Cortex-M core: gcc -mcpu, -mfpu, -mfloat-abi.
_ARM_FLAGS: dict[str, tuple[str, str | None, str]] = {
    "cortex-m0": ("cortex-m0", None, "soft"),
    "cortex-m0+": ("cortex-m0plus", None, "soft"),
    "cortex-m3": ("cortex-m3", None, "soft"),
    "cortex-m4": ("cortex-m4", None, "soft"),
    "cortex-m4f": ("cortex-m4", "fpv4-sp-d16", "hard"),
    "cortex-m7": ("cortex-m7", "fpv5-sp-d16", "hard"),
    "cortex-m7dp": ("cortex-m7", "fpv5-d16", "hard"),
    "cortex-m33": ("cortex-m33", "fpv5-sp-d16", "hard"),
    "cortex-m33nofp": ("cortex-m33", None, "soft"),
    "cortex-m55": ("cortex-m55", "auto", "hard"),
}
CORES: tuple[str, ...] = tuple(_ARM_FLAGS) + ("xtensa-lx6", "xtensa-lx7", "avr", "riscv")

OVERRIDE_KEYS: tuple[str, ...] = ("name", "flash", "ram", "cpu_mhz", "core", "mcu", "memory", "max_latency_ms")

# Where code and weights are fetched from, as far as time per inference goes: wait states on data reads
# from flash, an instruction cache on or off, as the board's framework leaves them (engine/latency.py,
# data/timing_model.json "memory").
MEMORY_CLASSES: tuple[str, ...] = ("sram", "flash_cache", "flash_l1cache", "flash_icache", "flash_small_cache",
                                   "flash_prefetch", "xip_cache")


@dataclass(frozen=True)
class Board:
    id: str
    name: str
    mcu: str
    core: str
    cpu_mhz: int
    flash: int  # bytes available to the application (PlatformIO upload.maximum_size)
    ram: int  # bytes (PlatformIO upload.maximum_ram_size)
    arch: str  # "arm" | "xtensa" | "avr" | "riscv"
    source: str
    flash_origin: int = 0x0000_0000
    ram_origin: int = 0x2000_0000
    stack_size: int = 4096  # reserved in RAM by the local platform's linker script
    heap_size: int = 1024  # ditto (newlib-nano malloc pool)
    semihosting: bool = False  # link newlib's rdimon (printf to the host under QEMU)
    custom: bool = False
    memory: str = "flash_cache"  # MEMORY_CLASSES: flash wait states / cache, for the latency estimate
    max_latency_ms: float | None = None  # ship only variants at most this slow on this board (report)

    @property
    def buildable_offline(self) -> bool:
        """The project's local PlatformIO platform builds every Cortex-M board with Debian's gcc."""
        return self.arch == "arm" and self.core in _ARM_FLAGS

    @property
    def gcc_flags(self) -> list[str]:
        """-mcpu/-mthumb/-mfpu/-mfloat-abi for this core (Cortex-M only)."""
        if self.core not in _ARM_FLAGS:
            return []
        cpu, fpu, abi = _ARM_FLAGS[self.core]
        flags = [f"-mcpu={cpu}", "-mthumb", f"-mfloat-abi={abi}"]
        if fpu:
            flags.insert(2, f"-mfpu={fpu}")
        return flags

    def manifest(self) -> dict[str, Any]:
        """The PlatformIO board manifest (`boards/<id>.json`) the local platform builds from."""
        cpu, fpu, abi = _ARM_FLAGS[self.core]
        return {
            "build": {
                "cpu": cpu,
                "fpu": fpu or "",
                "float_abi": abi,
                "f_cpu": f"{self.cpu_mhz * 1_000_000}L",
                "mcu": self.mcu,
                "core": self.core,
                "flash_origin": hex(self.flash_origin),
                "ram_origin": hex(self.ram_origin),
                "stack_size": self.stack_size,
                "heap_size": self.heap_size,
                "semihosting": self.semihosting,
            },
            "frameworks": [],
            "name": self.name,
            "upload": {"maximum_size": self.flash, "maximum_ram_size": self.ram},
            "url": "https://github.com/doit-tinyml",
            "vendor": "doit-tinyml catalogue",
            "tinyml_source": self.source,
        }


def _b(id: str, name: str, mcu: str, core: str, mhz: int, flash: int, ram: int, arch: str, source: str, **kw: Any) -> Board:
    return Board(id=id, name=name, mcu=mcu, core=core, cpu_mhz=mhz, flash=flash, ram=ram, arch=arch, source=source, **kw)


_LIMITS = "upload.maximum_size/maximum_ram_size, build.mcu/f_cpu/cpu"

CATALOGUE: dict[str, Board] = {
    b.id: b
    for b in [
        _b("nano33ble", "Arduino Nano 33 BLE (Sense)", "nrf52840", "cortex-m4f", 64, 983040, 262144, "arm",
           f"platformio/platform-nordicnrf52 boards/nano33ble.json {_LIMITS}", memory="flash_icache"),
        _b("adafruit_pybadge_m4", "Adafruit PyBadge M4 / EdgeBadge", "samd51j19a", "cortex-m4f", 120, 524288, 196608, "arm",
           f"platformio/platform-atmelsam boards/adafruit_pybadge_m4.json {_LIMITS}", memory="flash_small_cache"),
        _b("adafruit_feather_m4", "Adafruit Feather M4 Express (SAMD51)", "samd51j19a", "cortex-m4f", 120, 507904, 196608, "arm",
           f"platformio/platform-atmelsam boards/adafruit_feather_m4.json {_LIMITS}", memory="flash_small_cache"),
        _b("nano_33_iot", "Arduino Nano 33 IoT", "samd21g18a", "cortex-m0+", 48, 262144, 32768, "arm",
           f"platformio/platform-atmelsam boards/nano_33_iot.json {_LIMITS}", memory="flash_prefetch"),
        _b("pico", "Raspberry Pi Pico", "rp2040", "cortex-m0+", 133, 2097152, 270336, "arm",
           f"platformio/platform-raspberrypi boards/pico.json {_LIMITS}", flash_origin=0x1000_0000, memory="xip_cache"),
        _b("nucleo_f446re", "ST Nucleo F446RE", "stm32f446ret6", "cortex-m4f", 180, 524288, 131072, "arm",
           f"platformio/platform-ststm32 boards/nucleo_f446re.json {_LIMITS}", flash_origin=0x0800_0000),
        _b("nucleo_f746zg", "ST Nucleo F746ZG", "stm32f746zgt6", "cortex-m7", 216, 1048576, 327680, "arm",
           f"platformio/platform-ststm32 boards/nucleo_f746zg.json {_LIMITS}", flash_origin=0x0800_0000,
           memory="flash_l1cache"),
        _b("disco_f746ng", "ST 32F746GDISCOVERY", "stm32f746ngh6", "cortex-m7", 216, 1048576, 327680, "arm",
           f"platformio/platform-ststm32 boards/disco_f746ng.json {_LIMITS}", flash_origin=0x0800_0000,
           memory="flash_l1cache"),
        _b("bluepill_f103c8", "BluePill F103C8", "stm32f103c8t6", "cortex-m3", 72, 65536, 20480, "arm",
           f"platformio/platform-ststm32 boards/bluepill_f103c8.json {_LIMITS}", flash_origin=0x0800_0000, memory="flash_prefetch"),
        _b("nucleo_l552ze_q", "ST Nucleo L552ZE-Q", "stm32l552zet6", "cortex-m33", 80, 524288, 196608, "arm",
           f"platformio/platform-ststm32 boards/nucleo_l552ze_q.json {_LIMITS}", flash_origin=0x0800_0000),
        _b("portenta_h7_m7", "Arduino Portenta H7 (M7 core)", "stm32h747xih6", "cortex-m7dp", 480, 786432, 523624, "arm",
           f"platformio/platform-ststm32 boards/portenta_h7_m7.json {_LIMITS}",
           flash_origin=0x0804_0000, ram_origin=0x2400_0000, memory="flash_l1cache"),
        _b("nicla_vision", "Arduino Nicla Vision", "stm32h747aii6", "cortex-m7dp", 480, 786432, 523624, "arm",
           f"platformio/platform-ststm32 boards/nicla_vision.json {_LIMITS}",
           flash_origin=0x0804_0000, ram_origin=0x2400_0000, memory="flash_l1cache"),
        _b("xiaoblesense", "Seeed XIAO nRF52840 Sense", "nrf52840", "cortex-m4f", 64, 811008, 237568, "arm",
           f"platformio/platform-nordicnrf52 boards/xiaoblesense.json {_LIMITS}", memory="flash_icache"),
        _b("nrf52840_dk", "Nordic nRF52840-DK", "nrf52840", "cortex-m4f", 64, 1048576, 262144, "arm",
           f"platformio/platform-nordicnrf52 boards/nrf52840_dk.json {_LIMITS}", memory="flash_icache"),
        _b("teensy41", "Teensy 4.1", "imxrt1062", "cortex-m7dp", 600, 8126464, 524288, "arm",
           f"platformio/platform-teensy boards/teensy41.json {_LIMITS}", flash_origin=0x6000_0000, memory="sram"),
        _b("esp32dev", "Espressif ESP32 Dev Module", "esp32", "xtensa-lx6", 240, 1310720, 327680, "xtensa",
           "platformio/platform-espressif32 boards/esp32dev.json upload.maximum_ram_size, build.mcu/f_cpu; "
           "flash = factory app partition of default.csv (0x140000), what PlatformIO's Flash: line uses"),
        _b("m5stack-core2", "M5Stack Core2", "esp32", "xtensa-lx6", 240, 6553600, 4521984, "xtensa",
           "platformio/platform-espressif32 boards/m5stack-core2.json upload.maximum_ram_size (incl. 4 MiB PSRAM), "
           "build.mcu/f_cpu; flash = app partition of default_16MB.csv (0x640000)"),
        _b("uno", "Arduino Uno", "atmega328p", "avr", 16, 32256, 2048, "avr",
           f"platformio/platform-atmelavr boards/uno.json {_LIMITS.replace(', build.mcu/f_cpu/cpu', ', build.mcu/f_cpu')}"),
        _b("mps2_an386", "QEMU mps2-an386 (Cortex-M4)", "cmsdk-cm4", "cortex-m4f", 25, 4 * 1024 * 1024, 4 * 1024 * 1024, "arm",
           "QEMU hw/arm/mps2.c machine mps2-an386: SSRAM1 4 MiB at 0x00000000 (code), SSRAM2/3 4 MiB at 0x20000000 (data), "
           "SYSCLK 25 MHz (QEMU's cortex-m4 has the FPv4-SP FPU)",
           heap_size=16384, semihosting=True, memory="sram"),
    ]
}


_BOARD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def resolve(board_id: str, overrides: dict | None = None, where: str = "tinyml.toml") -> Board:
    """The catalogue board `board_id`, with `[boards.<id>]` overrides applied (or a custom board).

    `where` names the config file/table for error messages.
    """
    if not isinstance(board_id, str) or not _BOARD_ID.fullmatch(board_id) or board_id in ("aot", "logs", "tflm"):
        # ids become folder names (build/<model>/<variant>/<id>/, .pio/build/<id>/, boards/<id>.json):
        # never a path, '.', '..', or an absolute name
        raise TinyMLError(
            f"{where}: board id {board_id!r} is not allowed: board ids become folder names, so they may use "
            f"letters, digits, '_' and '-' only (at most 64, starting with a letter or digit), e.g. 'nano33ble'."
        )
    overrides = dict(overrides or {})
    for key in overrides:
        if key not in OVERRIDE_KEYS:
            allowed = OVERRIDE_KEYS + ("port", "baud")  # port/baud: where the board is (config.PortSettings)
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise TinyMLError(
                f"{where}: [boards.{board_id}] has unknown key '{key}'.{hint} "
                f"Allowed keys: {', '.join(allowed)}."
            )
    for key in ("flash", "ram", "cpu_mhz"):
        if key in overrides:
            v = overrides[key]
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise TinyMLError(
                    f"{where}: [boards.{board_id}] {key} = {v!r}: must be a positive integer "
                    f"({'bytes' if key != 'cpu_mhz' else 'MHz'})."
                )
    if "max_latency_ms" in overrides:
        v = overrides["max_latency_ms"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v != v or v == float("inf"):
            raise TinyMLError(f"{where}: [boards.{board_id}] max_latency_ms = {v!r}: must be a positive number of "
                              f"milliseconds per inference (the ship decision skips slower variants on this board).")
        overrides["max_latency_ms"] = float(v)
    if "memory" in overrides and overrides["memory"] not in MEMORY_CLASSES:
        close = difflib.get_close_matches(str(overrides["memory"]), MEMORY_CLASSES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise TinyMLError(
            f"{where}: [boards.{board_id}] memory = {overrides['memory']!r} is not known.{hint} Allowed: "
            f"{', '.join(MEMORY_CLASSES)} (sram: code and weights in zero-wait RAM/TCM, e.g. Teensy 4; flash_cache: "
            f"flash behind an accelerator or cache, e.g. STM32 ART on an M4, the flash cache of an M33; flash_l1cache: a "
            f"Cortex-M7 with its L1 caches on; flash_icache: an instruction cache, data read from flash uncached, e.g. "
            f"nRF52840; flash_small_cache: many wait states and a small cache, e.g. SAMD51; flash_prefetch: wait "
            f"states, prefetch only, e.g. SAMD21, STM32F1; xip_cache: external QSPI flash, e.g. RP2040).")
    if "core" in overrides and overrides["core"] not in CORES:
        close = difflib.get_close_matches(str(overrides["core"]), CORES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise TinyMLError(
            f"{where}: [boards.{board_id}] core = {overrides['core']!r} is not known.{hint} "
            f"Allowed: {', '.join(CORES)}."
        )

    base = CATALOGUE.get(board_id)
    if base is None:
        missing = [k for k in ("flash", "ram", "core") if k not in overrides]
        if missing:
            close = difflib.get_close_matches(board_id, list(CATALOGUE), n=3, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise TinyMLError(
                f"{where}: unknown board '{board_id}'.{hint} Known boards: {', '.join(sorted(CATALOGUE))}. "
                f"To use another board, define it in a [boards.{board_id}] table with flash = <bytes>, "
                f"ram = <bytes>, core = \"cortex-m4f\" (one of {', '.join(CORES)}), and optionally "
                f"name, mcu, cpu_mhz (missing now: {', '.join(missing)})."
            )
        core = overrides["core"]
        arch = "arm" if core.startswith("cortex") else ("xtensa" if core.startswith("xtensa") else core)
        return Board(
            id=board_id,
            name=overrides.get("name", board_id),
            mcu=overrides.get("mcu", "custom"),
            core=core,
            cpu_mhz=overrides.get("cpu_mhz", 64),
            flash=overrides["flash"],
            ram=overrides["ram"],
            arch=arch,
            source=f"{where} [boards.{board_id}]",
            custom=True,
            memory=overrides.get("memory", "flash_cache"),
            max_latency_ms=overrides.get("max_latency_ms"),
        )
    if not overrides:
        return base
    changed = {k: v for k, v in overrides.items() if getattr(base, k) != v}
    if not changed:
        return base
    if set(changed) == {"max_latency_ms"}:  # a requirement on the board, not a different board
        return dataclasses.replace(base, max_latency_ms=changed["max_latency_ms"])
    if "core" in changed:
        core = changed["core"]
        changed["arch"] = "arm" if core.startswith("cortex") else ("xtensa" if core.startswith("xtensa") else core)
    src = f"{base.source}; overridden in {where} [boards.{board_id}]: {', '.join(sorted(changed))}"
    return dataclasses.replace(base, source=src, custom=True, **changed)
