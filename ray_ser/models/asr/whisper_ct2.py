"""Whisper on CTranslate2, batched ACROSS utterances.

faster-whisper's pipelines batch the chunks of one long file; a corpus of short
clips gains nothing from that. Here the clips of a batch are padded to a window,
stacked, encoded once and decoded by one ``generate`` call.

The window is Whisper's 30 s, as it was trained, or (``pad_to_30s=False``) each clip's
own length plus 2 s, clips of one window length going together: the encoder's cost grows
with the window, so 3 s clips are transcribed ~10x faster (bench/asr_window.py measures
speed and word error rate).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ray_ser.models.base import Transcript

if TYPE_CHECKING:
    from ray_ser.config import AsrConfig

__all__ = ["WhisperCT2", "resolve_whisper_model", "pool_states"]

_WINDOW_SAMPLES = 30 * 16_000
_WINDOW_FRAMES = 3000
_FRAMES_PER_SECOND = 100
# Trailing silence after a clip. On bench/asr_window.py's corpus the 30 s window's word error rate
# was 0.32; margins of 1, 2, 4 and 8 s (measured padding batches to their longest clip) gave 0.35,
# 0.27, 0.27 and 0.28, and 2 s per clip gives 0.26.
_MARGIN_FRAMES = 2 * _FRAMES_PER_SECOND


def pool_states(states: np.ndarray, mel_frames: Sequence[int]) -> np.ndarray:
    """[n, 2 * d]: mean and standard deviation of each clip's encoder states over its own frames
    (the encoder's second convolution halves the mel frame rate; the window's padding is left out)."""
    out = np.zeros((len(states), 2 * states.shape[-1]), np.float32)
    for i, frames in enumerate(mel_frames):
        own = states[i, : max(1, min(states.shape[1], -(-int(frames) // 2)))]
        out[i] = np.concatenate([own.mean(axis=0), own.std(axis=0)])
    return out


def resolve_whisper_model(name: str, cache_dir: str | Path) -> str:
    """A local CTranslate2 directory for name: offline alias, path, or faster-whisper id."""
    if name == "offline:whisper-base":
        from ray_ser.models.weights import whisper_base_dir

        return str(whisper_base_dir(cache_dir))
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    # A faster-whisper size or hub id; resolved from the local HF cache only when offline.
    from faster_whisper.utils import download_model

    return download_model(name, cache_dir=str(Path(cache_dir) / "hf"))


class WhisperCT2:
    """AsrModel over ctranslate2.models.Whisper, configured by the profile's asr section."""

    def __init__(self, model_dir: str, options: AsrConfig) -> None:
        import ctranslate2
        import tokenizers
        from faster_whisper.feature_extractor import FeatureExtractor
        from faster_whisper.tokenizer import Tokenizer

        self.options = options
        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(
            model_dir, device=options.device, compute_type=options.compute_type,
            intra_threads=options.cpu_threads, inter_threads=1,
        )
        self.features = FeatureExtractor(feature_size=self.model.n_mels)
        self._hf_tokenizer = tokenizers.Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        self._tokenizer_cls = Tokenizer
        self._tokenizers: dict[str, Tokenizer] = {}
        self._d_model: int | None = None

    @classmethod
    def load(cls, options: AsrConfig, cache_dir: str | Path) -> WhisperCT2:
        return cls(resolve_whisper_model(options.model, cache_dir), options)

    def _tokenizer(self, language: str):
        if language not in self._tokenizers:
            self._tokenizers[language] = self._tokenizer_cls(
                self._hf_tokenizer, self.model.is_multilingual, task="transcribe", language=language
            )
        return self._tokenizers[language]

    def _mel(self, audio: np.ndarray) -> np.ndarray:
        return self.features(np.asarray(audio, dtype=np.float32)[:_WINDOW_SAMPLES], padding=0)

    def _window_frames(self, frames: int) -> int:
        """Frames a clip is padded to: 30 s, or the clip's own length + 2 s in whole seconds."""
        if self.options.pad_to_30s:
            return _WINDOW_FRAMES
        seconds = -(-(frames + _MARGIN_FRAMES) // _FRAMES_PER_SECOND)
        return min(_WINDOW_FRAMES, seconds * _FRAMES_PER_SECOND)

    def predict_batch(self, audios: Sequence[np.ndarray]) -> list[Transcript]:
        return self.transcribe(audios)[0]

    def _windows(self, audios: Sequence[np.ndarray]):
        """(clip indices, [n, mels, window] batch, each clip's own frame count) per window length.

        A clip's window depends on the clip alone, and CTranslate2's encoder treats each row of a
        batch on its own (bit for bit), so neither a transcript nor a clip's encoder states depend
        on what it was batched with."""
        mels = [self._mel(a) for a in audios]
        windows = [self._window_frames(m.shape[-1]) for m in mels]
        for window in sorted(set(windows)):
            chosen = [i for i, w in enumerate(windows) if w == window]
            batch = np.stack([np.pad(mels[i], ((0, 0), (0, max(0, window - mels[i].shape[-1]))))[:, :window]
                              for i in chosen])
            yield chosen, np.ascontiguousarray(batch, dtype=np.float32), [mels[i].shape[-1] for i in chosen]

    def transcribe(self, audios: Sequence[np.ndarray],
                   pooled_states: bool = False) -> tuple[list[Transcript], np.ndarray | None]:
        """Transcripts; with pooled_states, also each clip's encoder states pooled over its own frames
        (``pool_states``), from the same encoder pass."""
        out: list[Transcript] = [None] * len(audios)  # type: ignore[list-item]
        pooled = np.zeros((len(audios), 2 * self.d_model), np.float32) \
            if pooled_states else None
        for chosen, batch, frames in self._windows(audios):
            encoded = self.model.encode(self._ct2.StorageView.from_array(batch))
            if pooled is not None:
                pooled[chosen] = pool_states(np.array(encoded), frames)
            for i, transcript in zip(chosen, self._transcribe(batch, encoded)):
                out[i] = transcript
        return out, pooled

    def encode_pooled(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """[n, 2 * d_model]: each clip's last-layer encoder states pooled over its own frames, no decoding."""
        pooled = np.zeros((len(audios), 2 * self.d_model), np.float32)
        for chosen, batch, frames in self._windows(audios):
            pooled[chosen] = pool_states(np.array(self.model.encode(self._ct2.StorageView.from_array(batch))),
                                         frames)
        return pooled

    @property
    def d_model(self) -> int:
        """Width of the encoder's states (512 for Whisper base)."""
        if self._d_model is None:
            probe = np.zeros((1, self.model.n_mels, 2 * _FRAMES_PER_SECOND), np.float32)
            self._d_model = int(np.array(self.model.encode(self._ct2.StorageView.from_array(probe))).shape[-1])
        return self._d_model

    def _transcribe(self, mels: np.ndarray, encoded) -> list[Transcript]:
        if self.options.language is not None or not self.model.is_multilingual:
            languages = [self.options.language or "en"] * len(mels)
        else:
            detected = self.model.detect_language(encoded)
            languages = [pairs[0][0][2:-2] for pairs in detected]
        prompts = []
        for lang in languages:
            tok = self._tokenizer(lang)
            prompts.append(list(tok.sot_sequence) + [tok.no_timestamps])
        results = self.model.generate(
            encoded,
            prompts,
            beam_size=self.options.beam_size,
            max_length=max(len(p) for p in prompts) + self.options.max_new_tokens,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        out = []
        for lang, result in zip(languages, results):
            tokens = result.sequences_ids[0]
            text = self._tokenizer(lang).decode(tokens).strip()
            avg = float(result.scores[0]) / (len(tokens) + 1)
            out.append(Transcript(text=text, language=lang, avg_logprob=avg,
                                  no_speech_prob=float(result.no_speech_prob)))
        return out
