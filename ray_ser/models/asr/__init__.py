"""Speech recognition and segmentation: Whisper on CTranslate2, whisperx, Silero VAD.

``ASR_ENGINES`` maps ``asr.engine`` to a loader ``(AsrConfig, cache_dir) -> AsrModel``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ray_ser.registry import Registry

if TYPE_CHECKING:
    from ray_ser.config import AsrConfig
    from ray_ser.models.base import AsrModel

__all__ = ["ASR_ENGINES", "load_asr"]


def _faster_whisper(asr: AsrConfig, cache_dir: Path) -> AsrModel:
    from ray_ser.models.asr.whisper_ct2 import WhisperCT2

    return WhisperCT2.load(asr, cache_dir)


def _whisperx(asr: AsrConfig, cache_dir: Path) -> AsrModel:
    from ray_ser.models.asr.whisperx import WhisperXAsr

    return WhisperXAsr.load(asr, cache_dir)


ASR_ENGINES: Registry[Callable[[AsrConfig, Path], AsrModel]] = Registry("ASR engine")
ASR_ENGINES.register("faster-whisper", _faster_whisper)
ASR_ENGINES.register("whisperx", _whisperx)


def load_asr(asr: AsrConfig, cache_dir: str | Path) -> AsrModel:
    """The configured ASR engine, its weights resolved in cache_dir."""
    return ASR_ENGINES.get(asr.engine)(asr, Path(cache_dir))
