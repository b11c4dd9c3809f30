#!/usr/bin/env bash
# Set up everything from nothing: Debian packages, .venv from the pinned lock, ray_ser itself.
# Idempotent: a second run with an unchanged lock takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v sox >/dev/null || missing+=(sox)
dpkg -s libsox-fmt-mp3 >/dev/null 2>&1 || missing+=(libsox-fmt-mp3)
# the report test renders report.html in headless Chromium (Debian's package)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=$(cat scripts/requirements-cpu.lock pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat .venv/.ray_ser_stamp 2>/dev/null)" != "$stamp" ]; then
  echo "setup: installing the pinned environment (a few minutes on a fresh machine)"
  .venv/bin/python -m pip install -q --disable-pip-version-check pip==25.3 setuptools==78.1.1 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q --no-deps -r scripts/requirements-cpu.lock 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import ray_ser, torch, ray, transformers, faster_whisper, vllm, opensmile" \
    || { echo "setup: the environment does not import; see the errors above" >&2; exit 1; }
  echo "$stamp" > .venv/.ray_ser_stamp
fi
echo "setup: ready (.venv)"
