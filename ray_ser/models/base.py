"""The small Protocols every model family implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

__all__ = ["Transcript", "AsrModel", "SpeechSegment", "SegmenterModel", "EncoderFeatures"]


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    avg_logprob: float
    no_speech_prob: float


@runtime_checkable
class AsrModel(Protocol):
    """Speech recognition over a batch of 16 kHz mono clips of at most 30 s."""

    def predict_batch(self, audios: Sequence[np.ndarray],
                      languages: Sequence[str | None] | None = None) -> list[Transcript]:
        """languages: each clip's language code where known (None: the configured one, or detected)."""
        ...


@dataclass(frozen=True)
class SpeechSegment:
    start: float
    end: float


@runtime_checkable
class SegmenterModel(Protocol):
    """Splits a long 16 kHz recording into speech segments of bounded length."""

    def predict_batch(self, audios: Sequence[np.ndarray]) -> list[list[SpeechSegment]]: ...


@dataclass(frozen=True)
class EncoderFeatures:
    """A clip's pooled encoder states that another model's pass already computed (the ASR's Whisper
    encoder), handed to a branch that reads the same encoder instead of its waveform."""

    values: np.ndarray
