"""Decode any supported container to 16 kHz mono float32, or say exactly why not."""

from __future__ import annotations

import io

import numpy as np

__all__ = ["TARGET_SAMPLE_RATE", "AudioDecodeError", "decode_audio", "slice_seconds", "to_bytes", "from_bytes",
           "to_wav_bytes"]

from ray_ser.schema import SAMPLE_RATE as TARGET_SAMPLE_RATE


class AudioDecodeError(ValueError):
    """The bytes are not decodable audio; the message is the row's error reason."""


def _decode_soundfile(data: bytes) -> tuple[np.ndarray, int]:
    import soundfile as sf

    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return samples.mean(axis=1), int(rate)


def _decode_av(data: bytes) -> tuple[np.ndarray, int]:
    import av

    with av.open(io.BytesIO(data)) as container:
        if not container.streams.audio:
            raise AudioDecodeError("no audio stream in container")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_SAMPLE_RATE)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        return np.zeros(0, dtype=np.float32), TARGET_SAMPLE_RATE
    return np.concatenate(chunks).astype(np.float32), TARGET_SAMPLE_RATE


def decode_audio(data: bytes) -> np.ndarray:
    """Bytes of wav/flac/ogg/mp3 (anything libsndfile or FFmpeg reads) -> 16 kHz mono float32."""
    if not data:
        raise AudioDecodeError("empty file")
    try:
        samples, rate = _decode_soundfile(data)
    except Exception as first:  # libsndfile refuses some mp3/ogg variants; FFmpeg is the fallback
        try:
            samples, rate = _decode_av(data)
        except AudioDecodeError:
            raise
        except Exception as second:
            # libsndfile's message embeds a BytesIO repr; keep only its reason.
            reason = str(first).split(": ", 1)[-1]
            raise AudioDecodeError(
                f"not decodable audio (libsndfile: {reason} ffmpeg: {type(second).__name__})"
            ) from None
    if samples.size == 0:
        raise AudioDecodeError("no audio samples")
    if not np.isfinite(samples).all():
        raise AudioDecodeError("audio contains NaN or infinite samples")
    if rate != TARGET_SAMPLE_RATE:
        import soxr

        samples = soxr.resample(samples, rate, TARGET_SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(samples, dtype=np.float32)


def slice_seconds(samples: np.ndarray, start: float | None, end: float | None) -> np.ndarray:
    """The [start, end) seconds of a 16 kHz signal, validating the bounds against its length."""
    duration = samples.size / TARGET_SAMPLE_RATE
    lo = 0.0 if start is None else float(start)
    hi = duration if end is None else float(end)
    if lo < 0 or hi <= lo:
        raise AudioDecodeError(f"bad segment bounds start={start} end={end}")
    if lo >= duration:
        raise AudioDecodeError(f"segment start {lo:.3f}s is past the end of the audio ({duration:.3f}s)")
    return samples[int(round(lo * TARGET_SAMPLE_RATE)) : int(round(min(hi, duration) * TARGET_SAMPLE_RATE))]


def to_bytes(samples: np.ndarray) -> bytes:
    """float32 samples as little-endian bytes: the compact form audio travels in between stages."""
    return np.asarray(samples, dtype="<f4").tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4")


def to_wav_bytes(samples: np.ndarray) -> bytes:
    """16 kHz mono float32 samples as a 16-bit PCM WAV file (what HTTP clients send)."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(samples, dtype=np.float32), TARGET_SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
