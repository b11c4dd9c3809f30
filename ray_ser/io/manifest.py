"""Inputs as manifests: a CSV/TSV/JSONL/Parquet file, a local directory or an s3:// prefix.

Whatever the source, the result is one Arrow table with input_id, path, start, end, speaker,
manifest_error and manifest_warning: one row per manifest row, never fewer. A row that cannot be
located or has bad bounds is kept with a reason (an error row in the output); a manifest that
cannot be read at all raises ManifestError naming the file and the line (the CLI exits 2).

Ids are the manifest's and are never made up in a way that could collide. ``@`` marks the ids the
job derives, so a manifest id may not contain it:

- a long recording's VAD segments are ``<id>@<start_ms>`` (ray_ser/stages/decode.py);
- a row without an id is ``@line<n>`` (its line in the manifest);
- with ``manifest.duplicate_ids: keep_each``, the n-th copy of a repeated id is ``<id>@copy<n>``
  (the default, ``error``, stops before any work and names the id and its lines).

A directory's or prefix's ids are the files' paths relative to it, extension included (``a.wav``
and ``a.flac`` are two inputs); ``@`` and ``%`` in them are written ``%40`` and ``%25``.
The manifest is read a block at a time (ray_ser/io/manifest_formats.py).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from ray_ser.io.manifest_formats import LINE, MANIFEST_EXTENSIONS, ManifestError, manifest_blocks
from ray_ser.io.storage import filesystem_for, is_s3, path_in_filesystem

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config import StorageConfig

__all__ = ["AUDIO_EXTENSIONS", "MANIFEST_EXTENSIONS", "ManifestError", "InputSet", "read_inputs",
           "read_manifest_table", "resolve_path", "DERIVED_ID_MARK"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
DERIVED_ID_MARK = "@"


def _input_schema():
    import pyarrow as pa

    return pa.schema([("input_id", pa.string()), ("path", pa.string()), ("start", pa.float64()),
                      ("end", pa.float64()), ("speaker", pa.string()), ("language_hint", pa.string()),
                      ("manifest_error", pa.string()), ("manifest_warning", pa.string()), ("line", pa.int64())])


@dataclass(frozen=True)
class InputSet:
    """Normalised inputs plus what normalisation noticed."""

    table: pa.Table
    duplicate_ids: int  # manifest rows whose id an earlier row already had (kept apart: keep_each)


def read_manifest_table(uri: str, storage: StorageConfig) -> pa.Table:
    """The whole manifest file as strings, every column (training manifests: ids, paths, labels, text)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    fs, path = filesystem_for(uri, storage)
    lower = path.lower()
    try:
        with fs.open_input_file(path) as handle:
            if lower.endswith(".parquet"):
                return pq.read_table(handle)
            strings = {"utterance_id": "string", "path": "string"}
            if lower.endswith((".jsonl", ".json")):
                return pajson.read_json(handle, parse_options=pajson.ParseOptions(
                    explicit_schema=pa.schema([(k, pa.string()) for k in strings]),
                    unexpected_field_behavior="infer"))
            delimiter = "\t" if lower.endswith(".tsv") else ","
            return pacsv.read_csv(
                handle, parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=pacsv.ConvertOptions(column_types=strings, strings_can_be_null=True))
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {uri}") from None
    except (pa.ArrowException, ValueError) as exc:
        raise ManifestError(f"manifest {uri} is not readable: {exc}") from None


def _escape_id(relative: str) -> str:
    return relative.replace("%", "%25").replace(DERIVED_ID_MARK, "%40")


def _local_audio_files(uri: str, root: str) -> list[str]:
    """Audio files under a local directory, refusing names that are not UTF-8 (Arrow strings must be)."""
    import os

    if not os.path.exists(root):
        raise ManifestError(f"input not found: {uri}")
    files = []
    for directory, _, names in os.walk(os.fsencode(root)):
        for name in names:
            full = os.path.join(directory, name)
            try:
                text = full.decode("utf-8")
            except UnicodeDecodeError:
                shown = full.decode("utf-8", errors="backslashreplace")
                raise ManifestError(f"input directory {uri}: file name {shown!r} is not valid UTF-8; rename it "
                                    "(e.g. convmv -f latin1 -t utf8) or list the files in a manifest") from None
            if text.lower().endswith(AUDIO_EXTENSIONS):
                files.append(text)
    return sorted(files)


def _directory_blocks(uri: str, storage: StorageConfig) -> Iterator[pa.Table]:
    import pyarrow as pa
    import pyarrow.fs as pafs

    if is_s3(uri):
        fs, root = filesystem_for(uri, storage)
        files = sorted(f.path for f in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
                       if f.type == pafs.FileType.File and f.path.lower().endswith(AUDIO_EXTENSIONS))
    else:
        root = path_in_filesystem(uri)
        files = _local_audio_files(uri, root)
    if not files:
        raise ManifestError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {uri}")
    prefix = "s3://" if is_s3(uri) else ""
    ids = [_escape_id(posixpath.relpath(f, root)) for f in files]
    yield pa.table({"utterance_id": pa.array(ids, pa.string()),
                    "path": pa.array([prefix + f for f in files], pa.string()),
                    LINE: pa.array(range(1, len(files) + 1), pa.int64())})


def resolve_path(path: str | None, base: str) -> str | None:
    """A manifest path made absolute against the manifest's own directory or prefix."""
    if path is None or path == "":
        return None
    if is_s3(path) or posixpath.isabs(path) or "://" in path:
        return path
    return posixpath.join(base, path)


def _seconds(raw: str | None) -> float | None:
    """A start/end cell: None when empty, NaN when not a number (the decode stage reports bad bounds)."""
    import math

    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def _language_code(value: str | None) -> str | None:
    """A manifest's language as Whisper's code: "de", "en-US" and " EN " give de, en, en; empty gives None."""
    code = (value or "").strip().lower().replace("_", "-").split("-")[0]
    return code or None


def _normalize(uri: str, block: pa.Table, base: str, speaker_column: str, language_column: str) -> pa.Table:
    """One block of manifest rows as input rows (Python lists of this block only)."""
    import math

    import pyarrow as pa

    n = block.num_rows

    def column(name: str) -> list:
        return block.column(name).to_pylist() if name in block.column_names else [None] * n

    out: dict[str, list] = {name: [] for name in _input_schema().names}
    for line, uid, path, start, end, speaker, language in zip(
            column(LINE), column("utterance_id"), column("path"), column("start"), column("end"),
            column(speaker_column), column(language_column)):
        error = None
        uid = uid.strip() if uid is not None else None
        if not uid:
            uid, error = f"{DERIVED_ID_MARK}line{line}", "manifest: missing utterance_id"
        elif DERIVED_ID_MARK in uid:
            raise ManifestError(f"manifest {uri}, line {line}: utterance_id {uid!r} contains {DERIVED_ID_MARK!r}, "
                                "which marks the ids the job derives (segments <id>@<ms>, copies <id>@copy<n>); "
                                "rename the id")
        resolved = resolve_path(path, base)
        lo, hi = _seconds(start), _seconds(end)
        if resolved is None and error is None:
            error = "manifest: missing path"
        if error is None and any(v is not None and math.isnan(v) for v in (lo, hi)):
            error = "manifest: start/end are not numbers"
        out["input_id"].append(uid)
        out["path"].append(resolved or "")
        out["start"].append(None if lo is None or math.isnan(lo) else lo)
        out["end"].append(None if hi is None or math.isnan(hi) else hi)
        out["speaker"].append((speaker.strip() or None) if speaker is not None else None)
        out["language_hint"].append(_language_code(language))
        out["manifest_error"].append(error)
        out["manifest_warning"].append(None)
        out["line"].append(line)
    return pa.table(out, schema=_input_schema())


def _settle_duplicates(uri: str, table: pa.Table, policy: str) -> tuple[pa.Table, int]:
    """Refuse repeated ids (policy 'error') or keep each copy apart as <id>@copy<n> ('keep_each')."""
    import pyarrow as pa
    import pyarrow.compute as pc

    counts = table.group_by("input_id").aggregate([("line", "count")])
    repeated = counts.filter(pc.greater(counts.column("line_count"), 1))
    if not repeated.num_rows:
        return table, 0
    dup_rows = table.filter(pc.is_in(table.column("input_id"), value_set=repeated.column("input_id")))
    lines: dict[str, list[int]] = {}
    for uid, line in zip(dup_rows.column("input_id").to_pylist(), dup_rows.column("line").to_pylist()):
        lines.setdefault(uid, []).append(line)
    extra = sum(len(v) - 1 for v in lines.values())
    if policy == "error":
        shown = "; ".join(f"{uid!r} on lines {', '.join(map(str, v[:5]))}" for uid, v in list(lines.items())[:3])
        more = f" (and {len(lines) - 3} more ids)" if len(lines) > 3 else ""
        raise ManifestError(f"manifest {uri}: {extra} rows repeat an earlier row's utterance_id: {shown}{more}. "
                            "Ids must be unique (one output row each), or set manifest.duplicate_ids=keep_each "
                            "to label every copy")
    renamed: dict[int, tuple[str, str]] = {}
    for uid, where in lines.items():
        for copy, line in enumerate(where[1:], start=2):
            renamed[line] = (f"{uid}{DERIVED_ID_MARK}copy{copy}",
                             f"manifest: utterance_id {uid!r} repeats line {where[0]}'s; labelled as copy {copy}")
    ids, warnings = table.column("input_id").to_pylist(), table.column("manifest_warning").to_pylist()
    for i, line in enumerate(table.column("line").to_pylist()):
        if line in renamed:
            ids[i], warnings[i] = renamed[line]
    table = table.set_column(0, "input_id", pa.array(ids, pa.string()))
    return table.set_column(table.schema.get_field_index("manifest_warning"), "manifest_warning",
                            pa.array(warnings, pa.string())), extra


def read_inputs(uri: str, storage: StorageConfig, speaker_column: str = "speaker",
                duplicate_ids: str = "error", language_column: str = "language") -> InputSet:
    """Read and normalise the inputs at uri (manifest file, directory or s3:// prefix).

    speaker is the manifest's speaker_column when it has one, else null; language_hint likewise from
    language_column (a language code for the ASR). Raises ManifestError for a
    manifest that cannot be read, lacks a required column, has no rows, or repeats an id (unless
    duplicate_ids is 'keep_each').
    """
    import pyarrow as pa

    is_manifest = uri.lower().endswith(MANIFEST_EXTENSIONS)
    wanted = ("utterance_id", "path", "start", "end", speaker_column, language_column)
    blocks = manifest_blocks(uri, storage, wanted) if is_manifest else _directory_blocks(uri, storage)
    base = posixpath.dirname(uri) if is_manifest else ""
    tables = []
    for block in blocks:
        missing = [c for c in ("utterance_id", "path") if c not in block.column_names]
        if missing:
            raise ManifestError(f"manifest {uri} lacks required column(s) {missing}")
        tables.append(_normalize(uri, block, base, speaker_column, language_column))
    if not tables or not sum(t.num_rows for t in tables):
        raise ManifestError(f"manifest {uri} has no rows")
    table, duplicates = _settle_duplicates(uri, pa.concat_tables(tables), duplicate_ids)
    return InputSet(table=table, duplicate_ids=duplicates)
