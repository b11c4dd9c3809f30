"""Labelled manifests (training, validation, few-shot examples): rows with a label, text and speaker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ray_ser.labels import index_of, map_label

if TYPE_CHECKING:
    from ray_ser.config import ColumnsConfig, LabelsConfig, StorageConfig

__all__ = ["LabelledRow", "read_labelled_manifest", "load_audio"]


@dataclass(frozen=True)
class LabelledRow:
    utterance_id: str
    path: str
    label: int
    text: str | None = None
    speaker: str | None = None


def read_labelled_manifest(uri: str, storage: StorageConfig, columns: ColumnsConfig,
                           labels: LabelsConfig) -> list[LabelledRow]:
    """Rows of a manifest with a label column, labels as indices of labels.classes; rows whose label a
    rule drops are left out (raises ManifestError if a column is missing or a label has no class)."""
    import posixpath

    from ray_ser.io.manifest import ManifestError, read_manifest_table, resolve_path

    table = read_manifest_table(uri, storage)
    for needed in ("utterance_id", "path", columns.label):
        if needed not in table.column_names:
            raise ManifestError(f"training manifest {uri} lacks column {needed!r}")
    base = posixpath.dirname(uri)

    def optional(column: str) -> list:
        return table.column(column).to_pylist() if column in table.column_names else [None] * table.num_rows

    rows = []
    for line, (uid, path, label, text, speaker, corpus) in enumerate(zip(
            table.column("utterance_id").to_pylist(), table.column("path").to_pylist(),
            table.column(columns.label).to_pylist(), optional(columns.text), optional(columns.speaker),
            optional(columns.corpus)), start=2):
        try:
            mapped = map_label(str(label), corpus or labels.corpus, labels.rules, labels.classes)
        except ValueError as exc:
            raise ManifestError(f"{uri} row {line} (utterance {uid}): {exc}; map it with labels.rules") from None
        if mapped is not None:
            rows.append(LabelledRow(str(uid), resolve_path(str(path), base), index_of(mapped, labels.classes), text,
                                    None if speaker is None else str(speaker)))
    return rows


def load_audio(rows: list[LabelledRow], storage: StorageConfig) -> list[np.ndarray]:
    from ray_ser.io.audio import decode_audio
    from ray_ser.io.storage import FileReader

    reader = FileReader(storage)
    return [decode_audio(reader.read(row.path)) for row in rows]
