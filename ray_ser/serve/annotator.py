"""One clip in, one labelled row out: ASR, every branch, the vote. No Ray here.

The Serve deployment wraps this; the labeling job runs the same adapters as Ray Data
stages. Client mistakes raise ``BadRequest`` with the HTTP status and a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray_ser.labels import EMOTIONS

if TYPE_CHECKING:
    from ray_ser.config import LabelConfig

__all__ = ["BadRequest", "ClipAnnotator"]


@dataclass
class BadRequest(Exception):
    status: int
    reason: str


class ClipAnnotator:
    def __init__(self, cfg: LabelConfig, asr, predictors: dict[str, Any]) -> None:
        self.cfg = cfg
        self.asr = asr
        self.predictors = predictors
        # branch -> speaker -> statistics of the speakers each normalised checkpoint was trained on
        self.known_speakers = {name: p.with_known_speakers({}) for name, p in predictors.items()
                               if getattr(p, "uses_speaker_statistics", False)}

    @classmethod
    def load(cls, cfg: LabelConfig) -> ClipAnnotator:
        from ray_ser.registry import ASR_ENGINES, load_branch_predictor

        cfg.require_checkpoints()
        cache = cfg.resolved_cache_dir()
        asr = ASR_ENGINES.get(cfg.asr.engine)(cfg.asr, Path(cache)) if cfg.asr.enabled else None
        predictors = {name: load_branch_predictor(b, cfg.storage, str(cache)) for name, b in cfg.branches.items()}
        return cls(cfg, asr, predictors)

    def _decode(self, payload: bytes):
        from ray_ser.io.audio import TARGET_SAMPLE_RATE, AudioDecodeError, decode_audio

        if not payload:
            raise BadRequest(400, "empty body: send an audio file (wav, flac, mp3, ogg)")
        try:
            audio = decode_audio(payload)
        except AudioDecodeError as exc:
            raise BadRequest(400, f"audio could not be decoded: {exc}") from None
        seconds = audio.size / TARGET_SAMPLE_RATE
        if seconds > self.cfg.serve.max_clip_seconds:
            raise BadRequest(413, f"clip is {seconds:.1f} s; this endpoint takes at most "
                                  f"{self.cfg.serve.max_clip_seconds:.0f} s (use the labeling job for long audio)")
        if seconds < 0.1:
            raise BadRequest(400, f"clip is {seconds * 1000:.0f} ms; at least 100 ms of audio is needed")
        return audio, seconds

    def _speaker_statistics(self, name: str, speaker: str | None, warnings: list[str]):
        """A speaker-normalised branch's statistics for one clip: its speaker's training clips when the
        checkpoint was trained on that speaker; None (unshifted) otherwise."""
        if speaker is None or name not in self.known_speakers:
            return None
        statistics = self.known_speakers[name].get(speaker)
        if statistics is None:
            warnings.append(f"{name}: speaker {speaker!r} is not one the branch was trained on; "
                            "the clip is labelled without a speaker profile")
        return statistics

    def annotate(self, payload: bytes, transcript: str | None = None, speaker: str | None = None) -> dict:
        """The response body: label, confidence, agreement, transcript and each branch's vote.

        speaker: an id from the training manifest; speaker-normalised branches then move the clip
        by that speaker's profile from its training clips (one clip makes no profile of its own).
        """
        from ray_ser.stages.base import error_reason
        from ray_ser.vote import BranchVote, majority_vote

        audio, seconds = self._decode(payload)
        warnings = []
        if transcript is None and self.asr is not None:
            try:
                transcript = self.asr.predict_batch([audio])[0].text
            except Exception as exc:  # speech branches still vote
                warnings.append(error_reason("asr", exc))
        votes, branches = {}, {}
        for name, predictor in self.predictors.items():
            item = {"audio": audio, "text": transcript, "audio_text": (audio, transcript)}[predictor.input_kind]
            if item is None or (isinstance(item, str) and not item.strip()):
                votes[name] = None
                continue
            try:
                statistics = self._speaker_statistics(name, speaker, warnings)
                probs = (predictor.predict_batch([item], [statistics]) if statistics is not None
                         else predictor.predict_batch([item]))[0]
            except Exception as exc:
                warnings.append(error_reason(name, exc))
                votes[name] = None
                continue
            label = EMOTIONS[int(probs.argmax())]
            votes[name] = BranchVote(label, [float(p) for p in probs])
            branches[name] = {"label": label, "probs": dict(zip(EMOTIONS, map(float, probs)))}
        result = majority_vote(votes, self.cfg.vote_weights(), self.cfg.vote.priority)
        return {"label": result.label, "confidence": result.confidence, "agreement": result.agreement,
                "transcript": transcript, "duration": seconds, "branches": branches, "warnings": warnings}
