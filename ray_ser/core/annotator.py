"""A whole annotation for decoded clips: ASR, every branch, the vote. No Ray here.

The Serve endpoint runs this (in one process, or split over deployments that each run one
piece of it); the labeling job runs the same ``BranchRunner`` per branch and the same vote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

from ray_ser.core.branch import BranchRunner, BranchVoteResult, Clip
from ray_ser.labels import EMOTIONS
from ray_ser.core.decision import Decision, decide
from ray_ser.core.fusion import Fusion

if TYPE_CHECKING:
    from ray_ser.config import LabelConfig
    from ray_ser.models.base import AsrModel, Transcript

__all__ = ["Annotation", "Annotator", "vote_over", "speaker_warnings"]


@dataclass(frozen=True)
class Annotation:
    label: str | None
    confidence: float | None
    agreement: float | None
    transcript: str | None
    language: str | None
    branches: dict[str, BranchVoteResult]
    warnings: list[str] = field(default_factory=list)
    classes: tuple[str, ...] = EMOTIONS
    probs: list[float] | None = None        # the final distribution
    vote_label: str | None = None           # the majority vote, whatever decided the label
    vote_confidence: float | None = None

    def branch_body(self) -> dict[str, dict]:
        """Each voting branch's label and distribution, keyed by class."""
        return {name: {"label": r.label, "probs": dict(zip(self.classes, r.probs))}
                for name, r in self.branches.items() if r.label is not None}


def vote_over(results: Mapping[str, BranchVoteResult], weights: Mapping[str, float], priority: Sequence[str],
              classes: Sequence[str] = EMOTIONS, fusion: Fusion | None = None) -> Decision:
    """The decision over branches' results for one clip; an abstaining branch does not vote."""
    return decide({name: r.label for name, r in results.items()}, {name: r.probs for name, r in results.items()},
                  weights, priority, classes, fusion)


def speaker_warnings(runners: Mapping[str, BranchRunner], speaker: str | None) -> list[str]:
    """A speaker id a speaker-normalised branch does not know: its clip is labelled unshifted."""
    if speaker is None:
        return []
    return [f"{name}: speaker {speaker!r} is not one the branch was trained on; the clip is labelled "
            "without a speaker profile" for name, r in runners.items() if r.uses_speakers and not r.known_speaker(speaker)]


class Annotator:
    """ASR (optional), the branch runners and the vote settings of one profile."""

    def __init__(self, asr: AsrModel | None, runners: dict[str, BranchRunner], weights: Mapping[str, float],
                 priority: Sequence[str], classes: Sequence[str] = EMOTIONS, fusion: Fusion | None = None) -> None:
        self.asr = asr
        self.runners = runners
        self.weights = dict(weights)
        self.priority = tuple(priority)
        self.classes = tuple(classes)
        self.fusion = fusion

    @classmethod
    def load(cls, cfg: LabelConfig) -> Annotator:
        """Every model of the profile in this process. A speaker-normalised branch profiles a
        clip's speaker from the checkpoint's training speakers (one clip makes no profile)."""
        from ray_ser.core.branch import load_branch_runner
        from ray_ser.models.asr import load_asr

        from ray_ser.core.branch import require_matching_classes
        from ray_ser.core.fusion import load_fusion

        cfg.require_checkpoints()
        cfg.require_fusion()
        require_matching_classes(cfg)
        fusion = None
        if cfg.fusion.method != "none" and cfg.branches:
            fusion = load_fusion(cfg.fusion.checkpoint, cfg.storage)
            fusion.check(tuple(cfg.branches), cfg.labels.classes, f"fusion {cfg.fusion.checkpoint}")
        asr = load_asr(cfg.asr, cfg.resolved_cache_dir()) if cfg.asr.enabled else None
        runners = {name: load_branch_runner(name, cfg, known_speakers_only=True) for name in cfg.branches}
        return cls(asr, runners, cfg.vote_weights(), cfg.vote.priority, cfg.labels.classes, fusion)

    def transcribe(self, clips: Sequence[Clip]) -> tuple[list[Transcript | None], list, list[str | None]]:
        """Transcripts of the clips that have none, and the encoder's pooled states where a branch reads
        them; a failed transcription is a warning, not an error: the speech branches still vote."""
        from ray_ser.core.errors import predict_isolating_failures

        transcripts: list[Transcript | None] = [None] * len(clips)
        states: list = [None] * len(clips)
        failures: list[str | None] = [None] * len(clips)
        todo = [i for i, c in enumerate(clips) if c.transcript is None and c.audio is not None]
        if self.asr is None or not todo:
            return transcripts, states, failures
        pooled = any(r.reads_asr_encoder for r in self.runners.values())

        def run(audios):
            if not pooled:
                return self.asr.predict_batch(audios)
            texts, values = self.asr.transcribe(audios, pooled_states=True)
            return list(zip(texts, values))

        found, errors = predict_isolating_failures("asr", run, [clips[i].audio for i in todo])
        for i, result, error in zip(todo, found, errors):
            failures[i] = error
            if result is not None:
                transcripts[i], states[i] = result if pooled else (result, None)
        return transcripts, states, failures

    def annotate(self, clips: Sequence[Clip]) -> list[Annotation]:
        transcripts, states, asr_failures = self.transcribe(clips)
        clips = [Clip(c.audio, t.text if t is not None else c.transcript, c.speaker, s)
                 for c, t, s in zip(clips, transcripts, states)]
        per_branch = {name: runner.run(clips) for name, runner in self.runners.items()}
        out = []
        for i, clip in enumerate(clips):
            results = {name: rows[i] for name, rows in per_branch.items()}
            warnings = [w for w in (asr_failures[i],) if w]
            warnings += speaker_warnings(self.runners, clip.speaker)
            warnings += [r.warning for r in results.values() if r.warning]
            decision = vote_over(results, self.weights, self.priority, self.classes, self.fusion)
            language = transcripts[i].language if transcripts[i] is not None else None
            out.append(Annotation(decision.label, decision.confidence, decision.agreement, clip.transcript, language,
                                  results, warnings, self.classes, decision.probs, decision.vote_label,
                                  decision.vote_confidence))
        return out

    def close(self) -> None:
        for runner in self.runners.values():
            runner.close()

