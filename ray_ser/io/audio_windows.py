"""Reading audio a window at a time, so a recording's length never decides a worker's memory.

``probe`` reads only the header (sample rate, channels, declared length) of a seekable source: an
in-memory file, a local file or an S3 object opened for random access. ``windows`` yields the
[start, end) seconds of the source as consecutive 16 kHz mono float32 chunks of at most
``window_s`` seconds, resampled as one continuous stream (no seams at chunk borders).
libsndfile reads wav/flac/ogg; anything else goes through FFmpeg (PyAV).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ray_ser.io.audio import TARGET_SAMPLE_RATE, AudioDecodeError

__all__ = ["AudioInfo", "probe", "windows", "read_span"]


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: float
    channels: int
    seconds: float | None       # declared length (None when the container does not say)
    backend: str                # "soundfile" or "av"


def _rewind(source: Any) -> None:
    source.seek(0)


def probe(source: Any) -> AudioInfo:
    """The header of a seekable source, or AudioDecodeError when neither decoder can read it."""
    import soundfile as sf

    try:
        _rewind(source)
        info = sf.info(source)
        return AudioInfo(float(info.samplerate), int(info.channels), info.frames / info.samplerate, "soundfile")
    except Exception as first:
        try:
            import av

            _rewind(source)
            with av.open(source) as container:
                if not container.streams.audio:
                    raise AudioDecodeError("no audio stream in container")
                stream = container.streams.audio[0]
                seconds = float(container.duration) / av.time_base if container.duration else None
                return AudioInfo(float(stream.rate or 0), int(stream.channels or 1), seconds, "av")
        except AudioDecodeError:
            raise
        except Exception as second:
            reason = str(first).split(": ", 1)[-1]
            raise AudioDecodeError(
                f"not decodable audio (libsndfile: {reason} ffmpeg: {type(second).__name__})") from None
        finally:
            _rewind(source)


# Source samples read per call: small against a window, so a window is the largest thing held.
_READ_S = 5.0


def _soundfile_chunks(source: Any, start: float, end: float | None) -> Iterator[np.ndarray]:
    """Source-rate mono blocks of [start, end), _READ_S seconds each."""
    import soundfile as sf

    _rewind(source)
    with sf.SoundFile(source) as handle:
        first = int(round(start * handle.samplerate))
        last = handle.frames if end is None else min(handle.frames, int(round(end * handle.samplerate)))
        if first:
            handle.seek(min(first, handle.frames))
        step = max(1, int(_READ_S * handle.samplerate))
        position = first
        while position < last:
            block = handle.read(min(step, last - position), dtype="float32", always_2d=True)
            if not len(block):
                break
            position += len(block)
            yield block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)


def _av_chunks(source: Any, start: float, end: float | None, window_s: float) -> Iterator[np.ndarray]:
    """16 kHz mono blocks of [start, end) of about window_s, through FFmpeg's resampler."""
    import av

    _rewind(source)
    step = int(window_s * TARGET_SAMPLE_RATE)
    skip = int(round(start * TARGET_SAMPLE_RATE))
    remaining = None if end is None else max(0, int(round((end - start) * TARGET_SAMPLE_RATE)))
    pending: list[np.ndarray] = []
    held = 0
    with av.open(source) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_SAMPLE_RATE)
        frames = (out for frame in container.decode(container.streams.audio[0]) for out in resampler.resample(frame))
        for out in _chain(frames, resampler):
            samples = out.to_ndarray().reshape(-1)
            if skip:
                dropped = min(skip, samples.size)
                samples, skip = samples[dropped:], skip - dropped
            if remaining is not None:
                samples = samples[:remaining]
                remaining -= samples.size
            if samples.size:
                pending.append(samples)
                held += samples.size
            while held >= step:
                joined = np.concatenate(pending)
                yield joined[:step]
                pending, held = [joined[step:]], joined.size - step
            if remaining == 0:
                break
    if held:
        yield np.concatenate(pending)


def _chain(frames, resampler):
    yield from frames
    yield from resampler.resample(None)


def _resampled(source: Any, info: AudioInfo, start: float, end: float | None) -> Iterator[np.ndarray]:
    """16 kHz mono blocks of [start, end), resampled as one continuous stream."""
    if info.backend == "av":
        yield from _av_chunks(source, start, end, _READ_S)
        return
    blocks = _soundfile_chunks(source, start, end)
    if info.sample_rate == TARGET_SAMPLE_RATE:
        yield from blocks
        return
    import soxr

    stream = soxr.ResampleStream(info.sample_rate, TARGET_SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    for block in blocks:
        yield stream.resample_chunk(block)
    yield stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def windows(source: Any, info: AudioInfo, window_s: float, start: float | None = None,
            end: float | None = None) -> Iterator[np.ndarray]:
    """[start, end) of the source as 16 kHz mono float32 chunks of window_s seconds (the last one shorter),
    in order; what is held at a time is about one window."""
    size = max(1, int(window_s * TARGET_SAMPLE_RATE))
    pending: list[np.ndarray] = []
    held = 0
    for block in _resampled(source, info, 0.0 if start is None else float(start), end):
        if block.size:
            pending.append(np.asarray(block, dtype=np.float32))
            held += block.size
        if held >= size:
            joined = np.concatenate(pending)
            pending = []
            for offset in range(0, joined.size - size + 1, size):
                yield joined[offset:offset + size]
            rest = joined[joined.size - joined.size % size:]
            pending, held = ([rest.copy()] if rest.size else []), rest.size
    if held:
        yield np.concatenate(pending)


def read_span(source: Any, info: AudioInfo, start: float | None, end: float | None,
              window_s: float) -> np.ndarray:
    """[start, end) of the source as one 16 kHz mono array (the caller bounds its length first)."""
    parts = list(windows(source, info, window_s, start, end))
    samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    if not np.isfinite(samples).all():
        raise AudioDecodeError("audio contains NaN or infinite samples")
    return samples
