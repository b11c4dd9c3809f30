"""The encoder_probe family's settings: a frozen pretrained speech encoder and a small trained head."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ray_ser.config_types import BranchBase, Frozen, TrainBase

__all__ = ["EncoderSpec", "EncoderProbeTrain", "EncoderProbeBranch"]


class EncoderSpec(Frozen):
    """Which frozen encoder produces the clip features, and exactly how (the checkpoint keeps it, so
    labeling computes the features training saw)."""

    backend: Literal["ctranslate2", "transformers"] = Field(
        "ctranslate2", description="ctranslate2: a Whisper model's encoder, the ASR's own weights (its last "
        "layer); transformers: any AutoModel speech encoder (WavLM, HuBERT, wav2vec2) by hub id or path, every "
        "layer pooled and mixed by learned weights.")
    compute_type: str = Field("int8", description="ctranslate2: compute type (taken from the ASR with base_model 'asr').")
    pad_to_30s: bool = Field(False, description="ctranslate2: encode a 30 s window rather than the clip + 2 s "
                             "(taken from the ASR with base_model 'asr').")
    max_seconds: float = Field(30.0, gt=0, description="Clips are cut to this length before encoding.")
    layers: tuple[int, ...] = Field(
        (), description="ctranslate2: which encoder layers to pool (1 = the first block's output); empty: the "
        "last layer as CTranslate2 returns it, which the labeling job can take from the ASR's own pass. Middle "
        "layers carry more of how a thing is said: with Whisper base on EmoDB / RAVDESS (leave-one-speaker-out) "
        "layers 1-3 gave 0.89 / 0.87 macro-F1 against the last layer's 0.66 / 0.83, and 0.50 / 0.47 against "
        "0.36 / 0.28 across the two corpora. They are computed by a torch copy of the encoder (its weights read "
        "from the CTranslate2 file) stopped after the highest layer asked for: a pass of its own.")

    @model_validator(mode="after")
    def _layers_positive(self) -> EncoderSpec:
        if any(layer < 1 for layer in self.layers) or len(set(self.layers)) != len(self.layers):
            raise ValueError(f"encoder.layers must be distinct layer numbers from 1; got {list(self.layers)}")
        return self


class EncoderProbeTrain(TrainBase):
    """How the head is trained. The encoder is frozen: each clip is encoded once, then the head trains fast."""

    base_model: str | None = Field(
        "asr", description="The frozen encoder. ctranslate2: 'asr' (the profile's ASR Whisper: its model, "
        "compute type and window, resolved when training starts, so that the labeling job can share one encoder "
        "pass between transcript and emotion), or a CTranslate2 Whisper as asr.model names one. transformers: a "
        "hub id or directory (tiny-random:wavlm for tests).")
    encoder: EncoderSpec = Field(EncoderSpec(), description="The frozen encoder.")
    pooling: Literal["mean_std", "mean"] = Field(
        "mean_std", description="What the head reads of each layer over a clip: mean_std, the mean and standard "
        "deviation of its states per dimension; mean, the mean alone. With Whisper base blocks 1-3 side by side "
        "and a linear head (bench/probe_heads.py, 3 / 4 speaker folds): the mean alone 0.84 / 0.84 macro-F1 "
        "within EmoDB / RAVDESS against 0.76 / 0.85, and 0.415 / 0.353 against 0.412 / 0.353 across the two.")
    layer_mix: Literal["softmax", "concat"] = Field(
        "softmax", description="How the head reads several layers. softmax: their normalised features summed "
        "with one learned weight per layer; concat: side by side, so the head weighs every layer's every "
        "dimension (layers x wider). With Whisper base blocks 1-3 and a linear head (bench/probe_heads.py), "
        "concat gave 0.76 / 0.85 macro-F1 within EmoDB / RAVDESS where softmax gave 0.73 / 0.84 (mean_std), and "
        "0.84 / 0.84 where softmax gave 0.81 / 0.73 (mean).")
    head: Literal["linear", "mlp"] = Field(
        "mlp", description="linear: logistic regression over the normalised features; mlp: one hidden layer.")
    hidden: int = Field(256, ge=1, description="mlp: width of the hidden layer.")
    dropout: float = Field(0.3, ge=0, lt=1, description="Dropout on the normalised features (and the hidden layer).")
    speaker_normalization: bool = Field(
        True, description="z-normalise each clip's features by its speaker's mean and spread (the labeling job "
        "profiles the speakers first); a clip without a speaker is normalised by the training clips' statistics.")

    @property
    def speaker_normalised(self) -> bool:
        return self.speaker_normalization


class EncoderProbeBranch(BranchBase):
    """Audio in: pooled states of a frozen pretrained encoder (Whisper's by default) into a small head."""

    family: Literal["encoder_probe"] = "encoder_probe"
    train: EncoderProbeTrain | None = Field(None, description="How to train the head; None: not trainable here.")

    @model_validator(mode="after")
    def _encoder_named(self) -> EncoderProbeBranch:
        if self.train is not None and self.train.encoder.backend == "transformers" and \
                self.train.base_model in (None, "asr"):
            raise ValueError("train.base_model 'asr' names the ASR's Whisper, a ctranslate2 encoder; a "
                             "transformers encoder needs a hub id or directory")
        return self
