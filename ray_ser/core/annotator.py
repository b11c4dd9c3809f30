"""A whole annotation for decoded clips: ASR, every branch, the vote. No Ray here.

The Serve endpoint runs this (in one process, or split over deployments that each run one
piece of it); the labeling job runs the same ``BranchRunner`` per branch and the same vote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

from ray_ser.core.branch import BranchRunner, BranchVoteResult, Clip
from ray_ser.labels import EMOTIONS
from ray_ser.vote import BranchVote, VoteResult, majority_vote

if TYPE_CHECKING:
    from ray_ser.config import LabelConfig
    from ray_ser.models.base import AsrModel, Transcript

__all__ = ["Annotation", "Annotator", "vote_over", "speaker_warnings", "transcribe", "with_transcript",
           "assemble_annotation"]


@dataclass(frozen=True)
class Annotation:
    label: str | None
    confidence: float | None
    agreement: float | None
    transcript: str | None
    language: str | None
    branches: dict[str, BranchVoteResult]
    warnings: list[str] = field(default_factory=list)

    def branch_body(self) -> dict[str, dict]:
        """Each voting branch's label and distribution, keyed by emotion."""
        return {name: {"label": r.label, "probs": dict(zip(EMOTIONS, r.probs))}
                for name, r in self.branches.items() if r.label is not None}


def vote_over(results: Mapping[str, BranchVoteResult], weights: Mapping[str, float],
              priority: Sequence[str]) -> VoteResult:
    """The vote over branches' results for one clip; an abstaining branch does not vote."""
    votes = {name: BranchVote(r.label, r.probs) if r.label is not None else None for name, r in results.items()}
    return majority_vote(votes, weights, priority)


def speaker_warnings(runners: Mapping[str, BranchRunner], speaker: str | None) -> list[str]:
    """A speaker id a speaker-normalised branch does not know: its clip is labelled unshifted."""
    if speaker is None:
        return []
    return [f"{name}: speaker {speaker!r} is not one the branch was trained on; the clip is labelled "
            "without a speaker profile" for name, r in runners.items()
            if r.uses_speakers and not r.known_speaker(speaker)]


def transcribe(asr: AsrModel | None, clips: Sequence[Clip]) -> tuple[list[Transcript | None], list[str | None]]:
    """Transcripts of the clips that have none; a failed transcription is a warning, not an error:
    the speech branches still vote."""
    from ray_ser.core.errors import predict_isolating_failures

    transcripts: list[Transcript | None] = [None] * len(clips)
    failures: list[str | None] = [None] * len(clips)
    todo = [i for i, c in enumerate(clips) if c.transcript is None and c.audio is not None]
    if asr is None or not todo:
        return transcripts, failures
    found, errors = predict_isolating_failures("asr", asr.predict_batch, [clips[i].audio for i in todo])
    for i, transcript, error in zip(todo, found, errors):
        transcripts[i], failures[i] = transcript, error
    return transcripts, failures


def with_transcript(clip: Clip, transcript: Transcript | None) -> Clip:
    """The clip the branches read: the ASR's transcript, or the caller's when ASR did not run."""
    return Clip(clip.audio, transcript.text if transcript is not None else clip.transcript, clip.speaker)


def assemble_annotation(clip: Clip, transcript: Transcript | None, asr_failure: str | None,
                        results: Mapping[str, BranchVoteResult], speaker_notes: Sequence[str],
                        weights: Mapping[str, float], priority: Sequence[str]) -> Annotation:
    """One clip's annotation from its pieces, wherever they ran (one process, or Serve deployments).

    clip carries the transcript the branches read (with_transcript); warnings come in a fixed order:
    the ASR failure, unknown speakers, then each branch's failure.
    """
    warnings = [w for w in (asr_failure,) if w] + list(speaker_notes)
    warnings += [r.warning for r in results.values() if r.warning]
    vote = vote_over(results, weights, priority)
    language = transcript.language if transcript is not None else None
    return Annotation(vote.label, vote.confidence, vote.agreement, clip.transcript, language, dict(results),
                      warnings)


class Annotator:
    """ASR (optional), the branch runners and the vote settings of one profile."""

    def __init__(self, asr: AsrModel | None, runners: dict[str, BranchRunner], weights: Mapping[str, float],
                 priority: Sequence[str]) -> None:
        self.asr = asr
        self.runners = runners
        self.weights = dict(weights)
        self.priority = tuple(priority)

    @classmethod
    def load(cls, cfg: LabelConfig) -> Annotator:
        """Every model of the profile in this process. A speaker-normalised branch profiles a
        clip's speaker from the checkpoint's training speakers (one clip makes no profile)."""
        from ray_ser.core.branch import load_branch_runner
        from ray_ser.models.asr import load_asr

        cfg.require_checkpoints()
        asr = load_asr(cfg.asr, cfg.resolved_cache_dir()) if cfg.asr.enabled else None
        runners = {name: load_branch_runner(name, cfg, known_speakers_only=True) for name in cfg.branches}
        return cls(asr, runners, cfg.vote_weights(), cfg.vote.priority)

    def transcribe(self, clips: Sequence[Clip]) -> tuple[list[Transcript | None], list[str | None]]:
        return transcribe(self.asr, clips)

    def annotate(self, clips: Sequence[Clip]) -> list[Annotation]:
        transcripts, asr_failures = self.transcribe(clips)
        clips = [with_transcript(c, t) for c, t in zip(clips, transcripts)]
        per_branch = {name: runner.run(clips) for name, runner in self.runners.items()}
        return [assemble_annotation(clip, transcripts[i], asr_failures[i],
                                    {name: rows[i] for name, rows in per_branch.items()},
                                    speaker_warnings(self.runners, clip.speaker), self.weights, self.priority)
                for i, clip in enumerate(clips)]

    def close(self) -> None:
        for runner in self.runners.values():
            runner.close()

