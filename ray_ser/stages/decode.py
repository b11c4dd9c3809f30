"""Decode: path -> 16 kHz mono audio rows, long recordings split into VAD segments.

A row that cannot be read or decoded continues with status="error", a reason and its kind
(transient: storage trouble, retried in the job and by the next run; permanent: the file itself);
it is never dropped and never raises. An input's speaker (null when none) passes through, and so
does a manifest warning (into ``warnings``).

Work per input is bounded before it starts: the header's sample rate is checked before
resampling (decode.min_sample_rate), a file is read whole only when it is small, and a recording
whose declared length is over decode.max_input_s is never held whole: decode reads it a window at
a time to find its speech (VAD) and emits its segment rows without audio; the next step,
``cut_segments`` (tasks), reads each segment's span from the source. So every call returns one
bounded table, whatever the recordings' lengths.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from ray_ser.core.errors import error_kind, with_retries
from ray_ser.io.audio import TARGET_SAMPLE_RATE, AudioDecodeError, check_declared, to_bytes
from ray_ser.io.audio_windows import probe, read_span, windows
from ray_ser.io.storage import FileReader
from ray_ser.metrics import StageMetrics
from ray_ser.schema import PERMANENT, STATUS_ERROR, STATUS_OK
from ray_ser.stages.base import Stage, StagePlan, error_reason

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from ray_ser.config import DecodeConfig, LabelConfig, StorageConfig

__all__ = ["DecodeStage", "segment_id", "DECODE_COLUMNS", "cut_segments", "cut_plan", "decode_plans"]

# The inputs table (ray_ser/io/manifest.py) has these; decode replaces them with one row per clip.
INPUT_COLUMNS = ("input_id", "path", "start", "end", "speaker", "language_hint", "manifest_error", "manifest_warning")
DECODE_COLUMNS = ("utterance_id", "input_id", "source", "speaker", "language_hint", "start", "end", "duration",
                  "segment_index", "segment_count", "audio", "status", "error", "error_kind", "warnings")


def segment_id(input_id: str, start_s: float) -> str:
    return f"{input_id}@{int(round(start_s * 1000))}"


def _schema() -> pa.Schema:
    import pyarrow as pa

    types = {"start": pa.float64(), "end": pa.float64(), "duration": pa.float64(), "segment_index": pa.int32(),
             "segment_count": pa.int32(), "audio": pa.large_binary()}
    return pa.schema([(name, types.get(name, pa.string())) for name in DECODE_COLUMNS])


class _Rows:
    """Output rows of one piece of the batch, column by column."""

    def __init__(self) -> None:
        self.columns: dict[str, list] = {name: [] for name in DECODE_COLUMNS}
        self.seconds = 0.0

    def add(self, row: dict, uid: str, start, end, duration, index: int, count: int, audio,
            error: str | None = None, kind: str | None = None) -> None:
        values = {"utterance_id": uid, "input_id": row["input_id"], "source": row["path"],
                  "speaker": row.get("speaker"), "language_hint": row.get("language_hint"),
                  "start": start, "end": end, "duration": duration,
                  "segment_index": index, "segment_count": count, "audio": audio,
                  "status": STATUS_ERROR if error else STATUS_OK, "error": error,
                  "error_kind": (kind or PERMANENT) if error else None, "warnings": row.get("manifest_warning")}
        for name, value in values.items():
            self.columns[name].append(value)
        self.seconds += duration or 0.0

    def failed(self, row: dict, error: str, kind: str) -> None:
        self.add(row, row["input_id"], row["start"], row["end"], None, 0, 1, None, error, kind)

    def table(self) -> pa.Table:
        import pyarrow as pa

        return pa.table(self.columns, schema=_schema())


class DecodeStage(Stage):
    name = "decode"
    requires = ("input_id", "path", "start", "end", "manifest_error")
    adds = ("utterance_id", "source", "duration", "segment_index", "segment_count", "audio", "status", "error",
            "error_kind", "warnings")
    removes = ("path", "manifest_error", "manifest_warning")

    def __init__(self, storage: StorageConfig, decode: DecodeConfig, skip_ids: frozenset[str] = frozenset()) -> None:
        from ray_ser.models.asr.vad import SileroSegmenter

        self.storage = storage
        self.max_segment_s = decode.max_segment_s
        self.window_s = decode.max_input_s
        self.min_sample_rate = decode.min_sample_rate
        # A file up to this size is fetched in one read; a bigger one is read a window at a time.
        self.whole_file_bytes = int(decode.max_input_s * TARGET_SAMPLE_RATE * 4)
        self.skip_ids = skip_ids
        self.segmenter = SileroSegmenter.load(decode)
        self.reader = FileReader(storage)
        self.metrics = StageMetrics("decode")

    @classmethod
    def plan(cls, cfg: LabelConfig, skip_ids: frozenset[str] = frozenset()) -> StagePlan:
        return StagePlan(cls.name, cls, {"storage": cfg.storage, "decode": cfg.decode, "skip_ids": skip_ids},
                         cls.requires, cls.adds, cfg.decode.resources, removes=cls.removes)

    def give_up(self, batch: pa.Table, reason: str, kind: str) -> pa.Table:
        rows = _Rows()
        for row in batch.to_pylist():
            rows.failed(row, reason, kind)
        return rows.table()

    def _segments(self, samples: np.ndarray, offset: float) -> list[tuple[float, float]]:
        """(start, end) in source seconds; one span unless the audio is longer than a segment."""
        duration = samples.size / TARGET_SAMPLE_RATE
        if duration <= self.max_segment_s:
            return [(offset, offset + duration)]
        found = self.segmenter.predict_batch([samples])[0]
        return [(offset + s.start, offset + s.end) for s in found]

    def _open(self, path: str):
        """(seekable source, header): small files are fetched in one read, big ones stay remote."""
        handle = self.reader.open(path)
        size = handle.size()
        if size == 0:
            raise AudioDecodeError("empty file")
        source = io.BytesIO(with_retries(lambda: handle.read_at(size, 0), self.storage.io_attempts,
                                         self.storage.io_backoff_s)) if size <= self.whole_file_bytes else handle
        info = probe(source)
        check_declared(info.sample_rate, None, self.min_sample_rate, None)
        return source, info

    @staticmethod
    def _bounds(row: dict, declared: float | None) -> tuple[float, float | None]:
        lo = 0.0 if row["start"] is None else float(row["start"])
        hi = None if row["end"] is None else float(row["end"])
        if lo < 0 or (hi is not None and hi <= lo):
            raise AudioDecodeError(f"bad segment bounds start={row['start']} end={row['end']}")
        if declared is not None and lo >= declared:
            raise AudioDecodeError(f"segment start {lo:.3f}s is past the end of the audio ({declared:.3f}s)")
        return lo, hi

    def process(self, batch: pa.Table) -> pa.Table:
        self.metrics.start()
        rows = _Rows()
        for row in batch.to_pylist():
            if row["manifest_error"]:
                rows.failed(row, row["manifest_error"], PERMANENT)
                continue
            try:
                source, info = self._open(row["path"])
                lo, hi = self._bounds(row, info.seconds)
                end = hi if hi is not None else info.seconds
                if end is None or end - lo > self.window_s:
                    self._long(rows, row, self._speech(source, info, lo, hi))
                    continue
                samples = read_span(source, info, lo, hi, self.window_s)
                if samples.size == 0:
                    raise AudioDecodeError("no audio samples")
                spans = self._segments(samples, lo)
            except Exception as exc:  # any unreadable file becomes an error row
                rows.failed(row, error_reason("decode", exc), error_kind(exc))
                continue
            if not spans:
                rows.add(row, row["input_id"], row["start"], row["end"], samples.size / TARGET_SAMPLE_RATE, 0, 1,
                         None, "decode: no speech found by VAD", PERMANENT)
                continue
            for index, (seg_start, seg_end) in enumerate(spans):
                whole = len(spans) == 1
                uid = row["input_id"] if whole else segment_id(row["input_id"], seg_start)
                if not whole and uid in self.skip_ids:
                    continue
                clip = samples[int(round((seg_start - lo) * TARGET_SAMPLE_RATE)):
                               int(round((seg_end - lo) * TARGET_SAMPLE_RATE))]
                rows.add(row, uid, row["start"] if whole else seg_start, row["end"] if whole else seg_end,
                         clip.size / TARGET_SAMPLE_RATE, index, len(spans), to_bytes(clip))
        self.metrics.finish(rows.columns["status"], rows.seconds)
        return rows.table()

    def _speech(self, source, info, lo: float, hi: float | None) -> list[tuple[float, float]]:
        """A long recording's VAD segments in source seconds, read a window at a time.

        Each window is cut together with the undecided tail of the one before (speech that ran into
        the window's last max_segment_s), so no segment is split at a window border."""
        import numpy as np

        rate, margin = TARGET_SAMPLE_RATE, int(self.max_segment_s * TARGET_SAMPLE_RATE)
        spans: list[tuple[int, int]] = []
        tail, tail_start = np.zeros(0, dtype=np.float32), 0
        chunks = windows(source, info, self.window_s, lo, hi)
        chunk = next(chunks, None)
        while chunk is not None:
            following = next(chunks, None)
            buffer = np.concatenate([tail, chunk])
            end = tail_start + buffer.size
            found = [(tail_start + int(round(s.start * rate)), tail_start + int(round(s.end * rate)))
                     for s in self.segmenter.predict_batch([buffer])[0]]
            horizon = end if following is None else end - margin
            spans += [f for f in found if f[1] <= horizon]
            undecided = [f[0] for f in found if f[1] > horizon]
            cut = max(tail_start, min(undecided + [horizon]))
            tail, tail_start = buffer[cut - tail_start:], cut
            chunk = following
        return [(lo + a / rate, lo + b / rate) for a, b in spans]

    def _long(self, rows: _Rows, row: dict, spans: list[tuple[float, float]]) -> None:
        """A long recording's segment rows, audio left for cut_segments to read."""
        if not spans:
            rows.add(row, row["input_id"], row["start"], row["end"], None, 0, 1, None,
                     "decode: no speech found by VAD", PERMANENT)
            return
        for index, (start, end) in enumerate(spans):
            uid = segment_id(row["input_id"], start)
            if uid not in self.skip_ids:
                rows.add(row, uid, start, end, end - start, index, len(spans), None)


def cut_plan(cfg: LabelConfig) -> StagePlan:
    """The tasks that read long recordings' segments (decode's resources; one task per decode batch)."""
    return StagePlan("cut segments", cut_segments, {"storage": cfg.storage, "window_s": cfg.decode.max_input_s},
                     ("source", "start", "end", "audio", "status", "error", "error_kind", "duration"), (),
                     cfg.decode.resources, batch_size=cfg.decode.resources.batch_size)


def decode_plans(cfg: LabelConfig, skip_ids: frozenset[str] = frozenset()) -> list[StagePlan]:
    """Decode, then the segments of long recordings read from their sources."""
    return [DecodeStage.plan(cfg, skip_ids), cut_plan(cfg)]


def cut_segments(batch: pa.Table, *, storage: StorageConfig, window_s: float) -> pa.Table:
    """Fill in the audio of segment rows decode left without it (spans of long recordings).

    Rows that have audio, or an error, pass unchanged; a span that cannot be read becomes an error row
    of its own (its kind says whether the next run retries it)."""
    import pyarrow as pa

    needs = [i for i, (audio, status) in enumerate(zip(batch.column("audio").to_pylist(),
                                                       batch.column("status").to_pylist()))
             if audio is None and status == STATUS_OK]
    if not needs:
        return batch
    reader = FileReader(storage)
    audio = batch.column("audio").to_pylist()
    status, error, kind = (batch.column(c).to_pylist() for c in ("status", "error", "error_kind"))
    durations = batch.column("duration").to_pylist()
    sources, starts, ends = (batch.column(c).to_pylist() for c in ("source", "start", "end"))
    opened: dict[str, tuple] = {}
    for i in needs:
        try:
            if sources[i] not in opened:
                opened.clear()  # one recording's handle at a time; rows of one recording arrive together
                handle = reader.open(sources[i])
                opened[sources[i]] = (handle, probe(handle))
            handle, info = opened[sources[i]]
            clip = read_span(handle, info, starts[i], ends[i], window_s)
            audio[i], durations[i] = to_bytes(clip), clip.size / TARGET_SAMPLE_RATE
        except Exception as exc:
            status[i], error[i], kind[i] = STATUS_ERROR, error_reason("decode", exc), error_kind(exc)
    for name, values, kind_type in (("audio", audio, pa.large_binary()), ("status", status, pa.string()),
                                    ("error", error, pa.string()), ("error_kind", kind, pa.string()),
                                    ("duration", durations, pa.float64())):
        batch = batch.set_column(batch.schema.get_field_index(name), name, pa.array(values, kind_type))
    return batch
