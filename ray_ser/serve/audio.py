"""Decoding a client's audio with bounded memory: 16 kHz mono float32, never more than the longest clip allowed.

The duration is checked from the container's header before anything is decoded, where the format
says it (WAV, FLAC, OGG: a WAV of 400 KB that declares 100 Hz is 2,000 s and is refused at once).
Decoding then runs block by block through a streaming resampler, counting the output, so a header
that lies, or a compressed file that expands, stops at the limit: no request allocates more than
max_clip_seconds of 16 kHz samples plus one block. The samples equal what the labeling job's
decoder (ray_ser.io.audio.decode_audio) gives for the same file: the same mono mix-down and the
same soxr resampler, whose streaming output is identical to its one-shot output.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from ray_ser.schema import SAMPLE_RATE
from ray_ser.serve.http import ClientError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["decode_clip", "MIN_SAMPLE_RATE"]

# Below telephone band-width there is no speech left to label; such a rate is a broken or hostile header.
MIN_SAMPLE_RATE = 4000
_BLOCK_SAMPLES = 1 << 16  # samples (all channels) read per block


def _too_long(seconds: float | None, limit: float) -> ClientError:
    length = f"{seconds:.1f} s" if seconds is not None else f"longer than {limit:g} s"
    return ClientError(413, f"clip is {length}; this endpoint takes at most {limit:g} s (use the labeling job "
                            "for long audio)")


class _Bounded:
    """Collects 16 kHz mono blocks, refusing the clip as soon as they pass the limit."""

    def __init__(self, source_rate: int, max_seconds: float) -> None:
        import soxr

        self.max_seconds = max_seconds
        self.limit = int(max_seconds * SAMPLE_RATE)
        self.count = 0
        self.blocks: list[np.ndarray] = []
        self.resampler = None if source_rate == SAMPLE_RATE else soxr.ResampleStream(
            source_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def add(self, mono: np.ndarray, last: bool = False) -> None:
        import numpy as np

        if not np.isfinite(mono).all():
            raise ClientError(422, "audio contains NaN or infinite samples")
        out = mono if self.resampler is None else self.resampler.resample_chunk(mono, last=last)
        self.count += out.size
        if self.count > self.limit:
            raise _too_long(None, self.max_seconds)
        self.blocks.append(out)

    def samples(self) -> np.ndarray:
        import numpy as np

        if self.resampler is not None:
            self.add(np.zeros(0, dtype=np.float32), last=True)
        return np.ascontiguousarray(np.concatenate(self.blocks) if self.blocks else np.zeros(0, np.float32),
                                    dtype=np.float32)


def _decode_soundfile(data: bytes, max_seconds: float) -> np.ndarray | None:
    """libsndfile's formats with their header checked first; None when libsndfile does not read the data."""
    import soundfile as sf

    try:
        handle = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    with handle:
        rate, channels, frames = int(handle.samplerate), int(handle.channels), int(handle.frames)
        if rate <= 0 or channels <= 0:
            raise ClientError(422, "the audio header declares no sample rate or no channels")
        if frames > 0 and frames / rate > max_seconds:
            raise _too_long(frames / rate, max_seconds)
        if rate < MIN_SAMPLE_RATE:
            raise ClientError(422, f"sample rate {rate} Hz is below {MIN_SAMPLE_RATE} Hz")
        bounded = _Bounded(rate, max_seconds)
        block = max(1, _BLOCK_SAMPLES // channels)
        try:
            while True:
                chunk = handle.read(block, dtype="float32", always_2d=True)
                if not len(chunk):
                    break
                bounded.add(chunk.mean(axis=1))
        except sf.LibsndfileError as exc:
            raise ClientError(422, f"audio could not be decoded: {str(exc).split(': ', 1)[-1][:120]}") from None
    return bounded.samples()


def _decode_av(data: bytes, max_seconds: float) -> np.ndarray:
    """What libsndfile does not read (AAC, Opus in WebM, ...), through FFmpeg, resampled as it decodes."""
    import av

    try:
        container = av.open(io.BytesIO(data))
    except Exception as exc:  # FFmpeg's own error classes vary by version
        raise ClientError(422, f"audio could not be decoded ({type(exc).__name__})") from None
    with container:
        if not container.streams.audio:
            raise ClientError(422, "no audio stream in the file")
        if container.duration is not None and container.duration / 1_000_000 > max_seconds:
            raise _too_long(container.duration / 1_000_000, max_seconds)
        bounded = _Bounded(SAMPLE_RATE, max_seconds)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    bounded.add(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                bounded.add(out.to_ndarray().reshape(-1))
        except ClientError:
            raise
        except Exception as exc:
            raise ClientError(422, f"audio could not be decoded ({type(exc).__name__})") from None
    return bounded.samples()


def decode_clip(data: bytes, max_seconds: float, min_seconds: float = 0.1) -> np.ndarray:
    """16 kHz mono float32 samples of an audio file, or ClientError: 413 past max_seconds, 422 when the
    bytes are not audio or hold less than min_seconds of it."""
    samples = _decode_soundfile(data, max_seconds)
    if samples is None:
        samples = _decode_av(data, max_seconds)
    seconds = samples.size / SAMPLE_RATE
    if seconds < min_seconds:
        raise ClientError(422, f"clip is {seconds * 1000:.0f} ms; at least {min_seconds * 1000:.0f} ms of audio "
                               "is needed")
    return samples
