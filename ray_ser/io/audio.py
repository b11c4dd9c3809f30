"""Decode any supported container to 16 kHz mono float32, or say exactly why not.

The header is checked before any samples are decoded: a declared sample rate below
``min_sample_rate`` is refused (a WAV declaring 100 Hz would otherwise be resampled into hours of
16 kHz audio), and so is a declared length over ``max_seconds`` where the caller bounds it.
Long recordings are read a window at a time instead (ray_ser/io/audio_windows.py).
"""

from __future__ import annotations

import io

import numpy as np

__all__ = ["TARGET_SAMPLE_RATE", "DEFAULT_MIN_SAMPLE_RATE", "AudioDecodeError", "decode_audio", "check_declared",
           "slice_seconds", "to_bytes", "from_bytes", "to_wav_bytes"]

from ray_ser.schema import SAMPLE_RATE as TARGET_SAMPLE_RATE


# The labeling job reads its own bound from decode.min_sample_rate; this is the default elsewhere (Serve).
DEFAULT_MIN_SAMPLE_RATE = 4000


class AudioDecodeError(ValueError):
    """The bytes are not decodable audio; the message is the row's error reason."""


def check_declared(rate: float, seconds: float | None, min_sample_rate: int, max_seconds: float | None) -> None:
    """Refuse, before decoding, a header whose rate or length would make decoding unbounded."""
    if rate < min_sample_rate:
        raise AudioDecodeError(f"declared sample rate {rate:g} Hz is below {min_sample_rate} Hz "
                               "(decode.min_sample_rate)")
    if max_seconds is not None and seconds is not None and seconds > max_seconds:
        raise AudioDecodeError(f"declared length {seconds:.0f} s is over {max_seconds:.0f} s")


def _decode_soundfile(data: bytes, min_rate: int, max_seconds: float | None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with sf.SoundFile(io.BytesIO(data)) as handle:
        check_declared(handle.samplerate, handle.frames / handle.samplerate, min_rate, max_seconds)
        samples = handle.read(dtype="float32", always_2d=True)
    return samples.mean(axis=1), int(handle.samplerate)


def _decode_av(data: bytes, min_rate: int, max_seconds: float | None) -> tuple[np.ndarray, int]:
    import av

    with av.open(io.BytesIO(data)) as container:
        if not container.streams.audio:
            raise AudioDecodeError("no audio stream in container")
        stream = container.streams.audio[0]
        declared = float(container.duration) / av.time_base if container.duration else None
        check_declared(stream.rate or 0, declared, min_rate, max_seconds)
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


def decode_audio(data: bytes, min_sample_rate: int = DEFAULT_MIN_SAMPLE_RATE,
                 max_seconds: float | None = None) -> np.ndarray:
    """Bytes of wav/flac/ogg/mp3 (anything libsndfile or FFmpeg reads) -> 16 kHz mono float32.

    The declared rate (and, given max_seconds, the declared length) is checked before decoding.
    """
    if not data:
        raise AudioDecodeError("empty file")
    try:
        samples, rate = _decode_soundfile(data, min_sample_rate, max_seconds)
    except AudioDecodeError:
        raise
    except Exception as first:  # libsndfile refuses some mp3/ogg variants; FFmpeg is the fallback
        try:
            samples, rate = _decode_av(data, min_sample_rate, max_seconds)
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
