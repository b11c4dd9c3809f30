#!/usr/bin/env bash
# README command 1: set up from nothing, then run the main job on its embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ray-ser demo --workdir runs/demo "$@"
