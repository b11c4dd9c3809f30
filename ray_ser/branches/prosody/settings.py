"""The prosody family's settings: a small network over a clip's acoustic functionals."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ray_ser.config_types import BranchBase, TrainBase

__all__ = ["ProsodyTrain", "ProsodyBranch"]


class ProsodyTrain(TrainBase):
    """How a prosody branch is trained: from scratch, in full (there is no pretrained model to tune)."""

    speaker_normalization: bool = Field(
        False, description="Move each speaker's mean functionals onto the training speakers' mean; the network "
        "then reads the moved and the raw vector. The labeling job profiles the speakers first.")
    features: Literal["functionals", "egemaps"] = Field(
        "functionals", description="functionals: the project's pitch, energy, rate and log-mel statistics "
        "(ray_ser/models/features/functionals.py, 0.1 s a clip). egemaps: openSMILE's eGeMAPSv02 functionals, "
        "the field's standard 88 (needs the opensmile package): they carry over between corpora far better "
        "(EmoDB -> RAVDESS 0.36 macro-F1 against 0.22, leave-one-speaker-out within a corpus 0.73 / 0.61 "
        "against 0.78 / 0.61).")
    hidden: int = Field(128, ge=1, description="Width of the two hidden layers.")
    dropout: float = Field(0.3, ge=0, lt=1, description="Dropout after each hidden layer.")

    @property
    def speaker_normalised(self) -> bool:
        return self.speaker_normalization


class ProsodyBranch(BranchBase):
    """Audio in: pitch, energy, rate and spectrum statistics of the whole clip into a two-layer MLP."""

    family: Literal["prosody"] = "prosody"
    train: ProsodyTrain | None = Field(None, description="How to train it; None: not trainable here.")
