"""Exactly-once Parquet output on a local path or s3://.

Each write task produces one file whose name is a digest of the utterance_ids it
holds, written atomically (temp file + rename locally; S3 objects appear only
when complete). So a retried task overwrites its own file instead of adding a
duplicate, and a crash mid-write leaves at most a hidden temp file that readers
ignore. On restart, ``scan_progress`` says which inputs are complete and which
segments of partially written inputs to skip.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ray_ser.io.storage import filesystem_for, is_s3

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config import StorageConfig

__all__ = ["Progress", "part_name", "write_part", "read_output", "scan_progress"]

# pyarrow.dataset skips names starting with these, which is what hides temp files.
_HIDDEN_PREFIX = "."


def part_name(utterance_ids: list[str]) -> str:
    digest = hashlib.sha1("\n".join(sorted(utterance_ids)).encode()).hexdigest()[:20]
    return f"part-{digest}.parquet"


def write_part(table: pa.Table, output_uri: str, storage: StorageConfig, compression: str = "zstd") -> str:
    """Write one part file atomically and return its name."""
    import pyarrow.parquet as pq

    fs, root = filesystem_for(output_uri, storage)
    name = part_name(table.column("utterance_id").to_pylist())
    final = f"{root}/{name}"
    codec = None if compression == "none" else compression
    if is_s3(output_uri):
        fs.create_dir(root, recursive=True)
        pq.write_table(table, final, filesystem=fs, compression=codec)
        return name
    fs.create_dir(root, recursive=True)
    temp = f"{root}/{_HIDDEN_PREFIX}tmp-{uuid.uuid4().hex}-{name}"
    pq.write_table(table, temp, filesystem=fs, compression=codec)
    fs.move(temp, final)
    return name


def read_output(output_uri: str, storage: StorageConfig, columns: list[str] | None = None) -> pa.Table | None:
    """All committed rows under output_uri (None when nothing was written yet)."""
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    fs, root = filesystem_for(output_uri, storage)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return None
    selector = pafs.FileSelector(root, recursive=False, allow_not_found=True)
    files = sorted(
        f.path for f in fs.get_file_info(selector)
        if f.type == pafs.FileType.File and f.base_name.startswith("part-") and f.base_name.endswith(".parquet")
    )
    if not files:
        return None
    dataset = ds.dataset(files, format="parquet", filesystem=fs)
    present = [c for c in (columns or dataset.schema.names) if c in dataset.schema.names]
    return dataset.to_table(columns=present)


@dataclass(frozen=True)
class Progress:
    """What an earlier run already wrote."""

    complete_inputs: frozenset[str] = frozenset()
    # Segments already written for inputs that run again because a segment is missing.
    partial_segment_ids: frozenset[str] = frozenset()
    rows: int = 0


def scan_progress(output_uri: str, storage: StorageConfig) -> Progress:
    table = read_output(output_uri, storage, ["utterance_id", "input_id", "segment_count"])
    if table is None or table.num_rows == 0:
        return Progress()
    ids = table.column("utterance_id").to_pylist()
    inputs = table.column("input_id").to_pylist()
    counts = table.column("segment_count").to_pylist()
    written: dict[str, set[str]] = {}
    expected: dict[str, int] = {}
    for uid, input_id, count in zip(ids, inputs, counts):
        written.setdefault(input_id, set()).add(uid)
        expected[input_id] = count or 1
    complete = {i for i, seen in written.items() if len(seen) >= expected[i]}
    partial_ids = {uid for i, seen in written.items() if i not in complete for uid in seen}
    return Progress(complete_inputs=frozenset(complete), partial_segment_ids=frozenset(partial_ids), rows=len(ids))
