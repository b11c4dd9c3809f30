"""The encoder_probe family's model: a frozen pretrained speech encoder, pooled, normalised per speaker,
and a small trained head.

A pretrained encoder already knows speech: Whisper's was trained on 680k hours. Its states,
averaged over a clip (mean and standard deviation per dimension), carry the voice quality,
energy and rhythm that emotion changes; a small head learns which. The encoder stays frozen,
so every clip is encoded once (in the labeling job, by the ASR's own encoder pass when the probe
uses the ASR's Whisper) and training touches only the head.

Each clip's pooled features are z-normalised by its speaker's mean and spread (statistics over
all of the speaker's clips, as the other speaker-normalised families gather them): an actor's
normal voice becomes the origin, and the head reads how a clip departs from it. A clip without
a speaker is normalised by the training clips' statistics.

Two encoders: ``ctranslate2`` (a Whisper model's encoder through CTranslate2, its last layer:
the ASR's weights, offline) and ``transformers`` (any AutoModel speech encoder; every layer is
pooled and the head mixes the layers with learned weights).

A checkpoint is a directory: ``head.pt`` (head, layer weights, training statistics),
``branch.json`` (the settings with the encoder resolved, ray_ser/branches/checkpoint.py) and
``speakers.npz`` (the training speakers' statistics).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import nn

from ray_ser.branches.checkpoint import read_manifest, write_manifest
from ray_ser.branches.encoder_probe.settings import EncoderProbeTrain
from ray_ser.labels import EMOTIONS
from ray_ser.models.base import EncoderFeatures
from ray_ser.models.features.speaker_norm import load_known_speakers, save_known_speakers
from ray_ser.schema import SAMPLE_RATE

if TYPE_CHECKING:
    from ray_ser.config import AsrConfig

__all__ = ["EncoderFeatures", "resolve_encoder", "FrozenEncoder", "ProbeModel", "EncoderProbePredictor",
           "znorm_statistics", "pooled", "pooled_width"]


def resolve_encoder(settings: EncoderProbeTrain, asr: AsrConfig | None) -> EncoderProbeTrain:
    """The settings with base_model 'asr' replaced by the ASR's Whisper, compute type and window."""
    if settings.base_model not in (None, "asr"):
        return settings
    if asr is None:
        raise ValueError("encoder_probe with base_model 'asr' needs the profile's asr section")
    encoder = settings.encoder.model_copy(update={"compute_type": asr.compute_type, "pad_to_30s": asr.pad_to_30s})
    return settings.model_copy(update={"base_model": asr.model, "encoder": encoder})


class FrozenEncoder:
    """Pooled features of a frozen encoder: [n, layers, 2 * d] (mean and std over each clip's frames)."""

    def __init__(self, settings: EncoderProbeTrain, cache_dir: str | Path | None = None,
                 cpu_threads: int = 1, device: str = "cpu") -> None:
        spec = settings.encoder
        self.settings = settings
        self.max_samples = int(spec.max_seconds * SAMPLE_RATE)
        self._layers = None
        if spec.backend == "ctranslate2":
            from ray_ser.config import AsrConfig
            from ray_ser.models.asr.whisper_ct2 import WhisperCT2

            asr = AsrConfig(model=settings.base_model, compute_type=spec.compute_type, pad_to_30s=spec.pad_to_30s,
                            cpu_threads=cpu_threads, device=device)
            self._whisper = WhisperCT2.load(asr, cache_dir or _default_cache())
            self._transformer = None
            if spec.layers:
                from ray_ser.models.asr.whisper_ct2 import resolve_whisper_model
                from ray_ser.models.pretrained.ct2_whisper import load_whisper_encoder

                encoder = load_whisper_encoder(resolve_whisper_model(settings.base_model, cache_dir or _default_cache()))
                del encoder.layers[max(spec.layers):]  # nothing above the highest layer asked for runs
                self._layers = encoder.to(device).eval()
        else:
            from transformers import AutoModel

            from ray_ser.models.weights import resolve_model_name

            self._whisper = None
            self._transformer = AutoModel.from_pretrained(resolve_model_name(settings.base_model, cache_dir)).to(
                device).eval()
        self.device = device

    @property
    def shape(self) -> tuple[int, int]:
        """(layers, 2 * d) of one clip's features."""
        if self._layers is not None:
            return len(self.settings.encoder.layers), 2 * self._layers.config.d_model
        if self._whisper is not None:
            return 1, 2 * self._whisper.d_model
        config = self._transformer.config
        return config.num_hidden_layers + 1, 2 * config.hidden_size

    @torch.inference_mode()
    def __call__(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        clips = [np.asarray(a, dtype=np.float32)[: self.max_samples] for a in audios]
        if not clips:
            return np.zeros((0, *self.shape), np.float32)
        if self._layers is not None:
            return self._middle_layer_features(clips)
        if self._whisper is not None:
            return self._whisper.encode_pooled(clips)[:, None, :]
        return self._transformer_features(clips)

    def _middle_layer_features(self, clips: list[np.ndarray]) -> np.ndarray:
        """Pooled states of the chosen blocks of the torch copy, on the same windows and log-mel as CTranslate2."""
        from ray_ser.models.asr.whisper_ct2 import pool_states

        encoder, wanted = self._layers, self.settings.encoder.layers
        out = np.zeros((len(clips), *self.shape), np.float32)
        for chosen, batch, frames, _ in self._whisper._windows(clips):
            x = torch.from_numpy(batch).to(self.device)
            x = torch.nn.functional.gelu(encoder.conv1(x))
            x = torch.nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
            x = x + encoder.embed_positions.weight[: x.shape[1]]
            states = {}
            for number, layer in enumerate(encoder.layers, start=1):
                result = layer(x, attention_mask=None)
                x = result[0] if isinstance(result, tuple) else result
                states[number] = x
            for slot, number in enumerate(wanted):
                out[chosen, slot] = pool_states(states[number].cpu().numpy(), frames)
        return out

    def _transformer_features(self, clips: list[np.ndarray]) -> np.ndarray:
        out = []
        for clip in clips:  # one at a time: no padding enters the statistics
            wave = torch.from_numpy((clip - clip.mean()) / (clip.std() + 1e-7))[None].to(self.device)
            states = torch.stack(self._transformer(wave, output_hidden_states=True).hidden_states)[:, 0]
            out.append(torch.cat([states.mean(1), states.std(1, unbiased=False)], dim=-1).cpu().numpy())
        return np.stack(out).astype(np.float32)


def _default_cache() -> Path:
    from ray_ser.config import default_cache_dir

    return default_cache_dir()


def pooled(features: np.ndarray, settings: EncoderProbeTrain) -> np.ndarray:
    """[n, layers, 2d] encoder features -> what the head reads: all of them (mean_std) or the means (mean).
    Features are cached and shared between passes in the full form; the head's choice is applied here."""
    features = np.asarray(features, dtype=np.float32)
    return features[..., : features.shape[-1] // 2] if settings.pooling == "mean" else features


def pooled_width(settings: EncoderProbeTrain, encoder_width: int) -> int:
    """The per-layer width the head reads, of an encoder whose features are encoder_width wide."""
    return encoder_width // 2 if settings.pooling == "mean" else encoder_width


def _flat(features: np.ndarray, dtype) -> np.ndarray:
    """[n, layers, 2d] -> [n, layers * 2d] (an empty batch included)."""
    features = np.asarray(features, dtype=dtype)
    return features.reshape(len(features), int(np.prod(features.shape[1:])))


def znorm_statistics(features: np.ndarray) -> np.ndarray:
    """Speaker statistics rows of clips' features ([n, k] flattened): x, x squared and a count of 1.
    Summed over a speaker's clips, they give its mean and spread."""
    flat = _flat(features, np.float64)
    return np.concatenate([flat, flat ** 2, np.ones((len(flat), 1))], axis=1)


def _mean_and_scale(statistics: np.ndarray, floor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    statistics = torch.as_tensor(np.asarray(statistics, dtype=np.float64))
    k = (statistics.shape[0] - 1) // 2
    count = statistics[-1].clamp_min(1.0)
    mean = statistics[:k] / count
    var = (statistics[k:2 * k] / count - mean ** 2).clamp_min(0.0)
    # A speaker with a single clip has no spread: fall back to the training clips' scale there.
    return mean.float(), torch.maximum(var.sqrt().float(), floor)


class ProbeModel(nn.Module):
    """normalised pooled features [B, layers, width] -> layer mix (softmax-weighted sum, or side by side)
    -> dropout -> linear or MLP -> logits. width is what the head reads of a layer (see pooled_width)."""

    def __init__(self, settings: EncoderProbeTrain, layers: int, width: int,
                 classes: tuple[str, ...] = EMOTIONS) -> None:
        super().__init__()
        self.settings = settings
        self.classes = tuple(classes)
        if settings.layer_mix == "softmax":
            self.layer_weights = nn.Parameter(torch.zeros(layers))
        else:  # a buffer, not a parameter: concat learns no mix, and the state keeps one shape for both
            self.register_buffer("layer_weights", torch.zeros(layers))
        inputs = width * layers if settings.layer_mix == "concat" else width
        # The training clips' statistics: a clip without speaker statistics is normalised by them.
        self.register_buffer("feature_mean", torch.zeros(layers * width))
        self.register_buffer("feature_scale", torch.ones(layers * width))
        self.known_speakers: dict[str, np.ndarray] = {}
        if settings.head == "linear":
            self.head = nn.Sequential(nn.Dropout(settings.dropout), nn.Linear(inputs, len(self.classes)))
        else:
            self.head = nn.Sequential(nn.Dropout(settings.dropout), nn.Linear(inputs, settings.hidden), nn.GELU(),
                                      nn.Dropout(settings.dropout), nn.Linear(settings.hidden, len(self.classes)))

    @property
    def shape(self) -> tuple[int, int]:
        layers = self.layer_weights.shape[0]
        return layers, self.feature_mean.shape[0] // layers

    def fit_statistics(self, features: np.ndarray) -> None:
        """The training clips' mean and spread, for clips without a speaker."""
        flat = torch.as_tensor(_flat(features, np.float32))
        self.feature_mean.copy_(flat.mean(0))
        self.feature_scale.copy_(flat.std(0).clamp_min(1e-5))

    def normalise(self, features: np.ndarray, speakers: Sequence[np.ndarray | None] | None = None) -> torch.Tensor:
        """[n, layers, 2d]: each clip z-normalised by its speaker's statistics (or the training clips')."""
        flat = torch.as_tensor(_flat(features, np.float32))
        out = (flat - self.feature_mean) / self.feature_scale
        if self.settings.speaker_normalization and speakers is not None:
            for i, stats in enumerate(speakers):
                if stats is not None:
                    mean, scale = _mean_and_scale(stats, 0.1 * self.feature_scale)
                    out[i] = (flat[i] - mean) / scale
        return out.reshape(len(features), *self.shape)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.settings.layer_mix == "concat":
            return self.head(features.flatten(1))
        mix = torch.softmax(self.layer_weights, dim=0)
        return self.head((features * mix[None, :, None]).sum(dim=1))

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        layers, width = self.shape
        torch.save({"state": self.state_dict(), "layers": layers, "width": width}, directory / "head.pt")
        write_manifest(directory, "encoder_probe", self.settings, self.classes)
        save_known_speakers(directory, self.known_speakers)

    @classmethod
    def load(cls, directory: str | Path) -> ProbeModel:
        directory = Path(directory)
        manifest = read_manifest(directory, "encoder_probe")
        saved = torch.load(directory / "head.pt", map_location="cpu")
        model = cls(manifest.parse(EncoderProbeTrain), saved["layers"], saved["width"], manifest.classes)
        model.load_state_dict(saved["state"])
        model.known_speakers = load_known_speakers(directory)
        return model.eval()


class EncoderProbePredictor:
    """The branch's BranchPredictor. An input is a waveform, or EncoderFeatures the ASR's pass computed."""

    input_kind = "audio"

    def __init__(self, model: ProbeModel, encoder: FrozenEncoder, device: str = "cpu") -> None:
        self.device = device
        self.model = model.to(device).eval()
        self.classes = model.classes
        self.encoder = encoder
        self.speaker_profiles = self if model.settings.speaker_normalization else None

    @classmethod
    def load(cls, checkpoint: str | Path, cache_dir: str | Path | None = None,
             device: str = "cpu") -> EncoderProbePredictor:
        model = ProbeModel.load(checkpoint)
        return cls(model, FrozenEncoder(model.settings, cache_dir, device=device), device)

    def features(self, items: Sequence[np.ndarray | EncoderFeatures]) -> np.ndarray:
        """[n, layers, width] the head reads, of waveforms (encoded here) and precomputed features alike."""
        waves = [i for i, item in enumerate(items) if not isinstance(item, EncoderFeatures)]
        encoded = self.encoder([items[i] for i in waves]) if waves else None
        out = np.zeros((len(items), *self.encoder.shape), np.float32)
        for row, item in enumerate(items):
            if isinstance(item, EncoderFeatures):
                out[row] = np.asarray(item.values, np.float32).reshape(self.encoder.shape)
        if encoded is not None:
            out[waves] = encoded
        return pooled(out, self.model.settings)

    def feature_sums(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        return znorm_statistics(self.features(audios))

    def with_known_speakers(self, statistics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ray_ser.models.features.speaker_norm import with_known_speakers

        return with_known_speakers(statistics, self.model.known_speakers)

    @torch.inference_mode()
    def predict_batch(self, items: Sequence[np.ndarray | EncoderFeatures],
                      speakers: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
        if not items:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        normalised = self.model.normalise(self.features(items), speakers).to(self.device)
        return torch.softmax(self.model(normalised).float(), dim=-1).cpu().numpy()
