#!/usr/bin/env bash
# Set up everything doit-tinyml needs on a fresh Debian/Ubuntu machine, idempotently:
#   1. Debian's Arm cross toolchain and QEMU (when missing),
#   2. uv and the project's Python environment in .venv (packages hard-linked from uv's cache,
#      so repeated set-ups in fresh clones take seconds and almost no disk),
#   3. the local PlatformIO core packages (offline: tool-scons + a toolchain linked to Debian's gcc).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm)
missing=()
command -v arm-none-eabi-gcc >/dev/null || missing+=(gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib)
command -v arm-none-eabi-gcc >/dev/null && ! echo '#include <stdlib.h>' | arm-none-eabi-gcc -x c -c -o /dev/null - 2>/dev/null \
  && missing+=(libnewlib-arm-none-eabi)
command -v arm-none-eabi-g++ >/dev/null && ! echo '#include <cstdint>' | arm-none-eabi-g++ -x c++ -c -o /dev/null - 2>/dev/null \
  && missing+=(libstdc++-arm-none-eabi-newlib)
command -v qemu-system-arm >/dev/null || missing+=(qemu-system-arm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
    echo "setup: could not install the Arm toolchain. Install these Debian packages yourself, then re-run:" >&2
    echo "  sudo apt-get install ${DEBS[*]}" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if ! command -v uv >/dev/null; then
  echo "setup: installing uv (from PyPI)"
  "$PY" -m pip install -q --user uv==0.13.8 || "$PY" -m pip install -q uv==0.13.8
  export PATH="$HOME/.local/bin:$PATH"
fi
[ -x .venv/bin/python ] || uv venv -q -p "$PY" .venv
uv pip install -q -p .venv/bin/python --reinstall-package doit-tinyml -e ".[test]"

# Local PlatformIO core for the demo (tests make their own inside their temporary projects).
.venv/bin/python -c "from pathlib import Path; from doit_tinyml.engine import platformio; platformio.ensure_core(Path('build/.platformio'))"
echo "setup: ready (.venv, arm-none-eabi-gcc $(arm-none-eabi-gcc -dumpversion), local PlatformIO core in build/.platformio)"
