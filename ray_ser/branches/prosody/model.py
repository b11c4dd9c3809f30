"""The prosody family's model: a small network over a clip's acoustic functionals, speaker-normalised.

The classic SER recipe next to the SSL encoders (eGeMAPS + a classifier): utterance-level
statistics of pitch, energy, rate and spectrum (ray_ser/models/features/functionals.py) into a two-layer
MLP. It is cheap, it sees the whole clip at once, and it errs on other clips than a
frame-level encoder does, which is what a vote needs.

With speaker_normalization each clip's functionals are moved by (reference - its speaker's
mean functionals), as the speech encoder does with log-mel (ray_ser/models/features/speaker_norm.py),
and the network sees both the moved and the raw vector: the moved one says how the clip
departs from its speaker's usual voice, which carries over to unseen speakers; the raw one
keeps absolute levels. On the demo corpus (this network outside Ray, three seeds) moved alone
gave 0.75-0.78 / 0.88-0.91 macro-F1 on unseen / seen speakers, moved + raw 0.77-0.78 / 0.93.

A checkpoint is a directory: ``model.pt`` (weights, reference, standardisation),
``branch.json`` (ray_ser/branches/checkpoint.py) and, when normalised, ``speakers.npz`` (the
training speakers' statistics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ray_ser.branches.checkpoint import read_manifest, write_manifest
from ray_ser.branches.prosody.settings import ProsodyTrain
from ray_ser.labels import EMOTIONS
from ray_ser.models.audio_predictor import AudioEmotionPredictor
from ray_ser.models.features.functionals import FUNCTIONAL_DIMS, prosody_features

EGEMAPS_DIMS = 88  # openSMILE eGeMAPSv02 functionals
from ray_ser.models.features.speaker_norm import load_known_speakers, save_known_speakers, speaker_offsets

__all__ = ["ProsodyEmotionModel", "ProsodyPredictor"]


class ProsodyEmotionModel(nn.Module):
    """functionals (moved by the speaker's offset, plus raw) -> standardise -> MLP -> 8 logits."""

    def __init__(self, settings: ProsodyTrain, classes: tuple[str, ...] = EMOTIONS) -> None:
        super().__init__()
        self.settings = settings
        self.classes = tuple(classes)
        self.dims = EGEMAPS_DIMS if settings.features == "egemaps" else FUNCTIONAL_DIMS
        inputs = 2 * self.dims if settings.speaker_normalization else self.dims
        self.register_buffer("reference_profile", torch.zeros(self.dims))
        self.known_speakers: dict[str, np.ndarray] = {}  # the training speakers' statistics
        # Set from the training corpus before the first step (fit_standardization).
        self.register_buffer("input_mean", torch.zeros(inputs))
        self.register_buffer("input_scale", torch.ones(inputs))
        self.network = nn.Sequential(
            nn.Linear(inputs, settings.hidden), nn.GELU(), nn.Dropout(settings.dropout),
            nn.Linear(settings.hidden, settings.hidden), nn.GELU(), nn.Dropout(settings.dropout),
            nn.Linear(settings.hidden, len(self.classes)))

    def functionals(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """[n, dims] float32: the configured functionals of each clip."""
        if not audios:
            return np.zeros((0, self.dims), dtype=np.float32)
        if self.settings.features == "egemaps":
            from ray_ser.evaluate.baselines import egemaps_functionals

            return np.nan_to_num(egemaps_functionals(audios)).astype(np.float32)
        return np.stack([prosody_features(a) for a in audios]).astype(np.float32)

    def sums_of(self, values: np.ndarray) -> np.ndarray:
        """Speaker statistics rows of clips' functionals: the values and a count of 1, added up per speaker."""
        values = np.asarray(values, dtype=np.float64).reshape(-1, self.dims)
        return np.concatenate([values, np.ones((len(values), 1))], axis=1)

    def feature_sums(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        return self.sums_of(self.functionals(audios))

    def set_reference_profile(self, profile: np.ndarray) -> None:
        """The functionals every speaker is moved onto: the training speakers' mean profile."""
        self.reference_profile.copy_(torch.as_tensor(profile, dtype=torch.float32))

    def inputs_from_functionals(self, values: np.ndarray,
                                speakers: Sequence[np.ndarray | None] | None = None) -> list[torch.Tensor]:
        """Each clip's network input from its functionals and its speaker's statistics (or None)."""
        raw = torch.as_tensor(np.asarray(values, dtype=np.float32)).reshape(-1, self.dims)
        if not self.settings.speaker_normalization:
            return list(raw)
        offsets = speaker_offsets(self.reference_profile, speakers if speakers is not None else [None] * len(raw))
        return list(torch.cat([raw + offsets, raw], dim=1))

    def clip_inputs(self, audios: Sequence[np.ndarray],
                    speakers: Sequence[np.ndarray | None] | None = None) -> list[torch.Tensor]:
        """What training computes once per clip; a clip without speaker statistics is not moved."""
        return self.inputs_from_functionals(self.functionals(audios), speakers)

    def fit_standardization(self, clips: Sequence[torch.Tensor]) -> None:
        """Zero mean, unit variance per input over the training clips, kept in the checkpoint."""
        stacked = torch.stack(list(clips))
        self.input_mean.copy_(stacked.mean(dim=0))
        self.input_scale.copy_(stacked.std(dim=0).clamp_min(1e-6))

    def collate(self, clips: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"features": torch.stack(list(clips))}

    def prepare(self, audios: Sequence[np.ndarray],
                speakers: Sequence[np.ndarray | None] | None = None) -> dict[str, torch.Tensor]:
        return self.collate(self.clip_inputs(audios, speakers))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.network((features - self.input_mean) / self.input_scale)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), directory / "model.pt")
        write_manifest(directory, "prosody", self.settings, self.classes)
        save_known_speakers(directory, self.known_speakers)

    @classmethod
    def load(cls, directory: str | Path) -> ProsodyEmotionModel:
        directory = Path(directory)
        manifest = read_manifest(directory, "prosody")
        model = cls(manifest.parse(ProsodyTrain), manifest.classes)
        model.load_state_dict(torch.load(directory / "model.pt", map_location="cpu"))
        model.known_speakers = load_known_speakers(directory)
        return model.eval()


class ProsodyPredictor(AudioEmotionPredictor):
    """The prosody branch's BranchPredictor (ray_ser/models/audio_predictor.py)."""

    model_class = ProsodyEmotionModel
