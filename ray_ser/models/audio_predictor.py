"""The inference adapter shared by the audio classifiers (speech encoder, prosody network)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np
import torch

__all__ = ["AudioEmotionPredictor"]


class AudioEmotionPredictor:
    """A BranchPredictor (ray_ser/branches/base.py) over a model with ``load``, ``prepare(audios,
    speakers=...)``, ``feature_sums`` and ``settings.speaker_normalised``.

    A speaker-normalised checkpoint has ``speaker_profiles`` (this object): ``predict_batch`` then
    takes each clip's speaker statistics, ``feature_sums`` added up over all of that speaker's
    clips; None leaves a clip as it is. Otherwise ``speaker_profiles`` is None.
    """

    input_kind = "audio"
    model_class: ClassVar[type]

    def __init__(self, model: torch.nn.Module, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.classes = model.classes
        self.speaker_profiles = self if model.settings.speaker_normalised else None

    @classmethod
    def load(cls, checkpoint: str | Path, device: str = "cpu") -> AudioEmotionPredictor:
        return cls(cls.model_class.load(checkpoint), device)

    def feature_sums(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.feature_sums(audios)

    def with_known_speakers(self, statistics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Speaker statistics with the checkpoint's training clips added for the speakers it was trained on."""
        from ray_ser.models.features.speaker_norm import with_known_speakers

        return with_known_speakers(statistics, self.model.known_speakers)

    @torch.inference_mode()
    def predict_batch(self, audios: Sequence[np.ndarray],
                      speakers: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
        if not audios:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        inputs = {k: v.to(self.device) for k, v in self.model.prepare(audios, speakers=speakers).items()}
        return torch.softmax(self.model(**inputs).float(), dim=-1).cpu().numpy()
