"""Whisper on CTranslate2, batched ACROSS utterances.

faster-whisper's pipelines batch the chunks of one long file; a corpus of short
clips gains nothing from that. Here the clips of a batch are padded to a window,
stacked, encoded once (``encode``) and decoded by one ``generate`` call (``_transcribe``,
which takes the encoder output, so another consumer of the encoder states can share the pass).

The window is Whisper's 30 s, as it was trained, or (``pad_to_30s=False``) each clip's
own length plus 2 s, clips of one window length going together: the encoder's cost grows
with the window, so 3 s clips are transcribed ~10x faster (bench/asr_window.py measures
speed and word error rate).

Greedy decoding of a short window often repeats the clip's sentence until the token limit
("Kids are talking by the door. Kids are talking by the door. ..." on half of RAVDESS). The
guards, faster-whisper's ``transcribe`` ones adapted to a batch (``asr.*`` in the profile):

- a length bound from the clip's duration (``max_tokens_per_second``), so a loop stops early;
- a clip whose text compresses too well (``compression_ratio_threshold``), that reached its
  bound, or whose average log-probability is too low (``log_prob_threshold``, unless Whisper
  says it is silence, ``no_speech_threshold``) is decoded again, only those clips, batched:
  first greedily with a repetition penalty (``fallback_repetition_penalty``, which ends the
  loops sampling does not: a loop is Whisper's most confident continuation), then by sampling
  at each of ``fallback_temperatures`` (``best_of`` samples);
- when no attempt passes, the attempt with the best average log-probability among those that
  are not repetitive wins, as in faster-whisper.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ray_ser.models.base import Transcript

if TYPE_CHECKING:
    from ray_ser.config import AsrConfig

__all__ = ["WhisperCT2", "resolve_whisper_model", "compression_ratio", "pool_states"]

_SAMPLE_RATE = 16_000
_WINDOW_SAMPLES = 30 * _SAMPLE_RATE
_WINDOW_FRAMES = 3000
_FRAMES_PER_SECOND = 100
# Trailing silence after a clip. On bench/asr_window.py's corpus the 30 s window's word error rate
# was 0.32; margins of 1, 2, 4 and 8 s (measured padding batches to their longest clip) gave 0.35,
# 0.27, 0.27 and 0.28, and 2 s per clip gives 0.26.
_MARGIN_FRAMES = 2 * _FRAMES_PER_SECOND
# Tokens any clip may use whatever its length: a 0.5 s "Okay." still needs its punctuation.
_MIN_TOKEN_BUDGET = 10


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


def compression_ratio(text: str) -> float:
    """Bytes of the text over bytes of its zlib compression, faster-whisper's repetition measure."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass(frozen=True)
class _Attempt:
    """One decode of one clip and the measures the guards read."""

    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    hit_bound: bool  # decoded as many tokens as the clip's length allows: a loop cut short


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

    def token_budget(self, seconds: float) -> int:
        """The most tokens a clip of this length may decode to (the length bound)."""
        budget = _MIN_TOKEN_BUDGET + math.ceil(seconds * self.options.max_tokens_per_second)
        return min(self.options.max_new_tokens, budget)

    def predict_batch(self, audios: Sequence[np.ndarray],
                      languages: Sequence[str | None] | None = None) -> list[Transcript]:
        return self.transcribe(audios, languages=languages)[0]

    def _windows(self, audios: Sequence[np.ndarray]):
        """(clip indices, [n, mels, window] batch, each clip's own frame count, each clip's seconds)
        per window length.

        A clip's window depends on the clip alone, and CTranslate2's encoder treats each row of a
        batch on its own (bit for bit), so neither a clip's first decode nor its encoder states
        depend on what it was batched with."""
        mels = [self._mel(a) for a in audios]
        seconds = [min(np.asarray(a).size, _WINDOW_SAMPLES) / _SAMPLE_RATE for a in audios]
        windows = [self._window_frames(m.shape[-1]) for m in mels]
        for window in sorted(set(windows)):
            chosen = [i for i, w in enumerate(windows) if w == window]
            batch = np.stack([np.pad(mels[i], ((0, 0), (0, max(0, window - mels[i].shape[-1]))))[:, :window]
                              for i in chosen])
            yield (chosen, np.ascontiguousarray(batch, dtype=np.float32), [mels[i].shape[-1] for i in chosen],
                   [seconds[i] for i in chosen])

    def transcribe(self, audios: Sequence[np.ndarray], pooled_states: bool = False,
                   languages: Sequence[str | None] | None = None) -> tuple[list[Transcript], np.ndarray | None]:
        """Transcripts; with pooled_states, also each clip's encoder states pooled over its own frames
        (``pool_states``), from the same encoder pass that the decoding (and its fallbacks) reads.
        languages: each clip's language code where the caller knows it (a manifest's language column);
        a clip without one (None, or a code Whisper does not know) gets asr.language or is detected."""
        out: list[Transcript] = [None] * len(audios)  # type: ignore[list-item]
        pooled = np.zeros((len(audios), 2 * self.d_model), np.float32) if pooled_states else None
        for chosen, batch, frames, seconds in self._windows(audios):
            encoded = self.encode(batch)
            if pooled is not None:
                pooled[chosen] = pool_states(_host(encoded, self._ct2), frames)
            hints = [languages[i] for i in chosen] if languages is not None else None
            for i, transcript in zip(chosen, self._transcribe(encoded, seconds, hints)):
                out[i] = transcript
        return out, pooled

    def encode_pooled(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """[n, 2 * d_model]: each clip's last-layer encoder states pooled over its own frames, no decoding."""
        pooled = np.zeros((len(audios), 2 * self.d_model), np.float32)
        for chosen, batch, frames, _ in self._windows(audios):
            pooled[chosen] = pool_states(_host(self.encode(batch), self._ct2), frames)
        return pooled

    @property
    def d_model(self) -> int:
        """Width of the encoder's states (512 for Whisper base)."""
        if self._d_model is None:
            probe = np.zeros((1, self.model.n_mels, 2 * _FRAMES_PER_SECOND), np.float32)
            self._d_model = int(_host(self.encode(probe), self._ct2).shape[-1])
        return self._d_model

    def encode(self, mels: np.ndarray) -> Any:
        """Whisper's encoder over a batch of log-mel windows (batch, n_mels, frames): a StorageView."""
        return self.model.encode(self._ct2.StorageView.from_array(np.ascontiguousarray(mels, dtype=np.float32)))

    def _languages(self, encoded: Any, count: int, hints: Sequence[str | None] | None) -> list[str]:
        """Each clip's language: its hint where Whisper knows that code, else asr.language, else detected
        (only the clips that need it go through detection)."""
        opts = self.options
        if not self.model.is_multilingual:
            return ["en"] * count
        known = [h if h and self._hf_tokenizer.token_to_id(f"<|{h}|>") is not None else None
                 for h in (hints if hints is not None else [None] * count)]
        missing = [i for i, code in enumerate(known) if code is None]
        if missing and opts.language is not None:
            for i in missing:
                known[i] = opts.language
        elif missing:
            detected = self.model.detect_language(_rows(encoded, missing, count, self._ct2))
            for i, pairs in zip(missing, detected):
                known[i] = pairs[0][0][2:-2]
        return known  # type: ignore[return-value]

    def _transcribe(self, encoded: Any, seconds: Sequence[float],
                    hints: Sequence[str | None] | None = None) -> list[Transcript]:
        """Decode encoder output (one row per clip of ``seconds`` length) under the guards above."""
        opts = self.options
        languages = self._languages(encoded, len(seconds), hints)
        prompts = []
        for lang in languages:
            tok = self._tokenizer(lang)
            prompts.append(list(tok.sot_sequence) + [tok.no_timestamps])
        budgets = [self.token_budget(s) for s in seconds]
        attempts: list[list[_Attempt]] = [[] for _ in seconds]
        todo = list(range(len(seconds)))
        for step, decoding in enumerate(self._decoding_steps()):
            if not todo:
                break
            if "sampling_temperature" in decoding:
                # A fixed seed: the same batch gives the same transcripts on every run.
                self._ct2.set_random_seed(step)
            results = self.model.generate(
                _rows(encoded, todo, len(seconds), self._ct2), [prompts[i] for i in todo],
                max_length=max(_max_length(len(prompts[i]), budgets[i]) for i in todo),
                no_repeat_ngram_size=opts.no_repeat_ngram_size, return_scores=True, return_no_speech_prob=True,
                suppress_blank=True, suppress_tokens=[-1], **decoding)
            for i, result in zip(todo, results):
                attempts[i].append(self._attempt(result, languages[i], budgets[i]))
            todo = [i for i in todo if self._needs_fallback(attempts[i][-1])]
        return [self._transcript(self._best(tries), lang) for tries, lang in zip(attempts, languages)]

    def _decoding_steps(self) -> list[dict]:
        """generate() arguments of the first decode and of each fallback, in order."""
        opts = self.options
        steps = [{"beam_size": opts.beam_size, "repetition_penalty": 1.0}]
        penalty = opts.fallback_repetition_penalty
        if penalty > 1.0:
            steps.append({"beam_size": opts.beam_size, "repetition_penalty": penalty})
        steps += [{"beam_size": 1, "sampling_topk": 0, "sampling_temperature": t, "num_hypotheses": opts.best_of,
                   "repetition_penalty": penalty} for t in opts.fallback_temperatures]
        return steps

    def _attempt(self, result: Any, language: str, budget: int) -> _Attempt:
        """The best hypothesis of a result (CTranslate2 returns them best first), measured."""
        tokens = list(result.sequences_ids[0])
        text = self._tokenizer(language).decode(tokens[:budget]).strip()
        # CTranslate2's score is the log-probability divided by the length (length_penalty 1): recover
        # the sum, then average over the tokens and the end-of-text token, as faster-whisper does.
        avg = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)
        return _Attempt(text, avg, float(result.no_speech_prob), compression_ratio(text),
                        hit_bound=len(tokens) >= budget)

    def _repetitive(self, attempt: _Attempt) -> bool:
        threshold = self.options.compression_ratio_threshold
        return attempt.hit_bound or (threshold is not None and attempt.compression_ratio > threshold)

    def _needs_fallback(self, attempt: _Attempt) -> bool:
        """faster-whisper's test: too repetitive, or improbable unless Whisper calls it silence."""
        threshold, silence = self.options.log_prob_threshold, self.options.no_speech_threshold
        improbable = threshold is not None and attempt.avg_logprob < threshold
        return self._repetitive(attempt) or (improbable and attempt.no_speech_prob <= silence)

    def _best(self, tries: list[_Attempt]) -> _Attempt:
        """The last attempt when it passed; else the most probable attempt that does not repeat."""
        if not self._needs_fallback(tries[-1]):
            return tries[-1]
        clean = [a for a in tries if not self._repetitive(a)]
        return max(clean or tries, key=lambda a: a.avg_logprob)

    @staticmethod
    def _transcript(attempt: _Attempt, language: str) -> Transcript:
        return Transcript(text=attempt.text, language=language, avg_logprob=attempt.avg_logprob,
                          no_speech_prob=attempt.no_speech_prob)


# CTranslate2 decodes at most min(max_length / 2, max_length - prompt) tokens (whisper.cc, after
# OpenAI's 224-token sample length), within Whisper's 448 positions.
_MODEL_MAX_LENGTH = 448


def _max_length(prompt: int, budget: int) -> int:
    """generate()'s max_length that lets budget tokens follow a prompt of this length."""
    return min(_MODEL_MAX_LENGTH, max(2 * budget, prompt + budget))


def _host(encoded: Any, ctranslate2: Any) -> np.ndarray:
    """Encoder output as a host array (a copy off the GPU when the model runs there)."""
    return np.asarray(encoded if encoded.device == "cpu" else encoded.to_device(ctranslate2.Device.cpu))


def _rows(encoded: Any, rows: list[int], total: int, ctranslate2: Any) -> Any:
    """The encoder output of some clips of a batch (all of it when every clip is asked for)."""
    if len(rows) == total:
        return encoded
    picked = ctranslate2.StorageView.from_array(np.ascontiguousarray(_host(encoded, ctranslate2)[rows]))
    return picked if encoded.device == "cpu" else picked.to_device(ctranslate2.Device.cuda)
