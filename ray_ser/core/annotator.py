"""A whole annotation for decoded clips: ASR, every branch, the decision. No Ray here.

The Serve endpoint runs this (in one process, or split over deployments that each run one
piece of it); the labeling job runs the same ``BranchRunner`` per branch and the same decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

from ray_ser.core.branch import BranchRunner, BranchVoteResult, Clip
from ray_ser.core.decision import Decision, decide
from ray_ser.core.fusion import Fusion
from ray_ser.labels import EMOTIONS

if TYPE_CHECKING:
    from ray_ser.config import LabelConfig
    from ray_ser.models.base import AsrModel, Transcript

__all__ = ["Annotation", "Annotator", "vote_over", "speaker_warnings", "transcribe", "with_transcript",
           "assemble_annotation", "load_fusion_for"]


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
            "without a speaker profile" for name, r in runners.items()
            if r.uses_speakers and not r.known_speaker(speaker)]


def transcribe(asr: AsrModel | None, clips: Sequence[Clip], pooled_states: bool = False
               ) -> tuple[list[Transcript | None], list, list[str | None]]:
    """Transcripts of the clips that have none and, with pooled_states, the encoder's pooled states of the
    same pass (for a branch that reads them); a failed transcription is a warning, not an error: the
    speech branches still vote."""
    from ray_ser.core.errors import predict_isolating_failures

    transcripts: list[Transcript | None] = [None] * len(clips)
    states: list = [None] * len(clips)
    failures: list[str | None] = [None] * len(clips)
    todo = [i for i, c in enumerate(clips) if c.transcript is None and c.audio is not None]
    if asr is None or not todo:
        return transcripts, states, failures

    def run(audios):
        if not pooled_states:
            return [(t, None) for t in asr.predict_batch(audios)]
        texts, values = asr.transcribe(audios, pooled_states=True)
        return list(zip(texts, values))

    found, errors = predict_isolating_failures("asr", run, [clips[i].audio for i in todo])
    for i, result, error in zip(todo, found, errors):
        failures[i] = error
        if result is not None:
            transcripts[i], states[i] = result
    return transcripts, states, failures


def with_transcript(clip: Clip, transcript: Transcript | None, states=None) -> Clip:
    """The clip the branches read: the ASR's transcript (or the caller's when ASR did not run), and the
    ASR encoder's pooled states where it kept them."""
    return Clip(clip.audio, transcript.text if transcript is not None else clip.transcript, clip.speaker,
                states if states is not None else clip.encoder_features)


def assemble_annotation(clip: Clip, transcript: Transcript | None, asr_failure: str | None,
                        results: Mapping[str, BranchVoteResult], speaker_notes: Sequence[str],
                        weights: Mapping[str, float], priority: Sequence[str], classes: Sequence[str] = EMOTIONS,
                        fusion: Fusion | None = None) -> Annotation:
    """One clip's annotation from its pieces, wherever they ran (one process, or Serve deployments).

    clip carries the transcript the branches read (with_transcript); warnings come in a fixed order:
    the ASR failure, unknown speakers, then each branch's failure.
    """
    warnings = [w for w in (asr_failure,) if w] + list(speaker_notes)
    warnings += [r.warning for r in results.values() if r.warning]
    decision = vote_over(results, weights, priority, classes, fusion)
    language = transcript.language if transcript is not None else None
    return Annotation(decision.label, decision.confidence, decision.agreement, clip.transcript, language,
                      dict(results), warnings, tuple(classes), decision.probs, decision.vote_label,
                      decision.vote_confidence)


def load_fusion_for(cfg: LabelConfig) -> Fusion | None:
    """The profile's fitted fusion, checked against its branches and classes; None without a fusion."""
    from ray_ser.core.fusion import load_fusion

    cfg.require_fusion()
    if cfg.fusion.method == "none" or not cfg.branches:
        return None
    fusion = load_fusion(cfg.fusion.checkpoint, cfg.storage)
    fusion.check(tuple(cfg.branches), cfg.labels.classes, f"fusion {cfg.fusion.checkpoint}")
    return fusion


class Annotator:
    """ASR (optional), the branch runners and the decision settings of one profile, in one process."""

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
        from ray_ser.core.branch import load_branch_runner, require_matching_classes
        from ray_ser.models.asr import load_asr

        cfg.require_checkpoints()
        require_matching_classes(cfg)
        fusion = load_fusion_for(cfg)
        asr = load_asr(cfg.asr, cfg.resolved_cache_dir()) if cfg.asr.enabled else None
        runners = {name: load_branch_runner(name, cfg, known_speakers_only=True) for name in cfg.branches}
        return cls(asr, runners, cfg.vote_weights(), cfg.vote.priority, cfg.labels.classes, fusion)

    def annotate(self, clips: Sequence[Clip]) -> list[Annotation]:
        pooled = any(r.reads_asr_encoder for r in self.runners.values())
        transcripts, states, asr_failures = transcribe(self.asr, clips, pooled)
        clips = [with_transcript(c, t, s) for c, t, s in zip(clips, transcripts, states)]
        per_branch = {name: runner.run(clips) for name, runner in self.runners.items()}
        return [assemble_annotation(clip, transcripts[i], asr_failures[i],
                                    {name: rows[i] for name, rows in per_branch.items()},
                                    speaker_warnings(self.runners, clip.speaker), self.weights, self.priority,
                                    self.classes, self.fusion)
                for i, clip in enumerate(clips)]

    def close(self) -> None:
        for runner in self.runners.values():
            runner.close()
