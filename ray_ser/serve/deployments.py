"""The model deployments behind the ingress: one for ASR, one per branch, each batching concurrent clients.

Each is a thin wrapper over the annotation core: ASR is ``ray_ser.core.annotator.transcribe``, a
branch is the ``BranchRunner`` the labeling job runs (routing, abstention, speaker lookup and error
capture in one place). ``@serve.batch`` gathers clips from concurrent requests into one model call;
the call runs in a thread so the replica keeps taking requests (they form the next batch) while the
model works. Batch sizes come from the profile through the app builder (ray_ser/serve/app.py), as
do every deployment's resources.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from ray import serve

if TYPE_CHECKING:
    import numpy as np

    from ray_ser.config import LabelConfig
    from ray_ser.core.branch import BranchVoteResult, Clip
    from ray_ser.models.base import Transcript

__all__ = ["AsrServer", "BranchServer", "checkpoint_id", "asr_model_id"]

_SAMPLE_BYTES = 1 << 16


def checkpoint_id(directory: str | Path) -> str:
    """A short content fingerprint of a checkpoint directory: each file's name, size, first and last 64 KiB.

    Two checkpoints of one training run differ in their weights, hence in these bytes; reading a few
    bytes per file keeps it instant for multi-gigabyte models. No path leaves the service this way.
    """
    root = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(root).as_posix()}\0{size}\0".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(_SAMPLE_BYTES))
            if size > 2 * _SAMPLE_BYTES:
                handle.seek(-_SAMPLE_BYTES, 2)
                digest.update(handle.read())
    return f"sha256:{digest.hexdigest()[:16]}"


def asr_model_id(cfg: LabelConfig) -> str:
    """The ASR model's id: its name (an alias or a hub size), or a fingerprint when it is a local directory."""
    candidate = Path(cfg.asr.model).expanduser()
    return f"{cfg.asr.engine}:{checkpoint_id(candidate) if candidate.is_dir() else cfg.asr.model}"


class AsrServer:
    """Transcribes clips; a failed transcription is a warning for that clip (the speech branches still vote)."""

    def __init__(self, config: dict, max_batch_size: int, batch_wait_timeout_s: float) -> None:
        from ray_ser.config import LabelConfig
        from ray_ser.models.asr import load_asr

        cfg = LabelConfig.model_validate(config)
        self.model = load_asr(cfg.asr, cfg.resolved_cache_dir())
        self.model_id = asr_model_id(cfg)
        self.transcribe.set_max_batch_size(max_batch_size)
        self.transcribe.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def describe(self) -> dict[str, str]:
        return {"asr": self.model_id}

    @serve.batch
    async def transcribe(self, audios: list[np.ndarray]) -> list[tuple[Transcript | None, str | None, str]]:
        """(transcript, failure reason, model id) per clip: the id travels with each answer, so a response
        names the model that produced it even while replicas of two versions serve side by side."""
        from ray_ser.core.annotator import transcribe
        from ray_ser.core.branch import Clip

        transcripts, _, failures = await asyncio.to_thread(transcribe, self.model, [Clip(a) for a in audios])
        return [(t, f, self.model_id) for t, f in zip(transcripts, failures)]


class BranchServer:
    """One voting branch over clips, with its checkpoint's training speakers for the `speaker` field."""

    def __init__(self, config: dict, name: str, max_batch_size: int, batch_wait_timeout_s: float) -> None:
        from ray_ser.config import LabelConfig
        from ray_ser.core.branch import load_branch_runner
        from ray_ser.io.storage import localize_directory

        cfg = LabelConfig.model_validate(config)
        self.name = name
        # One clip makes no speaker profile: a speaker-normalised branch knows its training speakers only.
        self.runner = load_branch_runner(name, cfg, known_speakers_only=True)
        branch = cfg.branch(name)
        self.checkpoint = checkpoint_id(localize_directory(branch.checkpoint, cfg.storage, cfg.resolved_cache_dir()))
        self.run.set_max_batch_size(max_batch_size)
        self.run.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def describe(self) -> dict[str, str]:
        return {self.name: self.checkpoint}

    @serve.batch
    async def run(self, clips: list[Clip]) -> list[tuple[BranchVoteResult, list[str], str]]:
        """(the branch's vote, unknown-speaker warnings, checkpoint id) per clip."""
        from ray_ser.core.annotator import speaker_warnings

        results = await asyncio.to_thread(self.runner.run, clips)
        runners = {self.name: self.runner}
        return [(result, speaker_warnings(runners, clip.speaker), self.checkpoint)
                for result, clip in zip(results, clips)]

    def __del__(self) -> None:
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.close()
