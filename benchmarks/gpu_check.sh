#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) within 10 minutes; arguments pass through (--dry-run, --out).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
exec timeout 600 "$PYTHON" benchmarks/gpu_check.py "$@"
