#!/usr/bin/env bash
# Set up, then run the test suite (real TensorFlow, TFLM, PlatformIO, gcc and QEMU; no network).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
