#!/usr/bin/env python3
"""Set up offline firmware builds: the Arm toolchain (apt) and a PlatformIO core in the build folder.

    python scripts/setup_platformio.py                  # build/.platformio, installs gcc via apt if missing
    python scripts/setup_platformio.py --core-dir DIR   # another PlatformIO core folder
    python scripts/setup_platformio.py --no-apt         # never call apt-get, only report

Afterwards `doit` builds firmware without the internet (see docs/firmware.md).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

APT_PACKAGES = ["gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "libstdc++-arm-none-eabi-newlib"]


def install_toolchain() -> None:
    cmd = ["apt-get", "install", "-y", *APT_PACKAGES]
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            raise SystemExit("arm-none-eabi-gcc is missing; as root run: " + " ".join(cmd))
        cmd = ["sudo", *cmd]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--core-dir", default="build/.platformio", help="PlatformIO core folder (PLATFORMIO_CORE_DIR)")
    ap.add_argument("--no-apt", action="store_true", help="do not install the toolchain with apt-get")
    args = ap.parse_args(argv)

    from doit_tinyml import firmware
    from doit_tinyml.engine.errors import TinyMLError

    if not shutil.which("arm-none-eabi-gcc") and not args.no_apt:
        install_toolchain()
    try:
        platform = firmware.ensure_core(Path(args.core_dir))
    except TinyMLError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"PlatformIO core ready in {Path(args.core_dir).resolve()} (platform {platform})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
