"""One branch over a batch of clips: route each clip's input by the branch's kind, abstain where it has
nothing to read, look up speaker statistics, predict with failures isolated, take the argmax.

``BranchRunner`` is what the labeling job's branch stage and the Serve branch deployment both run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ray_ser.core.errors import predict_isolating_failures
from ray_ser.models.base import EncoderFeatures

if TYPE_CHECKING:
    from ray_ser.branches.base import BranchPredictor
    from ray_ser.config import LabelConfig
    from ray_ser.config_types import BranchBase

__all__ = ["Clip", "BranchVoteResult", "BranchRunner", "load_branch_runner", "load_predictor",
           "uses_speaker_statistics", "shares_asr_encoder", "require_matching_classes"]


@dataclass(frozen=True)
class Clip:
    """One decoded clip as a branch sees it."""

    audio: np.ndarray | None        # 16 kHz mono float32; None where decoding failed
    transcript: str | None = None   # the ASR's (or the caller's) transcript
    speaker: str | None = None      # the speaker id, when known
    encoder_features: np.ndarray | None = None  # the ASR encoder's pooled states, when it computed them


@dataclass(frozen=True)
class BranchVoteResult:
    """A branch's answer for one clip: a label and its distribution, or an abstention (label None)
    with the reason in ``warning`` when it was a failure rather than nothing to read."""

    label: str | None = None
    probs: list[float] | None = None
    warning: str | None = None
    attempted: bool = False         # the branch had an input for this clip

    @property
    def failed(self) -> bool:
        return self.attempted and self.label is None


class BranchRunner:
    """A loaded branch and, when its checkpoint is speaker-normalised, the speakers' statistics.

    statistics maps speaker id -> summed feature statistics (the job's profiling pass, or the
    checkpoint's own training speakers at the Serve endpoint); a clip whose speaker has none is
    labelled unshifted.
    """

    def __init__(self, name: str, predictor: BranchPredictor,
                 statistics: dict[str, np.ndarray] | None = None, reads_asr_encoder: bool = False) -> None:
        self.name = name
        self.predictor = predictor
        self.input_kind = predictor.input_kind
        self.statistics = statistics if predictor.speaker_profiles is not None else None
        # The checkpoint reads the ASR's own encoder states: a clip that carries them is not encoded again.
        self.reads_asr_encoder = reads_asr_encoder

    @property
    def uses_speakers(self) -> bool:
        return self.statistics is not None

    def known_speaker(self, speaker: str | None) -> bool:
        return self.statistics is not None and speaker in self.statistics

    def _input(self, clip: Clip):
        """The predictor's input for a clip, or None when the branch has nothing to read there."""
        if self.input_kind == "text":
            return clip.transcript if clip.transcript and clip.transcript.strip() else None
        if self.reads_asr_encoder and clip.encoder_features is not None:
            return EncoderFeatures(clip.encoder_features)
        if clip.audio is None or clip.audio.size == 0:
            return None
        return clip.audio if self.input_kind == "audio" else (clip.audio, clip.transcript)

    def run(self, clips: Sequence[Clip]) -> list[BranchVoteResult]:
        todo = [(i, item) for i, item in ((i, self._input(c)) for i, c in enumerate(clips)) if item is not None]
        results = [BranchVoteResult() for _ in clips]
        if not todo:
            return results
        inputs = [item for _, item in todo]
        if self.statistics is None:
            predicted, failures = predict_isolating_failures(self.name, self.predictor.predict_batch, inputs)
        else:
            pairs = [(item, self.statistics.get(clips[i].speaker)) for i, item in todo]
            predicted, failures = predict_isolating_failures(
                self.name, lambda chunk: self.predictor.predict_batch([x for x, _ in chunk], [s for _, s in chunk]),
                pairs)
        for (i, _), probs, failure in zip(todo, predicted, failures):
            if failure is not None:
                results[i] = BranchVoteResult(warning=failure, attempted=True)
            else:
                results[i] = BranchVoteResult(self.predictor.classes[int(np.argmax(probs))],
                                              [float(p) for p in probs], attempted=True)
        return results

    def audio_seconds(self, clips: Sequence[Clip]) -> float:
        """Seconds of audio this branch read from clips (0 for a text branch)."""
        from ray_ser.schema import SAMPLE_RATE

        if self.input_kind == "text":
            return 0.0
        return sum(c.audio.size for c in clips if c.audio is not None) / SAMPLE_RATE

    def close(self) -> None:
        close = getattr(self.predictor, "close", None)
        if close is not None:
            close()


def uses_speaker_statistics(branch: BranchBase, storage) -> bool:
    """Whether a configured branch's checkpoint is speaker-normalised, from its branch.json alone."""
    from ray_ser.branches import family_of
    from ray_ser.branches.checkpoint import read_remote_manifest

    if not family_of(branch).speaker_normalisable or not branch.checkpoint:
        return False
    return read_remote_manifest(branch.checkpoint, storage, branch.family).speaker_normalised


def shares_asr_encoder(branch: BranchBase, cfg: LabelConfig) -> bool:
    """Whether the job's (or the endpoint's) ASR pass computes exactly the encoder states this branch's
    checkpoint reads, so the branch takes them instead of encoding each clip again."""
    from ray_ser.branches import family_of
    from ray_ser.branches.checkpoint import read_remote_manifest

    reuses = family_of(branch).reuses_asr_encoder
    if reuses is None or not branch.checkpoint or not (cfg.asr.enabled and cfg.asr.share_encoder):
        return False
    return reuses(read_remote_manifest(branch.checkpoint, cfg.storage, branch.family), cfg.asr)


def require_matching_classes(cfg: LabelConfig) -> None:
    """Every branch's checkpoint predicts the profile's taxonomy (labels.classes), in its order; else a
    ConfigError naming the branch, before any model loads."""
    from ray_ser.branches.checkpoint import read_remote_manifest
    from ray_ser.config import ConfigError

    for name, branch in cfg.branches.items():
        if not branch.checkpoint or branch.family == "speech_llm" and not _has_manifest(branch, cfg):
            continue  # a bare speech-LLM model directory answers in the profile's classes
        classes = read_remote_manifest(branch.checkpoint, cfg.storage, branch.family).classes
        if tuple(classes) != tuple(cfg.labels.classes):
            raise ConfigError(f"branch {name!r} was trained on classes {list(classes)}, but labels.classes is "
                              f"{list(cfg.labels.classes)}: set labels.classes to match or retrain the branch")


def _has_manifest(branch: BranchBase, cfg: LabelConfig) -> bool:
    from ray_ser.branches.checkpoint import CheckpointError, read_remote_manifest

    try:
        read_remote_manifest(branch.checkpoint, cfg.storage)
        return True
    except CheckpointError:
        return False


def load_predictor(branch: BranchBase, cfg: LabelConfig) -> BranchPredictor:
    """The predictor of a configured branch, its checkpoint fetched to this node first if remote."""
    from ray_ser.branches import family_of
    from ray_ser.branches.base import LoadContext
    from ray_ser.io.storage import localize_directory

    cache = cfg.resolved_cache_dir()
    local = localize_directory(branch.checkpoint, cfg.storage, cache)
    context = LoadContext(storage=cfg.storage, cache_dir=Path(cache), columns=cfg.columns, labels=cfg.labels)
    return family_of(branch).load_predictor(local, branch, context)


def load_branch_runner(name: str, cfg: LabelConfig, statistics: dict[str, np.ndarray] | None = None,
                       known_speakers_only: bool = False) -> BranchRunner:
    """A runner for cfg.branches[name].

    statistics: the speakers profiled from the input (the labeling job), pooled with the
    checkpoint's training speakers when speakers.pool_known_speakers says so. known_speakers_only
    (Serve, where one clip makes no profile): the checkpoint's training speakers alone.
    """
    branch = cfg.branch(name)
    predictor = load_predictor(branch, cfg)
    profiles = predictor.speaker_profiles
    if profiles is not None:
        if known_speakers_only:
            statistics = profiles.with_known_speakers({})
        elif statistics is not None and cfg.speakers.pool_known_speakers:
            statistics = profiles.with_known_speakers(statistics)
    return BranchRunner(name, predictor, statistics, reads_asr_encoder=shares_asr_encoder(branch, cfg))
