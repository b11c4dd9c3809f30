"""Utterance-level acoustic functionals: log-mel, energy, pitch and rate statistics of one clip.

The eGeMAPS idea in numpy: a fixed-length vector of statistics over a clip's frames. The
classical baseline (ray_ser/baseline.py) fits gradient boosting on it; the prosody branch
(ray_ser/models/prosody.py) trains a small network on it, speaker-normalised.
"""

from __future__ import annotations

import numpy as np

__all__ = ["prosody_features", "FUNCTIONAL_DIMS"]

SAMPLE_RATE = 16_000
FRAME = 400   # 25 ms
HOP = 160     # 10 ms
N_MELS = 40
# log-mel mean and std per band; energy, pitch and log-pitch statistics; voicing, duration, rate, RMS.
FUNCTIONAL_DIMS = 2 * N_MELS + 3 * 5 + 4


def _mel_filterbank(n_fft: int = 512, n_mels: int = N_MELS, sr: int = SAMPLE_RATE) -> np.ndarray:
    def hz_to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def mel_to_hz(mel):
        return 700.0 * (10 ** (np.asarray(mel) / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(20.0), hz_to_mel(sr / 2), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / sr)
    bank = np.zeros((n_mels, bins.size))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        bank[m] = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0.0, None)
    return bank


_BANK = _mel_filterbank()


def _frames(audio: np.ndarray) -> np.ndarray:
    if audio.size < FRAME:
        audio = np.pad(audio, (0, FRAME - audio.size))
    count = 1 + (audio.size - FRAME) // HOP
    idx = np.arange(FRAME)[None, :] + HOP * np.arange(count)[:, None]
    return audio[idx]


def _pitch(frames: np.ndarray, voiced: np.ndarray, fmin: float = 60.0, fmax: float = 500.0) -> np.ndarray:
    """Autocorrelation pitch (Hz) of the voiced frames."""
    lo, hi = int(SAMPLE_RATE / fmax), int(SAMPLE_RATE / fmin)
    chosen = frames[voiced] * np.hanning(FRAME)
    if not chosen.size:
        return np.zeros(0)
    spectrum = np.fft.rfft(chosen, n=2 * FRAME)
    acf = np.fft.irfft(np.abs(spectrum) ** 2)[:, : FRAME]
    lag = lo + np.argmax(acf[:, lo:hi], axis=1)
    strength = acf[np.arange(lag.size), lag] / np.maximum(acf[:, 0], 1e-9)
    return (SAMPLE_RATE / lag)[strength > 0.3]


def _stats(values: np.ndarray) -> list[float]:
    if not values.size:
        return [0.0] * 5
    return [float(values.mean()), float(values.std()), *map(float, np.percentile(values, [10, 50, 90]))]


def prosody_features(audio: np.ndarray) -> np.ndarray:
    """A fixed-length vector: log-mel mean/std per band, energy, pitch and rate statistics."""
    audio = np.asarray(audio, dtype=np.float64)
    frames = _frames(audio)
    power = np.abs(np.fft.rfft(frames * np.hanning(FRAME), n=512)) ** 2
    log_mel = np.log(power @ _BANK.T + 1e-10)
    energy_db = 10.0 * np.log10((frames ** 2).mean(axis=1) + 1e-10)
    voiced = energy_db > energy_db.max() - 30.0
    pitch = _pitch(frames, voiced)
    # Syllable-rate proxy: rises of the smoothed energy envelope through its median.
    envelope = np.convolve(energy_db, np.ones(5) / 5, mode="same")
    above = envelope > np.median(envelope)
    onsets = int(np.sum(above[1:] & ~above[:-1]))
    duration = audio.size / SAMPLE_RATE
    voiced_mel = log_mel[voiced] if voiced.any() else log_mel
    return np.asarray(
        [*voiced_mel.mean(axis=0), *voiced_mel.std(axis=0), *_stats(energy_db[voiced]), *_stats(pitch),
         *_stats(np.log(pitch + 1e-6)), float(voiced.mean()), duration, onsets / max(duration, 1e-3),
         float(np.sqrt((audio ** 2).mean())) if audio.size else 0.0],
        dtype=np.float32,
    )
