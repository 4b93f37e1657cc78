"""What a failed link says: the symbol and the objects, not `collect2: error: ld returned 1 exit status`."""
from __future__ import annotations

from doit_tinyml.engine.platformio import first_compiler_error

LD = "/usr/lib/gcc/arm-none-eabi/12.2.1/../../../arm-none-eabi/bin/ld"


def test_a_symbol_defined_twice_is_named_with_both_objects():
    out = (f"Linking .pio/build/b/firmware.elf\n{LD}: .pio/build/b/src/main.cpp.o: in function `main':\n"
           "/s/src/main.cpp:5: multiple definition of `main'; "
           ".pio/build/b/src/tinyml_tflm/arduino_shim.cpp.o:/x/arduino_shim.cpp:90: first defined here\n"
           "collect2: error: ld returned 1 exit status\n")
    msg = first_compiler_error(out)
    assert msg.startswith("link error: main is defined twice, in main.cpp.o and in arduino_shim.cpp.o")
    assert "own main()" in msg


def test_an_undefined_symbol_is_named_with_its_caller():
    out = (f"{LD}: .pio/build/b/src/main.cpp.o: in function `setup':\n"
           "main.cpp:(.text.setup+0x4): undefined reference to `foo()'\ncollect2: error: ld returned 1 exit status\n")
    assert first_compiler_error(out) == "link error: undefined reference to foo() (from setup in main.cpp.o)"


def test_a_region_overflow_says_by_how_much():
    out = (f"{LD}: firmware.elf section `.text' will not fit in region `FLASH'\n"
           f"{LD}: region `FLASH' overflowed by 784 bytes\ncollect2: error: ld returned 1 exit status\n")
    assert first_compiler_error(out) == "link error: the firmware does not fit the linker's FLASH region (over by 784 B)"


def test_a_compiler_error_still_comes_first():
    out = "src/main.cpp:3:1: error: 'x' was not declared\ncollect2: error: ld returned 1 exit status\n"
    assert first_compiler_error(out) == "src/main.cpp:3:1: error: 'x' was not declared"
