"""The speech_encoder family's settings: a pretrained (or random) audio encoder with a pooling head."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ray_ser.config_types import BranchBase, Frozen, TrainBase

__all__ = ["SpeechAugmentConfig", "SpeechEncoderTrain", "SpeechEncoderBranch"]


class SpeechAugmentConfig(Frozen):
    """Training-time augmentation of a batch (ray_ser/models/features/augment.py says why)."""

    gain_db: float = Field(0.0, ge=0, description="Random gain per clip, uniform in +-gain_db dB.")
    freq_masks: int = Field(0, ge=0, description="SpecAugment frequency masks per clip (log-mel encoders).")
    freq_mask_bins: int = Field(12, ge=1, description="Widest frequency mask, in mel bins.")
    time_masks: int = Field(0, ge=0, description="SpecAugment time masks per clip.")
    time_mask_frames: int = Field(30, ge=1, description="Longest time mask, in 10 ms frames.")

    @property
    def active(self) -> bool:
        return bool(self.gain_db or self.freq_masks or self.time_masks)


class SpeechEncoderTrain(TrainBase):
    """How a speech encoder branch is trained; kept in its checkpoint, which inference reads back."""

    finetune: Literal["frozen", "full", "lora"] = Field(
        "lora", description="frozen: the head alone; full: everything but a CNN front end; lora: adapters on "
        "the attention projections, plus the head.")
    lora_rank: int = Field(8, ge=1, description="LoRA rank where finetune is a LoRA mode (alpha = 2 * rank).")
    max_seconds: float = Field(8.0, gt=0, description="Waveform encoders: clips are cut to this length (a "
                               "Whisper encoder reads its own window).")
    normalize_audio: bool = Field(
        True, description="Waveform encoders: per-utterance normalisation (keep on for pretrained SSL encoders; "
        "off lets a from-scratch model use loudness).")
    max_frequency_hz: float | None = Field(
        None, gt=0, description="Band limit in Hz, applied in training and inference alike; None keeps the "
        "full band. A low limit hides voice quality from a model that would otherwise learn each training voice.")
    speaker_normalization: bool = Field(
        False, description="Whisper log-mel encoders: move each speaker's mean spectrum onto the training "
        "speakers' mean, in training and (kept in the checkpoint) in labeling, where the job profiles the "
        "speakers first. A clip without a speaker is not shifted.")
    augment: SpeechAugmentConfig = Field(SpeechAugmentConfig(), description="Training-time augmentation.")
    pooling_dim: int = Field(128, ge=1, description="Hidden size of the attentive statistics pooling.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout before the classifier.")

    @property
    def speaker_normalised(self) -> bool:
        return self.speaker_normalization


class SpeechEncoderBranch(BranchBase):
    """Audio in: WavLM, HuBERT, wav2vec2 or a Whisper encoder via AutoModel, attentive statistics pooling."""

    family: Literal["speech_encoder"] = "speech_encoder"
    train: SpeechEncoderTrain | None = Field(None, description="How to fine-tune it; None: not trainable here.")

    @model_validator(mode="after")
    def _needs_base_model(self) -> SpeechEncoderBranch:
        if self.train is not None and self.train.base_model is None:
            raise ValueError("train.base_model is required for speech_encoder branches")
        return self
