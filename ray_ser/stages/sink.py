"""Sink: conform each batch to the output schema and write it as one atomic Parquet part."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray_ser.io.sink import write_part
from ray_ser.metrics import StageMetrics, error_kinds, record_sink_file
from ray_ser.schema import STATUS_OK, conform, output_schema
from ray_ser.stages.base import StagePlan

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config import LabelConfig, StorageConfig

__all__ = ["write_batch", "plan", "SUMMARY_COLUMNS"]

# What each write task returns to the driver, one row per Parquet part.
SUMMARY_COLUMNS = ("file", "rows", "ok", "audio_s")


def plan(cfg: LabelConfig, output_uri: str, run_id: str) -> StagePlan:
    """The write tasks: each batch of sink.rows_per_file rows becomes one Parquet part."""
    return StagePlan("sink", write_batch, {"output_uri": output_uri, "storage": cfg.storage,
                                          "compression": cfg.sink.compression, "run_id": run_id,
                                          "branches": tuple(cfg.branches)},
                     ("utterance_id", "status", "duration"), SUMMARY_COLUMNS, cfg.sink.resources,
                     batch_size=cfg.sink.rows_per_file)


def write_batch(batch: pa.Table, *, output_uri: str, storage: StorageConfig, compression: str,
                run_id: str, branches: tuple[str, ...] = ()) -> pa.Table:
    """Write the batch; return one summary row (file, rows, ok, audio seconds) for the driver."""
    import pyarrow as pa
    import pyarrow.compute as pc

    metrics = StageMetrics("sink")
    metrics.start()
    batch = batch.append_column("run_id", pa.array([run_id] * batch.num_rows, pa.string()))
    table = conform(batch, output_schema(branches))
    name = write_part(table, output_uri, storage, compression) if table.num_rows else ""
    ok = pc.sum(pc.equal(table.column("status"), STATUS_OK)).as_py() or 0
    seconds = pc.sum(table.column("duration")).as_py() or 0.0
    statuses = table.column("status").to_pylist()
    metrics.finish(statuses, float(seconds), error_kinds(statuses, table))
    if name:
        record_sink_file(_size(output_uri, storage, name))
    return pa.table({"file": [name], "rows": [table.num_rows], "ok": [ok], "audio_s": [float(seconds)]})


def _size(output_uri: str, storage: StorageConfig, name: str) -> int:
    """Bytes of a written part (0 when the store cannot say: a metric must not fail the write)."""
    from ray_ser.io.storage import filesystem_for

    try:
        fs, root = filesystem_for(output_uri, storage)
        return max(0, fs.get_file_info(f"{root}/{name}").size or 0)
    except Exception:
        return 0
