"""Sink: conform each batch to the output schema and write it as one atomic Parquet part."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray_ser.io.sink import write_part
from ray_ser.schema import STATUS_OK, conform, output_schema

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config import StorageConfig

__all__ = ["write_batch"]


def write_batch(batch: pa.Table, *, output_uri: str, storage: StorageConfig, compression: str,
                run_id: str, branches: tuple[str, ...] = ()) -> pa.Table:
    """Write the batch; return one summary row (file, rows, ok, audio seconds) for the driver."""
    import pyarrow as pa
    import pyarrow.compute as pc

    batch = batch.append_column("run_id", pa.array([run_id] * batch.num_rows, pa.string()))
    table = conform(batch, output_schema(branches))
    name = write_part(table, output_uri, storage, compression) if table.num_rows else ""
    ok = pc.sum(pc.equal(table.column("status"), STATUS_OK)).as_py() or 0
    seconds = pc.sum(table.column("duration")).as_py() or 0.0
    return pa.table({"file": [name], "rows": [table.num_rows], "ok": [ok], "audio_s": [float(seconds)]})
