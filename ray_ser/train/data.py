"""Training data from manifests: labelled rows, a deterministic validation split, decoded audio."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ray_ser.labels import index_of, normalize_label

if TYPE_CHECKING:
    from ray_ser.config import StorageConfig

__all__ = ["LabelledRow", "read_labelled_manifest", "split_rows", "load_audio"]


@dataclass(frozen=True)
class LabelledRow:
    utterance_id: str
    path: str
    label: int
    text: str | None = None
    speaker: str | None = None


def read_labelled_manifest(uri: str, storage: StorageConfig, label_column: str = "emotion",
                           corpus: str | None = None, text_column: str = "text",
                           speaker_column: str = "speaker") -> list[LabelledRow]:
    """Rows of a manifest with a label column (raises ManifestError if it lacks one)."""
    import posixpath

    from ray_ser.io.manifest import ManifestError, read_manifest_table, resolve_path

    table = read_manifest_table(uri, storage)
    for needed in ("utterance_id", "path", label_column):
        if needed not in table.column_names:
            raise ManifestError(f"training manifest {uri} lacks column {needed!r}")
    base = posixpath.dirname(uri)

    def optional(column: str) -> list:
        return table.column(column).to_pylist() if column in table.column_names else [None] * table.num_rows

    return [
        LabelledRow(str(uid), resolve_path(str(path), base), index_of(normalize_label(str(label), corpus)), text,
                    None if speaker is None else str(speaker))
        for uid, path, label, text, speaker in zip(
            table.column("utterance_id").to_pylist(), table.column("path").to_pylist(),
            table.column(label_column).to_pylist(), optional(text_column), optional(speaker_column))
    ]


def split_rows(rows: list[LabelledRow], val_fraction: float) -> tuple[list[LabelledRow], list[LabelledRow]]:
    """Hash-based split: stable across runs and workers, independent of row order."""
    def bucket(uid: str) -> float:
        return int(hashlib.md5(uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    train = [r for r in rows if bucket(r.utterance_id) >= val_fraction]
    val = [r for r in rows if bucket(r.utterance_id) < val_fraction]
    return train, val


def load_audio(rows: list[LabelledRow], storage: StorageConfig) -> list[np.ndarray]:
    from ray_ser.io.audio import decode_audio
    from ray_ser.io.storage import FileReader

    reader = FileReader(storage)
    return [decode_audio(reader.read(row.path)) for row in rows]
