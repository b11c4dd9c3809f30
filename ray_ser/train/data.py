"""Training splits: a deterministic validation split of labelled rows (ray_ser/io/labelled.py reads them)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray_ser.io.labelled import LabelledRow

__all__ = ["split_rows"]


def split_rows(rows: list[LabelledRow], val_fraction: float) -> tuple[list[LabelledRow], list[LabelledRow]]:
    """Hash-based split: stable across runs and workers, independent of row order."""
    def bucket(uid: str) -> float:
        return int(hashlib.md5(uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    train = [r for r in rows if bucket(r.utterance_id) >= val_fraction]
    val = [r for r in rows if bucket(r.utterance_id) < val_fraction]
    return train, val
