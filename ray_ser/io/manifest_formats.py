"""Manifest files read a block at a time (CSV, TSV, JSON Lines, Parquet), every problem located.

Each reader yields blocks (Arrow tables) holding the wanted columns present in the file, all as
strings, plus ``LINE``: each row's line in the file (Parquet: its 1-based row; CSV: counted from
the header, so a quoted field spanning lines shifts it). A file that cannot be read as its format
(invalid UTF-8, an empty or ragged CSV, a JSON array, a line that is not a JSON object) raises
ManifestError naming the file and the line. Only one block is in Python at a time, so a manifest
of millions of rows costs its Arrow columns, not lists of every row.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Iterator

from ray_ser.io.storage import filesystem_for

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config import StorageConfig

__all__ = ["ManifestError", "manifest_blocks", "MANIFEST_EXTENSIONS", "LINE"]

LINE = "__line"

MANIFEST_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
_JSON_BLOCK_ROWS = 65_536


class ManifestError(ValueError):
    """The manifest as a whole is unusable; the message names the file (and the line)."""


def _open(uri: str, storage: StorageConfig):
    fs, path = filesystem_for(uri, storage)
    try:
        return fs.open_input_stream(path)
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {uri}") from None


def _lines(uri: str, storage: StorageConfig) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw bytes) of every line, streamed."""
    import io

    with _open(uri, storage) as handle:
        for number, line in enumerate(io.BufferedReader(handle, buffer_size=1 << 20), start=1):
            yield number, line


def _first_undecodable_line(uri: str, storage: StorageConfig) -> int | None:
    for number, line in _lines(uri, storage):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return number
    return None


def _numbered(table: pa.Table, lines) -> pa.Table:
    import pyarrow as pa

    return table.append_column(LINE, pa.array(lines, pa.int64()))


def _csv_blocks(uri: str, storage: StorageConfig, wanted: tuple[str, ...]) -> Iterator[pa.Table]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    delimiter = "\t" if uri.lower().endswith(".tsv") else ","

    def reader(columns: list[str] | None):
        convert = pacsv.ConvertOptions(
            # Every column a string: ids and paths that look like numbers stay as written, and a block
            # whose values look different from the first block's cannot fail type inference.
            column_types={c: pa.string() for c in columns or ()}, include_columns=columns,
            strings_can_be_null=True, quoted_strings_can_be_null=True)
        # One thread: the parser then knows each row's number, and names it in its errors ("Row #7").
        return pacsv.open_csv(_open(uri, storage), read_options=pacsv.ReadOptions(use_threads=False),
                              parse_options=pacsv.ParseOptions(delimiter=delimiter), convert_options=convert)

    try:
        header = reader(None).schema.names
        line = 2
        for batch in reader([c for c in wanted if c in header]):
            yield _numbered(pa.Table.from_batches([batch]), range(line, line + batch.num_rows))
            line += batch.num_rows
    except UnicodeDecodeError:  # a header that is not UTF-8 (its names become Python strings)
        raise ManifestError(f"manifest {uri}, line 1: the header is not valid UTF-8") from None
    except pa.ArrowInvalid as exc:
        message = str(exc)
        if "Empty CSV file" in message:
            raise ManifestError(f"manifest {uri} is empty") from None
        if "UTF8" in message:
            raise ManifestError(f"manifest {uri}, line {_first_undecodable_line(uri, storage)}: "
                                "not valid UTF-8") from None
        row = re.search(r"Row #(\d+): (.*)", message)
        if row:
            raise ManifestError(f"manifest {uri}, line {row.group(1)}: {row.group(2)[:160]}") from None
        raise ManifestError(f"manifest {uri} is not a readable CSV: {message[:200]}") from None


def _json_value(value, uri: str, number: int, column: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ManifestError(f"manifest {uri}, line {number}: {column} must be a string or a number, "
                        f"not {type(value).__name__}")


def _jsonl_blocks(uri: str, storage: StorageConfig, wanted: tuple[str, ...]) -> Iterator[pa.Table]:
    """JSON Lines: one object per line (blank lines skipped)."""
    import pyarrow as pa

    columns: dict[str, list] = {c: [] for c in wanted}
    lines: list[int] = []
    seen = set()

    def block() -> pa.Table:
        present = {c: pa.array(columns[c], pa.string()) for c in wanted if c in seen}
        return pa.table({**present, LINE: pa.array(lines, pa.int64())})

    for number, raw in _lines(uri, storage):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ManifestError(f"manifest {uri}, line {number}: not valid UTF-8") from None
        if not text.strip():
            continue
        if not lines and text.lstrip().startswith("["):
            raise ManifestError(f"manifest {uri} is a JSON array; expected JSON Lines, one object per line "
                                f"(jq -c '.[]' turns one into the other)")
        try:
            row = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"manifest {uri}, line {number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ManifestError(f"manifest {uri}, line {number}: expected a JSON object, "
                                f"got {type(row).__name__}")
        lines.append(number)
        for c in wanted:
            if c in row:
                seen.add(c)
            columns[c].append(_json_value(row.get(c), uri, number, c))
        if len(lines) >= _JSON_BLOCK_ROWS:
            yield block()
            columns, lines = {c: [] for c in wanted}, []
    if lines:
        yield block()


def _parquet_blocks(uri: str, storage: StorageConfig, wanted: tuple[str, ...]) -> Iterator[pa.Table]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = filesystem_for(uri, storage)
    try:
        parquet = pq.ParquetFile(fs.open_input_file(path))
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {uri}") from None
    except (pa.ArrowException, ValueError) as exc:
        raise ManifestError(f"manifest {uri} is not a readable Parquet file: {exc}") from None
    present = [c for c in wanted if c in parquet.schema_arrow.names]
    row = 1
    for batch in parquet.iter_batches(columns=present, batch_size=_JSON_BLOCK_ROWS):
        table = pa.Table.from_batches([batch])
        try:
            table = table.cast(pa.schema([(c, pa.string()) for c in table.column_names]))
        except (pa.ArrowException, ValueError) as exc:
            raise ManifestError(f"manifest {uri}, rows {row}-{row + batch.num_rows - 1}: {exc}") from None
        yield _numbered(table, range(row, row + batch.num_rows))
        row += batch.num_rows


def manifest_blocks(uri: str, storage: StorageConfig, wanted: tuple[str, ...]) -> Iterator[pa.Table]:
    """The manifest's wanted columns (those present) as string blocks, with each row's LINE."""
    lower = uri.lower()
    if lower.endswith(".parquet"):
        return _parquet_blocks(uri, storage, wanted)
    if lower.endswith((".jsonl", ".json")):
        return _jsonl_blocks(uri, storage, wanted)
    return _csv_blocks(uri, storage, wanted)
