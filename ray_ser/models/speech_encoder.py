"""Speech-encoder branch: a self-supervised encoder (WavLM, HuBERT, wav2vec2, ...) or a Whisper
encoder loaded with transformers ``AutoModel``, attentive statistics pooling over a learned mix of
its layers, and a linear classifier over the 8 emotions.

Waveform encoders read raw 16 kHz audio; a Whisper encoder reads its own log-mel features
(computed by ``WhisperFeatureExtractor``), padded to the window its config declares.

Fine-tuning modes: ``frozen`` (head only), ``full``, and ``lora`` (peft adapters on the
attention projections + head). A checkpoint is a directory: the encoder as
``save_pretrained`` writes it (LoRA merged), plus ``head.pt``, ``branch.json`` and, when
speaker-normalised, ``speakers.npz`` (the training speakers' statistics).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from ray_ser.io.audio import TARGET_SAMPLE_RATE
from ray_ser.labels import NUM_CLASSES
from ray_ser.models.audio_predictor import AudioEmotionPredictor
from ray_ser.models.augment import SpeechAugmentOptions, augment_log_mel, augment_waveforms, band_limit
from ray_ser.models.speaker_norm import load_known_speakers, normalize_speakers, save_known_speakers, sum_frames
from ray_ser.models.weights import TINY_PREFIX, build_once

__all__ = ["SpeechEncoderOptions", "LogMelClip", "AttentiveStatsPooling", "SpeechEmotionModel",
           "SpeechEncoderPredictor", "collate_waveforms", "tiny_encoder_checkpoint"]

FineTune = Literal["frozen", "full", "lora"]


@dataclass(frozen=True)
class SpeechEncoderOptions:
    encoder: str                      # local dir or hub id of the pretrained encoder
    finetune: FineTune = "frozen"
    lora_rank: int = 8
    pooling_dim: int = 128
    dropout: float = 0.1
    # Per-utterance waveform normalisation, as SSL encoders are pretrained; off keeps loudness,
    # which a from-scratch model can use (it is a strong cue in acted speech).
    normalize: bool = True
    max_seconds: float = 8.0
    # Band limit (Hz) applied to every clip in training and inference; None keeps the full band.
    max_frequency_hz: float | None = None
    # Log-mel encoders: move each speaker's mean spectrum onto the training speakers' mean
    # (ray_ser/models/speaker_norm.py says why). Needs each clip's speaker statistics.
    speaker_normalization: bool = False


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


class AttentiveStatsPooling(nn.Module):
    """Attention-weighted mean and standard deviation over time (Okabe et al., 2018)."""

    def __init__(self, dim: int, attention_dim: int) -> None:
        super().__init__()
        self.attention = nn.Sequential(nn.Linear(dim, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1))

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.attention(frames).squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1).unsqueeze(-1)
        mean = (weights * frames).sum(dim=1)
        var = (weights * (frames - mean.unsqueeze(1)) ** 2).sum(dim=1)
        return torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=-1)


class SpeechEmotionModel(nn.Module):
    """Encoder -> layer mix -> attentive statistics pooling -> classifier."""

    def __init__(self, encoder: nn.Module, options: SpeechEncoderOptions) -> None:
        super().__init__()
        self.options = options
        self.is_whisper = encoder.config.model_type == "whisper"
        if self.is_whisper and hasattr(encoder, "get_encoder"):
            encoder = encoder.get_encoder()  # the decoder is never used
        self.encoder = encoder
        hidden = encoder.config.hidden_size if not self.is_whisper else encoder.config.d_model
        layers = (encoder.config.encoder_layers if self.is_whisper else encoder.config.num_hidden_layers) + 1
        self._features = None
        if self.is_whisper:
            from transformers import WhisperFeatureExtractor

            window_s = encoder.config.max_source_positions * 2 * 160 / TARGET_SAMPLE_RATE
            self._features = WhisperFeatureExtractor(feature_size=encoder.config.num_mel_bins,
                                                     chunk_length=int(window_s))
        if options.speaker_normalization:
            if not self.is_whisper:
                raise ValueError("speaker_normalization works on log-mel input; use a Whisper encoder "
                                 f"(got {encoder.config.model_type})")
            self.register_buffer("reference_profile", torch.zeros(encoder.config.num_mel_bins))
        self.known_speakers: dict[str, np.ndarray] = {}  # the training speakers' statistics
        self.layer_weights = nn.Parameter(torch.zeros(layers))
        self.pooling = AttentiveStatsPooling(hidden, options.pooling_dim)
        self.classifier = nn.Sequential(nn.Dropout(options.dropout), nn.Linear(2 * hidden, NUM_CLASSES))
        self._apply_finetune_mode()

    def _apply_finetune_mode(self) -> None:
        mode = self.options.finetune
        if mode == "frozen":
            self.encoder.requires_grad_(False)
        elif mode == "lora":
            from peft import LoraConfig, get_peft_model

            self.encoder = get_peft_model(self.encoder, LoraConfig(
                r=self.options.lora_rank, lora_alpha=2 * self.options.lora_rank, lora_dropout=0.05,
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
        limit = self.options.max_frequency_hz
        clips = [band_limit(np.asarray(a, dtype=np.float32)[: extractor.n_samples], limit) for a in audios]
        mel = torch.from_numpy(extractor(clips, sampling_rate=TARGET_SAMPLE_RATE, return_tensors="np",
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
            return [band_limit(a, self.options.max_frequency_hz) for a in audios]
        mel, frames = self._log_mel(audios)
        if self.options.speaker_normalization:
            mel = normalize_speakers(mel, frames, self.reference_profile,
                                     speakers if speakers is not None else [None] * len(audios))
        return [LogMelClip.crop(m, int(n)) for m, n in zip(mel, frames)]

    def collate(self, clips: Sequence[np.ndarray | LogMelClip], augment: SpeechAugmentOptions | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """A batch of clip_inputs as the encoder's inputs plus a mask; augment (training only) perturbs it."""
        augmenting = augment is not None and augment.active
        if not self.is_whisper:
            waves, mask = collate_waveforms(clips, self.options.max_seconds, self.options.normalize)
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

    def prepare(self, audios: Sequence[np.ndarray], augment: SpeechAugmentOptions | None = None,
                generator: torch.Generator | None = None,
                speakers: Sequence[np.ndarray | None] | None = None) -> dict[str, torch.Tensor]:
        """The encoder's inputs for a batch of 16 kHz clips: waveforms or log-mel, plus a mask.

        speakers (speaker_normalization only) holds each clip's speaker statistics; a clip without them
        is not shifted. augment (training only) perturbs the batch; see ray_ser.models.augment.
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
    def from_encoder(cls, options: SpeechEncoderOptions) -> SpeechEmotionModel:
        return cls(_load_encoder(options.encoder), options)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.options.finetune == "lora":
            from ray_ser.models.lora import merged_state_dict

            self.encoder.get_base_model().save_pretrained(directory / "encoder",
                                                          state_dict=merged_state_dict(self.encoder))
        else:
            self.encoder.save_pretrained(directory / "encoder")
        torch.save(self.head_state(), directory / "head.pt")
        (directory / "branch.json").write_text(json.dumps({"family": "speech_encoder", **asdict(self.options)}))
        save_known_speakers(directory, self.known_speakers)

    @classmethod
    def load(cls, directory: str | Path) -> SpeechEmotionModel:
        directory = Path(directory)
        meta = json.loads((directory / "branch.json").read_text())
        meta.pop("family")
        options = SpeechEncoderOptions(**{**meta, "encoder": str(directory / "encoder"), "finetune": "frozen"})
        model = cls(_load_encoder(options.encoder), options)
        # The encoder came from encoder/ already; head.pt must supply every other weight.
        result = model.load_state_dict(torch.load(directory / "head.pt", map_location="cpu"), strict=False)
        missing_head = [k for k in result.missing_keys if not k.startswith("encoder.")]
        if missing_head or result.unexpected_keys:
            raise ValueError(f"{directory}/head.pt does not match the branch: missing {missing_head}, "
                             f"unexpected {result.unexpected_keys}")
        model.known_speakers = load_known_speakers(directory)
        return model.eval()


def _load_encoder(path: str) -> nn.Module:
    """AutoModel for a hub id or directory; a saved Whisper *encoder* has no AutoModel class.

    ``tiny-random:<family>`` names a small random-weight encoder (demo, tests): it is built
    once under the cache directory and then loaded from there like any checkpoint.
    """
    from transformers import AutoConfig, AutoModel

    if path.startswith(TINY_PREFIX):
        family = path[len(TINY_PREFIX):]
        path = str(build_once(f"tiny-random/{family}", lambda d: tiny_encoder_checkpoint(family, d)))
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
    """The speech-encoder branch's inference adapter (ray_ser/models/audio_predictor.py)."""

    model_class = SpeechEmotionModel


_TINY_FAMILIES = {
    "wavlm": ("WavLMConfig", {"num_buckets": 32, "max_bucket_distance": 100}),
    "hubert": ("HubertConfig", {}),
    "wav2vec2": ("Wav2Vec2Config", {}),
    "whisper": ("WhisperConfig", {}),
}


def tiny_encoder_checkpoint(family: str, directory: str | Path, hidden: int = 64, layers: int = 2,
                            seed: int = 0) -> Path:
    """A random-weight encoder of a real architecture, saved like a hub checkpoint (tests, demo)."""
    import transformers

    if family not in _TINY_FAMILIES:
        raise ValueError(f"unknown encoder family {family!r}; expected one of {sorted(_TINY_FAMILIES)}")
    config_name, extra = _TINY_FAMILIES[family]
    if family == "whisper":
        return _tiny_whisper(directory, hidden, layers, seed)
    config = getattr(transformers, config_name)(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=2 * hidden,
        conv_dim=(32,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, do_stable_layer_norm=True,
        feat_extract_norm="layer", mask_time_prob=0.0, layerdrop=0.0, **extra,
    )
    torch.manual_seed(seed)
    model = transformers.AutoModel.from_config(config)
    directory = Path(directory)
    model.save_pretrained(directory)
    return directory


def _tiny_whisper(directory: str | Path, hidden: int, layers: int, seed: int, window_s: int = 6) -> Path:
    """A random Whisper *encoder* with a window of window_s seconds (not 30), saved encoder-only."""
    import transformers
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = transformers.WhisperConfig(
        d_model=hidden, encoder_layers=layers, encoder_attention_heads=4, encoder_ffn_dim=2 * hidden,
        decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=2 * hidden, num_mel_bins=80,
        max_source_positions=window_s * 50, vocab_size=16, max_target_positions=16,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3)
    torch.manual_seed(seed)
    directory = Path(directory)
    WhisperEncoder(config).save_pretrained(directory)
    return directory
