"""Writers of real labeling-job outputs (Parquet parts through the sink) and truth manifests for these tests."""

from __future__ import annotations

import csv
from pathlib import Path

from ray_ser.config import StorageConfig
from ray_ser.labels import EMOTIONS

BRANCHES = ("speech", "prosody")


def probs_for(label: str, peak: float = 0.7) -> list[float]:
    rest = (1.0 - peak) / (len(EMOTIONS) - 1)
    return [peak if name == label else rest for name in EMOTIONS]


def output_row(input_id: str, label: str | None, branch_labels: dict[str, str | None], *, confidence: float = 0.7,
               agreement: float | None = 1.0, segment: int = 0, segments: int = 1, duration: float = 2.0,
               status: str = "ok", error: str | None = None, **extra) -> dict:
    row = {"utterance_id": input_id if segments == 1 else f"{input_id}@{segment * 1000}", "input_id": input_id,
           "segment_index": segment, "segment_count": segments, "duration": duration, "status": status,
           "error": error, "label": label, "confidence": None if label is None else confidence,
           "agreement": agreement if label is not None else None, **extra}
    for name in BRANCHES:
        chosen = branch_labels.get(name)
        row[f"{name}_label"] = chosen
        row[f"{name}_probs"] = None if chosen is None else probs_for(chosen, confidence)
    return row


def write_output(rows: list[dict], uri: str, storage: StorageConfig = StorageConfig(), part_rows: int = 4,
                 vote_columns: bool = False, final_probs: bool = False) -> None:
    """rows as the job writes them: the output schema (without the vote's own columns and the final
    distribution unless asked, as older outputs were), several part files through the sink."""
    import pyarrow as pa

    from ray_ser.io.sink import write_part
    from ray_ser.schema import conform, output_schema

    schema = output_schema(BRANCHES)
    # Outputs written before the decision had no vote columns and no final distribution.
    older = ([] if vote_columns else ["vote_label", "vote_confidence"]) + ([] if final_probs else ["probs"])
    schema = pa.schema([field for field in schema if field.name not in older])
    table = conform(pa.Table.from_pylist(rows), schema)
    for start in range(0, table.num_rows, part_rows):
        write_part(table.slice(start, part_rows), uri, storage)


def write_manifest(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """(utterance_id, emotion, corpus) rows with the real manifests' columns."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utterance_id", "path", "speaker", "emotion", "corpus", "language"])
        for uid, emotion, corpus in rows:
            writer.writerow([uid, f"audio/{uid}.flac", f"{corpus}-01", emotion, corpus, "en"])
    return path
