"""Inputs as manifests: a CSV/JSONL/Parquet file, a local directory or an s3:// prefix.

Whatever the source, the result is one Arrow table with input_id, path, start, end,
speaker and manifest_error. Rows that cannot be keyed or located are kept with a reason,
never dropped, so every input row reaches the output exactly once.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ray_ser.io.storage import filesystem_for, is_s3

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config import StorageConfig

__all__ = ["AUDIO_EXTENSIONS", "MANIFEST_EXTENSIONS", "ManifestError", "InputSet", "read_inputs",
           "read_manifest_table", "resolve_path"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
MANIFEST_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


class ManifestError(ValueError):
    """The manifest as a whole is unusable (missing file or required column)."""


@dataclass(frozen=True)
class InputSet:
    """Normalised inputs plus what normalisation noticed."""

    table: pa.Table
    duplicates_collapsed: int


def read_manifest_table(uri: str, storage: StorageConfig) -> pa.Table:
    """The manifest file as it is (ids and paths read as strings)."""
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    fs, path = filesystem_for(uri, storage)
    lower = path.lower()
    try:
        with fs.open_input_file(path) as handle:
            if lower.endswith(".parquet"):
                return pq.read_table(handle)
            # Ids and paths are strings even when they look like numbers.
            strings = {"utterance_id": "string", "path": "string"}
            if lower.endswith((".jsonl", ".json")):
                import pyarrow as pa

                return pajson.read_json(handle, parse_options=pajson.ParseOptions(
                    explicit_schema=pa.schema([(k, pa.string()) for k in strings]),
                    unexpected_field_behavior="infer"))
            delimiter = "\t" if lower.endswith(".tsv") else ","
            return pacsv.read_csv(
                handle,
                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=pacsv.ConvertOptions(column_types=strings, strings_can_be_null=True),
            )
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {uri}") from None


def _list_audio(uri: str, storage: StorageConfig) -> pa.Table:
    import pyarrow as pa
    import pyarrow.fs as pafs

    fs, root = filesystem_for(uri, storage)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound and not is_s3(uri):
        raise ManifestError(f"input not found: {uri}")
    files = sorted(
        f.path for f in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        if f.type == pafs.FileType.File and f.path.lower().endswith(AUDIO_EXTENSIONS)
    )
    if not files:
        raise ManifestError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {uri}")
    prefix = "s3://" if is_s3(uri) else ""
    ids = [posixpath.splitext(posixpath.relpath(f, root))[0] for f in files]
    return pa.table({"utterance_id": ids, "path": [prefix + f for f in files]})


def resolve_path(path: str | None, base: str) -> str | None:
    """A manifest path made absolute against the manifest's own directory or prefix."""
    if path is None or path == "":
        return None
    if is_s3(path) or posixpath.isabs(path) or "://" in path:
        return path
    return posixpath.join(base, path)


def _float_column(table: pa.Table, name: str) -> list[float | None]:
    import pyarrow as pa

    if name not in table.column_names:
        return [None] * table.num_rows
    values = []
    for raw in table.column(name).cast(pa.string()).to_pylist():
        try:
            values.append(None if raw in (None, "") else float(raw))
        except ValueError:
            values.append(float("nan"))  # reported by the decode stage as bad bounds
    return values


def read_inputs(uri: str, storage: StorageConfig, speaker_column: str = "speaker") -> InputSet:
    """Read and normalise the inputs at uri (manifest file, directory or s3:// prefix).

    speaker is the manifest's speaker_column when it has one, else null.
    """
    import math

    import pyarrow as pa

    is_manifest = uri.lower().endswith(MANIFEST_EXTENSIONS)
    raw = read_manifest_table(uri, storage) if is_manifest else _list_audio(uri, storage)
    missing = [c for c in ("utterance_id", "path") if c not in raw.column_names]
    if missing:
        raise ManifestError(f"manifest {uri} lacks required column(s) {missing}; has {raw.column_names}")
    base = posixpath.dirname(uri) if is_manifest else ""
    ids = raw.column("utterance_id").cast(pa.string()).to_pylist()
    paths = raw.column("path").cast(pa.string()).to_pylist()
    starts, ends = _float_column(raw, "start"), _float_column(raw, "end")
    speakers = (raw.column(speaker_column).cast(pa.string()).to_pylist() if speaker_column in raw.column_names
                else [None] * raw.num_rows)

    seen: set[str] = set()
    out: dict[str, list] = {"input_id": [], "path": [], "start": [], "end": [], "speaker": [], "manifest_error": []}
    duplicates = 0
    for row, (uid, path, start, end, speaker) in enumerate(zip(ids, paths, starts, ends, speakers)):
        error = None
        if uid is None or uid.strip() == "":
            uid, error = f"__row{row}", "manifest: missing utterance_id"
        if uid in seen:
            duplicates += 1  # one output row per id is the contract; the first occurrence wins
            continue
        seen.add(uid)
        resolved = resolve_path(path, base)
        if resolved is None and error is None:
            error = "manifest: missing path"
        if error is None and any(v is not None and math.isnan(v) for v in (start, end)):
            error = "manifest: start/end are not numbers"
        out["input_id"].append(uid)
        out["path"].append(resolved or "")
        out["start"].append(start if start is None or not math.isnan(start) else None)
        out["end"].append(end if end is None or not math.isnan(end) else None)
        out["speaker"].append((speaker.strip() or None) if speaker is not None else None)
        out["manifest_error"].append(error)
    table = pa.table(
        out,
        schema=pa.schema([("input_id", pa.string()), ("path", pa.string()), ("start", pa.float64()),
                          ("end", pa.float64()), ("speaker", pa.string()), ("manifest_error", pa.string())]),
    )
    return InputSet(table=table, duplicates_collapsed=duplicates)
