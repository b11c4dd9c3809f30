"""Decode: path -> 16 kHz mono audio rows, long recordings split into VAD segments.

A row that cannot be read or decoded continues with status="error" and a reason;
it is never dropped and never raises. An input's speaker (null when none) passes through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray_ser.io.audio import TARGET_SAMPLE_RATE, decode_audio, slice_seconds, to_bytes
from ray_ser.io.storage import FileReader
from ray_ser.metrics import StageMetrics
from ray_ser.schema import STATUS_ERROR, STATUS_OK
from ray_ser.stages.base import Stage, StagePlan, error_reason

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config import DecodeConfig, LabelConfig, StorageConfig

__all__ = ["DecodeStage", "segment_id"]

# The inputs table (ray_ser/io/manifest.py) has these; decode replaces them with one row per clip.
INPUT_COLUMNS = ("input_id", "path", "start", "end", "speaker", "manifest_error")


def segment_id(input_id: str, start_s: float) -> str:
    return f"{input_id}@{int(round(start_s * 1000))}"


class DecodeStage(Stage):
    name = "decode"
    requires = ("input_id", "path", "start", "end", "manifest_error")
    adds = ("utterance_id", "source", "duration", "segment_index", "segment_count", "audio", "status", "error")
    removes = ("path", "manifest_error")

    def __init__(self, storage: StorageConfig, decode: DecodeConfig, skip_ids: frozenset[str] = frozenset()) -> None:
        from ray_ser.models.asr.vad import SileroSegmenter

        self.storage = storage
        self.max_segment_s = decode.max_segment_s
        self.skip_ids = skip_ids
        self.segmenter = SileroSegmenter.load(decode)
        self.reader = FileReader(storage)
        self.metrics = StageMetrics("decode")

    def _segments(self, samples, offset: float) -> list[tuple[float, float]]:
        """(start, end) in source seconds; one span unless the audio is longer than a segment."""
        duration = samples.size / TARGET_SAMPLE_RATE
        if duration <= self.max_segment_s:
            return [(offset, offset + duration)]
        found = self.segmenter.predict_batch([samples])[0]
        return [(offset + s.start, offset + s.end) for s in found]

    @classmethod
    def plan(cls, cfg: LabelConfig, skip_ids: frozenset[str] = frozenset()) -> StagePlan:
        return StagePlan(cls.name, cls, {"storage": cfg.storage, "decode": cfg.decode, "skip_ids": skip_ids},
                         cls.requires, cls.adds, cfg.decode.resources, removes=cls.removes)

    def process(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        self.metrics.start()
        out: dict[str, list] = {name: [] for name in (
            "utterance_id", "input_id", "source", "speaker", "start", "end", "duration",
            "segment_index", "segment_count", "audio", "status", "error")}
        speaker = None

        def emit(uid, input_id, source, start, end, duration, index, count, audio, error):
            out["utterance_id"].append(uid)
            out["input_id"].append(input_id)
            out["source"].append(source)
            out["speaker"].append(speaker)
            out["start"].append(start)
            out["end"].append(end)
            out["duration"].append(duration)
            out["segment_index"].append(index)
            out["segment_count"].append(count)
            out["audio"].append(audio)
            out["status"].append(STATUS_ERROR if error else STATUS_OK)
            out["error"].append(error)

        for row in batch.to_pylist():
            input_id, path, start, end = row["input_id"], row["path"], row["start"], row["end"]
            speaker = row.get("speaker")
            if row["manifest_error"]:
                emit(input_id, input_id, path, start, end, None, 0, 1, None, row["manifest_error"])
                continue
            try:
                samples = slice_seconds(decode_audio(self.reader.read(path)), start, end)
                spans = self._segments(samples, start or 0.0)
            except Exception as exc:  # any unreadable file becomes an error row
                emit(input_id, input_id, path, start, end, None, 0, 1, None, error_reason("decode", exc))
                continue
            if not spans:
                duration = samples.size / TARGET_SAMPLE_RATE
                emit(input_id, input_id, path, start, end, duration, 0, 1, None, "decode: no speech found by VAD")
                continue
            base = start or 0.0
            for index, (seg_start, seg_end) in enumerate(spans):
                uid = input_id if len(spans) == 1 else segment_id(input_id, seg_start)
                if uid in self.skip_ids:
                    continue
                lo = int(round((seg_start - base) * TARGET_SAMPLE_RATE))
                hi = int(round((seg_end - base) * TARGET_SAMPLE_RATE))
                clip = samples[lo:hi]
                is_whole = len(spans) == 1
                emit(uid, input_id, path,
                     start if is_whole else seg_start, end if is_whole else seg_end,
                     clip.size / TARGET_SAMPLE_RATE, index, len(spans), to_bytes(clip), None)
        self.metrics.finish(out["status"], sum(d for d in out["duration"] if d))
        return pa.table(out, schema=pa.schema([
            ("utterance_id", pa.string()), ("input_id", pa.string()), ("source", pa.string()),
            ("speaker", pa.string()), ("start", pa.float64()), ("end", pa.float64()), ("duration", pa.float64()),
            ("segment_index", pa.int32()), ("segment_count", pa.int32()), ("audio", pa.large_binary()),
            ("status", pa.string()), ("error", pa.string())]))
