"""Exactly-once Parquet output on a local path or s3://.

Each write task produces one file whose name is a digest of the utterance_ids it holds, so a
retried task overwrites its own file instead of adding a duplicate. Every part is written to a
hidden temporary name (``.tmp-*``, which readers skip), read back, and only then committed under
its final name: by rename on local disk, by a server-side copy on S3 (an interrupted upload never
leaves a partial object under a ``part-*`` name). A failed write is retried
(``storage.io_attempts``). One run writes an output at a time (ray_ser/io/lease.py), which is what
makes the following safe:

- ``scan_progress`` says which inputs are complete, which segments of partially written inputs
  to skip, and which inputs to label again (their rows are transient errors, or any errors with
  ``--retry-errors``). A part that cannot be read (0 bytes, truncated, not Parquet) is moved to
  ``_quarantine/`` with a log line; its inputs count as not written, so they are labelled again.
- ``purge_inputs`` rewrites, in place and atomically, each part holding rows of inputs about to be
  labelled again, without those rows: at any moment each row is in the output at most once.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ray_ser.core.errors import with_retries
from ray_ser.io.storage import filesystem_for, is_s3
from ray_ser.schema import PERMANENT, STATUS_ERROR, TRANSIENT

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs

    from ray_ser.config import StorageConfig

__all__ = ["Progress", "part_name", "write_part", "read_output", "scan_progress", "purge_inputs",
           "remove_temp_files", "list_parts", "QUARANTINE_DIR"]

# pyarrow.dataset (and pandas, Spark) skip names starting with "." or "_": temp files, the lease,
# the quarantine.
_TEMP_PREFIX = ".tmp-"
QUARANTINE_DIR = "_quarantine"
_KEY_COLUMNS = ("utterance_id", "input_id", "segment_count", "status", "error_kind")
log = logging.getLogger("ray_ser.sink")


def part_name(utterance_ids: list[str]) -> str:
    digest = hashlib.sha1("\n".join(sorted(utterance_ids)).encode()).hexdigest()[:20]
    return f"part-{digest}.parquet"


def _retrying(storage: StorageConfig, call):
    return with_retries(call, storage.io_attempts, storage.io_backoff_s)


def _commit(table: pa.Table, fs: pyarrow.fs.FileSystem, s3: bool, root: str, name: str, codec: str | None) -> None:
    """Write under a temporary name, check it reads back, then give it its final name."""
    import pyarrow.parquet as pq

    final = f"{root}/{name}"
    temp = f"{root}/{_TEMP_PREFIX}{uuid.uuid4().hex}-{name}"
    try:
        pq.write_table(table, temp, filesystem=fs, compression=codec)
        with fs.open_input_file(temp) as handle:
            written = pq.read_metadata(handle).num_rows
        if written != table.num_rows:
            raise OSError(f"{temp} reads back {written} rows, not {table.num_rows}")
        if s3:
            fs.copy_file(temp, final)  # a server-side copy: the final key holds all of it or nothing new
        else:
            fs.move(temp, final)  # rename(2) replaces atomically
    finally:
        try:
            fs.delete_file(temp)
        except OSError:
            pass  # moved already, or never created


def write_part(table: pa.Table, output_uri: str, storage: StorageConfig, compression: str = "zstd") -> str:
    """Write one part file atomically (retrying transient failures) and return its name."""
    fs, root = filesystem_for(output_uri, storage)
    name = part_name(table.column("utterance_id").to_pylist())
    codec = None if compression == "none" else compression

    def attempt() -> None:
        fs.create_dir(root, recursive=True)
        _commit(table, fs, is_s3(output_uri), root, name, codec)

    _retrying(storage, attempt)
    return name


def list_parts(fs: pyarrow.fs.FileSystem, root: str) -> list[str]:
    """Paths of the committed parts directly under root, sorted."""
    import pyarrow.fs as pafs

    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        return []
    selector = pafs.FileSelector(root, recursive=False, allow_not_found=True)
    return sorted(f.path for f in fs.get_file_info(selector)
                  if f.type == pafs.FileType.File and f.base_name.startswith("part-")
                  and f.base_name.endswith(".parquet"))


def read_output(output_uri: str, storage: StorageConfig, columns: list[str] | None = None) -> pa.Table | None:
    """All committed rows under output_uri (None when nothing was written yet)."""
    import pyarrow.dataset as ds

    fs, root = filesystem_for(output_uri, storage)
    files = list_parts(fs, root)
    if not files:
        return None
    dataset = ds.dataset(files, format="parquet", filesystem=fs)
    present = [c for c in (columns or dataset.schema.names) if c in dataset.schema.names]
    return dataset.to_table(columns=present)


@dataclass(frozen=True)
class Progress:
    """What earlier runs wrote, and what this run has to do about it."""

    # Inputs with every row written and none to retry: an Arrow array, not a Python set (millions).
    complete_inputs: pa.Array | None = None
    # Segments already written for inputs that run again because a segment is missing.
    partial_segment_ids: frozenset[str] = frozenset()
    # Inputs whose rows are errors to try again: purged (purge_inputs), then labelled again.
    retry_inputs: frozenset[str] = frozenset()
    rows: int = 0
    quarantined: tuple[str, ...] = ()
    duplicate_rows: int = 0
    # part path -> its utterance_ids of retry inputs (what purge_inputs removes)
    purge: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def complete_count(self) -> int:
        return 0 if self.complete_inputs is None else len(self.complete_inputs)


def _read_part(fs: pyarrow.fs.FileSystem, path: str, storage: StorageConfig, columns=None) -> pa.Table:
    """A part's rows. Transient storage failures are retried and raised; any other failure means the
    bytes are not a Parquet file (ValueError)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def fetch() -> bytes:
        with fs.open_input_stream(path) as handle:
            return handle.read()

    data = _retrying(storage, fetch)
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        names = parquet.schema_arrow.names
        table = parquet.read(columns=[c for c in columns if c in names] if columns else None)
    except Exception as exc:
        raise ValueError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    for name in columns or ():
        if name not in table.column_names:  # outputs written before the column existed
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    return table.select(list(columns)) if columns else table


def _quarantine(fs: pyarrow.fs.FileSystem, root: str, path: str, reason: str) -> str:
    import time

    name = path.rsplit("/", 1)[-1]
    target = f"{root}/{QUARANTINE_DIR}/{name}.{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    fs.create_dir(f"{root}/{QUARANTINE_DIR}", recursive=True)
    fs.copy_file(path, target)
    fs.delete_file(path)
    log.warning("quarantined unreadable part %s (%s) as %s; its inputs will be labelled again", path, reason,
                target)
    return target


def scan_progress(output_uri: str, storage: StorageConfig, retry_errors: bool = False) -> Progress:
    """What is already written, moving unreadable parts aside (only under the output's lease)."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.compute as pc

    fs, root = filesystem_for(output_uri, storage)
    parts = list_parts(fs, root)

    def scan(path: str):
        try:
            return path, _read_part(fs, path, storage, _KEY_COLUMNS), None
        except ValueError as exc:
            return path, None, str(exc)

    with ThreadPoolExecutor(max_workers=16) as pool:
        scanned = list(pool.map(scan, parts))
    quarantined = tuple(_quarantine(fs, root, path, reason) for path, table, reason in scanned if table is None)
    tables = [t.append_column("part", pa.array([p] * t.num_rows, pa.string()))
              for p, t, _ in scanned if t is not None and t.num_rows]
    if not tables:
        return Progress(quarantined=quarantined)
    rows = pa.concat_tables(tables).cast(pa.schema([
        ("utterance_id", pa.string()), ("input_id", pa.string()), ("segment_count", pa.int32()),
        ("status", pa.string()), ("error_kind", pa.string()), ("part", pa.string())]))
    is_error = pc.fill_null(pc.equal(rows.column("status"), STATUS_ERROR), False)
    kind = pc.fill_null(rows.column("error_kind"), PERMANENT)  # outputs older than the column: kept
    retry = is_error if retry_errors else pc.and_(is_error, pc.equal(kind, TRANSIENT))
    rows = rows.append_column("retry", retry)

    by_input = rows.group_by("input_id").aggregate([
        ("utterance_id", "count_distinct"), ("segment_count", "max"), ("retry", "any")])
    retried = pc.fill_null(by_input.column("retry_any"), False)
    expected = pc.max_element_wise(pc.fill_null(by_input.column("segment_count_max"), 1), 1)
    written_all = pc.greater_equal(by_input.column("utterance_id_count_distinct"), expected)
    complete = by_input.filter(pc.and_(written_all, pc.invert(retried))).column("input_id")
    retry_inputs = by_input.filter(retried).column("input_id")
    partial = by_input.filter(pc.and_(pc.invert(written_all), pc.invert(retried))).column("input_id")

    in_retry = pc.is_in(rows.column("input_id"), value_set=retry_inputs.combine_chunks())
    purge: dict[str, set[str]] = {}
    for uid, part in zip(*(rows.filter(in_retry).column(c).to_pylist() for c in ("utterance_id", "part"))):
        purge.setdefault(part, set()).add(uid)
    in_partial = pc.is_in(rows.column("input_id"), value_set=partial.combine_chunks())
    duplicates = rows.num_rows - pc.count_distinct(rows.column("utterance_id")).as_py()
    if duplicates:
        log.warning("%s holds %d duplicate utterance_id rows (written before runs took a lease?)", output_uri,
                    duplicates)
    return Progress(
        complete_inputs=complete.combine_chunks(),
        partial_segment_ids=frozenset(rows.filter(in_partial).column("utterance_id").to_pylist()),
        retry_inputs=frozenset(retry_inputs.to_pylist()), rows=rows.num_rows, quarantined=quarantined,
        duplicate_rows=duplicates,
        purge={p: frozenset(ids) for p, ids in purge.items()})


def purge_inputs(output_uri: str, storage: StorageConfig, progress: Progress, compression: str = "zstd") -> int:
    """Remove the rows of progress.retry_inputs from their parts (each part rewritten atomically in place,
    or deleted when nothing is left); returns the rows removed."""
    import pyarrow as pa
    import pyarrow.compute as pc

    fs, root = filesystem_for(output_uri, storage)
    removed = 0
    for path, ids in sorted(progress.purge.items()):
        table = _read_part(fs, path, storage)
        keep = pc.invert(pc.is_in(table.column("utterance_id"), value_set=pa.array(sorted(ids), pa.string())))
        kept = table.filter(keep)
        removed += table.num_rows - kept.num_rows
        if kept.num_rows:
            codec = None if compression == "none" else compression
            _retrying(storage, lambda: _commit(kept, fs, is_s3(output_uri), root, path.rsplit("/", 1)[-1], codec))
        else:
            _retrying(storage, lambda: fs.delete_file(path))
    return removed


def remove_temp_files(output_uri: str, storage: StorageConfig) -> int:
    """Delete temporary files that killed writers left behind (only under the output's lease)."""
    import pyarrow.fs as pafs

    fs, root = filesystem_for(output_uri, storage)
    if fs.get_file_info(root).type == pafs.FileType.NotFound:
        return 0
    stale = [f.path for f in fs.get_file_info(pafs.FileSelector(root, recursive=False, allow_not_found=True))
             if f.type == pafs.FileType.File and f.base_name.startswith(_TEMP_PREFIX)]
    for path in stale:
        fs.delete_file(path)
    return len(stale)
