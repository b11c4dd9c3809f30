"""Silero VAD (shipped inside faster-whisper as ONNX, so it works offline)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ray_ser.models.base import SpeechSegment
from ray_ser.schema import SAMPLE_RATE as _RATE

if TYPE_CHECKING:
    from ray_ser.config import DecodeConfig

__all__ = ["SileroSegmenter"]


class SileroSegmenter:
    """SegmenterModel: speech islands, cut at silences so no segment exceeds decode.max_segment_s."""

    def __init__(self, options: DecodeConfig) -> None:
        from faster_whisper import vad

        self.options = options
        self._vad = vad
        self._vad.get_vad_model()  # load the ONNX session now, not on the first long file

    @classmethod
    def load(cls, options: DecodeConfig) -> SileroSegmenter:
        return cls(options)

    def predict_batch(self, audios: Sequence[np.ndarray]) -> list[list[SpeechSegment]]:
        opts = self._vad.VadOptions(
            max_speech_duration_s=self.options.max_segment_s - 1.0,  # room for the padding
            min_speech_duration_ms=self.options.min_speech_ms,
            min_silence_duration_ms=self.options.min_silence_ms,
            speech_pad_ms=200,
        )
        out = []
        for audio in audios:
            stamps = self._vad.get_speech_timestamps(np.asarray(audio, dtype=np.float32), opts)
            out.append([SpeechSegment(s["start"] / _RATE, s["end"] / _RATE) for s in stamps])
        return out
