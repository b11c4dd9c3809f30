"""Training-time augmentation of a speech-encoder batch, and the band limit it shares with inference.

With a handful of training voices, a from-scratch encoder learns each voice's
quality (breathiness, loudness, the spectrum above ~3 kHz) as a shortcut for emotion,
and an unseen voice then reads as the emotion whose training clips it resembles.
The remedies are the usual ones of low-resource SER:

- a random gain, so overall loudness is a relative cue and not a voice's signature;
- SpecAugment's frequency and time masks, so no single band or instant decides;
- a band limit, applied in training and inference alike: pitch, tempo and loudness,
  the cues acted emotion lives on, sit below it; voice quality above it.

Gain and time masks apply to waveforms and log-mel alike; frequency masks need log-mel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ray_ser.schema import SAMPLE_RATE

if TYPE_CHECKING:
    # The settings (how much of each perturbation) are the speech_encoder family's train.augment section.
    from ray_ser.branches.speech_encoder.settings import SpeechAugmentConfig

__all__ = ["band_limit", "augment_log_mel", "augment_waveforms"]


def band_limit(audio: np.ndarray, max_frequency_hz: float | None) -> np.ndarray:
    """audio with everything above max_frequency_hz removed (an FFT brick wall); None keeps it."""
    audio = np.asarray(audio, dtype=np.float32)
    if max_frequency_hz is None or max_frequency_hz >= SAMPLE_RATE / 2 or audio.size < 2:
        return audio
    # A power-of-two transform: clip lengths are arbitrary, and an FFT of a length with a
    # large prime factor costs a hundred times more.
    size = 1 << (audio.size - 1).bit_length()
    spectrum = np.fft.rfft(audio, n=size)
    spectrum[np.fft.rfftfreq(size, 1.0 / SAMPLE_RATE) > max_frequency_hz] = 0
    return np.fft.irfft(spectrum, n=size)[: audio.size].astype(np.float32)


def _mask_spans(length: int, count: int, width: int, generator: torch.Generator | None) -> list[slice]:
    spans = []
    for _ in range(count):
        size = int(torch.randint(0, max(1, min(width, length)) + 1, (1,), generator=generator))
        start = int(torch.randint(0, max(1, length - size + 1), (1,), generator=generator))
        spans.append(slice(start, start + size))
    return spans


def augment_log_mel(mel: torch.Tensor, lengths: torch.Tensor, options: SpeechAugmentConfig,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Augmented copy of Whisper-scaled log-mel [batch, mels, frames] ((log10 + 4) / 4).

    lengths are the clips' frame counts, so time masks fall on speech, not on padding.
    A masked region takes the clip's mean value: it carries no information, and it is
    not the silence level, which would be a loudness cue of its own.
    """
    mel = mel.clone()
    if options.gain_db:
        # 1 dB of gain is 0.1 in log10 power, and 0.025 on Whisper's (log10 + 4) / 4 scale.
        gain = (torch.rand(mel.shape[0], 1, 1, generator=generator) * 2 - 1) * options.gain_db / 40.0
        mel += gain
    for i in range(mel.shape[0]):
        fill = float(mel[i, :, : int(lengths[i])].mean())
        for span in _mask_spans(mel.shape[1], options.freq_masks, options.freq_mask_bins, generator):
            mel[i, span, :] = fill
        for span in _mask_spans(int(lengths[i]), options.time_masks, options.time_mask_frames, generator):
            mel[i, :, span] = fill
    return mel


def augment_waveforms(waves: torch.Tensor, mask: torch.Tensor, options: SpeechAugmentConfig,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Augmented copy of a padded waveform batch [batch, samples]: gain and zeroed time spans."""
    waves = waves.clone()
    if options.gain_db:
        gain_db = (torch.rand(waves.shape[0], 1, generator=generator) * 2 - 1) * options.gain_db
        waves *= 10.0 ** (gain_db / 20.0)
    hop = SAMPLE_RATE // 100
    for i in range(waves.shape[0]):
        frames = int(mask[i].sum()) // hop
        for span in _mask_spans(frames, options.time_masks, options.time_mask_frames, generator):
            waves[i, span.start * hop: span.stop * hop] = 0.0
    return waves
