"""The speech_encoder family's model: a self-supervised encoder (WavLM, HuBERT, wav2vec2, ...) or a
Whisper encoder loaded with transformers ``AutoModel``, attentive statistics pooling over a learned
mix of its layers, and a linear classifier over the 8 emotions.

Waveform encoders read raw 16 kHz audio; a Whisper encoder reads its own log-mel features
(computed by ``WhisperFeatureExtractor``), padded to the window its config declares.

Fine-tuning modes: ``frozen`` (head only), ``full``, and ``lora`` (peft adapters on the
attention projections + head). A checkpoint is a directory: the encoder as
``save_pretrained`` writes it (LoRA merged), plus ``head.pt``, ``branch.json`` (the training
settings, ray_ser/branches/checkpoint.py) and, when speaker-normalised, ``speakers.npz`` (the
training speakers' statistics).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ray_ser.branches.checkpoint import read_manifest, write_manifest
from ray_ser.branches.speech_encoder.settings import SpeechAugmentConfig, SpeechEncoderTrain
from ray_ser.schema import SAMPLE_RATE
from ray_ser.labels import EMOTIONS
from ray_ser.models.audio_predictor import AudioEmotionPredictor
from ray_ser.models.features.augment import augment_log_mel, augment_waveforms, band_limit
from ray_ser.models.features.speaker_norm import (load_known_speakers, normalize_speakers, save_known_speakers,
                                                  sum_frames)
from ray_ser.models.pooling import AttentiveStatsPooling
from ray_ser.models.weights import resolve_model_name

__all__ = ["LogMelClip", "SpeechEmotionModel", "SpeechEncoderPredictor", "collate_waveforms", "load_encoder"]


@dataclass(frozen=True)
class LogMelClip:
    """One clip's log-mel without most of its padding: training keeps these for every clip."""

    mel: torch.Tensor   # [bins, kept]: the clip's frames and those its analysis window still overlaps
    frames: int         # frames of the clip itself
    pad: torch.Tensor   # [bins]: the value of every frame of pure padding after it

    # An STFT frame overlaps the clip up to n_fft / hop = 400 / 160 frames past its end.
    OVERLAP_FRAMES = 3

    @classmethod
    def crop(cls, padded: torch.Tensor, frames: int) -> LogMelClip:
        kept = min(padded.shape[-1], frames + cls.OVERLAP_FRAMES)
        return cls(padded[:, :kept].clone(), frames, padded[:, -1].clone())

    def padded(self, window: int) -> torch.Tensor:
        out = self.pad[:, None].expand(-1, window).clone()
        out[:, : self.mel.shape[-1]] = self.mel
        return out


class SpeechEmotionModel(nn.Module):
    """Encoder -> layer mix -> attentive statistics pooling -> classifier."""

    def __init__(self, encoder: nn.Module, settings: SpeechEncoderTrain, classes: tuple[str, ...] = EMOTIONS) -> None:
        super().__init__()
        self.settings = settings
        self.classes = tuple(classes)
        self.is_whisper = encoder.config.model_type == "whisper"
        if self.is_whisper and hasattr(encoder, "get_encoder"):
            encoder = encoder.get_encoder()  # the decoder is never used
        self.encoder = encoder
        hidden = encoder.config.hidden_size if not self.is_whisper else encoder.config.d_model
        layers = (encoder.config.encoder_layers if self.is_whisper else encoder.config.num_hidden_layers) + 1
        self._features = None
        if self.is_whisper:
            from transformers import WhisperFeatureExtractor

            window_s = encoder.config.max_source_positions * 2 * 160 / SAMPLE_RATE
            self._features = WhisperFeatureExtractor(feature_size=encoder.config.num_mel_bins,
                                                     chunk_length=int(window_s))
        if settings.speaker_normalization:
            if not self.is_whisper:
                raise ValueError("speaker_normalization works on log-mel input; use a Whisper encoder "
                                 f"(got {encoder.config.model_type})")
            self.register_buffer("reference_profile", torch.zeros(encoder.config.num_mel_bins))
        self.known_speakers: dict[str, np.ndarray] = {}  # the training speakers' statistics
        self.layer_weights = nn.Parameter(torch.zeros(layers))
        self.pooling = AttentiveStatsPooling(hidden, settings.pooling_dim)
        self.classifier = nn.Sequential(nn.Dropout(settings.dropout), nn.Linear(2 * hidden, len(self.classes)))
        self._apply_finetune_mode()

    def _apply_finetune_mode(self) -> None:
        mode = self.settings.finetune
        if mode == "frozen":
            self.encoder.requires_grad_(False)
        elif mode == "lora":
            from peft import LoraConfig, get_peft_model

            self.encoder = get_peft_model(self.encoder, LoraConfig(
                r=self.settings.lora_rank, lora_alpha=2 * self.settings.lora_rank, lora_dropout=0.05,
                target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))
        elif mode == "full":
            # The CNN feature extractor stays frozen, as is standard when fine-tuning SSL encoders.
            feature_encoder = getattr(self.encoder, "feature_extractor", None)
            if feature_encoder is not None:
                feature_encoder.requires_grad_(False)
        else:
            raise ValueError(f"unknown finetune mode {mode!r}; expected frozen, full or lora")

    def head_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    def _log_mel(self, audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Whisper log-mel of the band-limited clips, padded to the window, and each clip's frame count."""
        extractor = self._features
        limit = self.settings.max_frequency_hz
        clips = [band_limit(np.asarray(a, dtype=np.float32)[: extractor.n_samples], limit) for a in audios]
        mel = torch.from_numpy(extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="np",
                                         padding="max_length")["input_features"])
        return mel, torch.tensor([max(1, c.size // extractor.hop_length) for c in clips])

    def feature_sums(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """Per clip, its log-mel summed over its frames, then the frame count: speaker statistics add these up."""
        if not self.is_whisper:
            raise ValueError("feature sums are defined on log-mel input (Whisper encoders)")
        mel, frames = self._log_mel(audios)
        return sum_frames(mel, frames)

    def set_reference_profile(self, profile: np.ndarray) -> None:
        """The spectrum every speaker is moved onto: the training speakers' mean profile."""
        self.reference_profile.copy_(torch.as_tensor(profile, dtype=torch.float32))

    def clip_inputs(self, audios: Sequence[np.ndarray],
                    speakers: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray | LogMelClip]:
        """The deterministic part of the encoder's input, per clip: what training computes once.

        Band-limited waveforms for a waveform encoder; for a Whisper encoder, log-mel shifted by
        each clip's speaker statistics (speaker_normalization; a clip without them is not shifted).
        """
        if not self.is_whisper:
            return [band_limit(a, self.settings.max_frequency_hz) for a in audios]
        mel, frames = self._log_mel(audios)
        if self.settings.speaker_normalization:
            mel = normalize_speakers(mel, frames, self.reference_profile,
                                     speakers if speakers is not None else [None] * len(audios))
        return [LogMelClip.crop(m, int(n)) for m, n in zip(mel, frames)]

    def collate(self, clips: Sequence[np.ndarray | LogMelClip], augment: SpeechAugmentConfig | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """A batch of clip_inputs as the encoder's inputs plus a mask; augment (training only) perturbs it."""
        augmenting = augment is not None and augment.active
        if not self.is_whisper:
            waves, mask = collate_waveforms(clips, self.settings.max_seconds, self.settings.normalize_audio)
            return {"inputs": augment_waveforms(waves, mask, augment, generator) if augmenting else waves,
                    "mask": mask}
        mel = torch.stack([clip.padded(self._features.nb_max_frames) for clip in clips])
        mel_frames = torch.tensor([clip.frames for clip in clips])
        if augmenting:
            mel = augment_log_mel(mel, mel_frames, augment, generator)
        frames = self._features.nb_max_frames // 2  # the encoder's second conv halves the frame rate
        lengths = torch.clamp(mel_frames // 2, min=1)
        mask = (torch.arange(frames)[None, :] < lengths[:, None]).long()
        return {"inputs": mel, "mask": mask}

    def prepare(self, audios: Sequence[np.ndarray], augment: SpeechAugmentConfig | None = None,
                generator: torch.Generator | None = None,
                speakers: Sequence[np.ndarray | None] | None = None) -> dict[str, torch.Tensor]:
        """The encoder's inputs for a batch of 16 kHz clips: waveforms or log-mel, plus a mask.

        speakers (speaker_normalization only) holds each clip's speaker statistics; a clip without them
        is not shifted. augment (training only) perturbs the batch; see ray_ser.models.features.augment.
        """
        return self.collate(self.clip_inputs(audios, speakers), augment, generator)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.is_whisper:
            out = self.encoder(inputs, output_hidden_states=True)
        else:
            out = self.encoder(inputs, attention_mask=mask, output_hidden_states=True)
        stacked = torch.stack(out.hidden_states, dim=0)
        mix = torch.softmax(self.layer_weights, dim=0).view(-1, 1, 1, 1)
        frames = (mix * stacked).sum(dim=0)
        if self.is_whisper:
            frame_mask = mask.bool()
        else:
            base = self.encoder.get_base_model() if hasattr(self.encoder, "get_base_model") else self.encoder
            frame_mask = base._get_feature_vector_attention_mask(frames.shape[1], mask).bool()
        return self.classifier(self.pooling(frames, frame_mask))

    # ---- loading and saving: the same path for production encoders and tiny test ones ----

    @classmethod
    def from_settings(cls, settings: SpeechEncoderTrain, cache_dir: str | Path | None = None,
                      classes: tuple[str, ...] = EMOTIONS) -> SpeechEmotionModel:
        """A new model over settings.base_model (a hub id, a directory or tiny-random:<family>, built in
        cache_dir: the profile's, which training passes; None is $RAY_SER_CACHE or ~/.cache/ray_ser)."""
        return cls(load_encoder(settings.base_model, cache_dir), settings, classes)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.settings.finetune == "lora":
            from ray_ser.models.lora import merged_state_dict

            self.encoder.get_base_model().save_pretrained(directory / "encoder",
                                                          state_dict=merged_state_dict(self.encoder))
        else:
            self.encoder.save_pretrained(directory / "encoder")
        torch.save(self.head_state(), directory / "head.pt")
        write_manifest(directory, "speech_encoder", self.settings, self.classes)
        save_known_speakers(directory, self.known_speakers)

    @classmethod
    def load(cls, directory: str | Path) -> SpeechEmotionModel:
        directory = Path(directory)
        manifest = read_manifest(directory, "speech_encoder")
        settings = manifest.parse(SpeechEncoderTrain)
        # The trained encoder is under encoder/; frozen, since a loaded branch only predicts.
        model = cls(load_encoder(str(directory / "encoder")), settings.model_copy(
            update={"finetune": "frozen"}), manifest.classes)
        # The encoder came from encoder/ already; head.pt must supply every other weight.
        result = model.load_state_dict(torch.load(directory / "head.pt", map_location="cpu"), strict=False)
        missing_head = [k for k in result.missing_keys if not k.startswith("encoder.")]
        if missing_head or result.unexpected_keys:
            raise ValueError(f"{directory}/head.pt does not match the branch: missing {missing_head}, "
                             f"unexpected {result.unexpected_keys}")
        model.known_speakers = load_known_speakers(directory)
        return model.eval()


def load_encoder(name: str, cache_dir: str | Path | None = None) -> nn.Module:
    """AutoModel for a hub id or directory; a saved Whisper *encoder* has no AutoModel class.

    ``tiny-random:<family>`` names a small random-weight encoder (demo, tests): it is built
    once under cache_dir and then loaded from there like any checkpoint.
    """
    from transformers import AutoConfig, AutoModel

    path = resolve_model_name(name, cache_dir)
    config = AutoConfig.from_pretrained(path)
    if config.model_type == "whisper" and "WhisperEncoder" in (config.architectures or []):
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder.from_pretrained(path)
    return AutoModel.from_pretrained(path)


def collate_waveforms(audios: Sequence[np.ndarray], max_seconds: float = 8.0,
                      normalize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms (zero-mean unit-variance when normalize), right-padded, with an attention mask."""
    limit = int(max_seconds * 16_000)
    clips = [np.asarray(a, dtype=np.float32)[:limit] for a in audios]
    length = max(max(c.size for c in clips), 400)
    batch = torch.zeros(len(clips), length)
    mask = torch.zeros(len(clips), length, dtype=torch.long)
    for i, clip in enumerate(clips):
        normed = (clip - clip.mean()) / (clip.std() + 1e-7) if normalize else clip
        batch[i, : clip.size] = torch.from_numpy(np.ascontiguousarray(normed))
        mask[i, : clip.size] = 1
    return batch, mask


class SpeechEncoderPredictor(AudioEmotionPredictor):
    """The speech-encoder branch's BranchPredictor (ray_ser/models/audio_predictor.py)."""

    model_class = SpeechEmotionModel
