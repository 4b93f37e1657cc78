#!/usr/bin/env bash
# Set up, then build the demo firmware repo and print its size table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/doit
.venv/bin/doit report
