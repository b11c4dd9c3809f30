"""Few-shot examples from a new domain: k labelled clips, drawn once, seeded, spread over labels.

The same draw feeds both few-shot modes of a speech_llm branch: the in-context examples
its prompts carry (labeling job and Serve) and the quick LoRA run of `ray-ser adapt`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ray_ser.branches.speech_llm.engines import Shot
    from ray_ser.branches.speech_llm.settings import FewShotConfig
    from ray_ser.config import ColumnsConfig, LabelsConfig, StorageConfig
    from ray_ser.io.labelled import LabelledRow

__all__ = ["draw_shots", "read_shot_rows", "load_shots"]


def draw_shots(rows: list[LabelledRow], k: int, seed: int = 0) -> list[LabelledRow]:
    """k rows, round-robin over the labels present so no class is left out while k allows."""
    rng = np.random.default_rng(seed)
    by_label: dict[int, list[LabelledRow]] = {}
    for row in sorted(rows, key=lambda r: r.utterance_id):
        by_label.setdefault(row.label, []).append(row)
    queues = {label: [group[i] for i in rng.permutation(len(group))] for label, group in sorted(by_label.items())}
    chosen: list[LabelledRow] = []
    while len(chosen) < min(k, len(rows)):
        for label in list(queues):
            if queues[label] and len(chosen) < k:
                chosen.append(queues[label].pop())
    order = rng.permutation(len(chosen))  # labels interleaved, not grouped, in the prompt
    return [chosen[i] for i in order]


def read_shot_rows(cfg: FewShotConfig, storage: StorageConfig, columns: ColumnsConfig,
                   labels: LabelsConfig) -> list[LabelledRow]:
    from ray_ser.io.labelled import read_labelled_manifest

    rows = read_labelled_manifest(cfg.manifest, storage, columns, labels)
    if len(rows) < cfg.k:
        raise ValueError(f"few_shot.manifest {cfg.manifest} has {len(rows)} rows; k={cfg.k} were asked for")
    return draw_shots(rows, cfg.k, cfg.seed)


def load_shots(cfg: FewShotConfig, storage: StorageConfig, columns: ColumnsConfig,
               labels: LabelsConfig) -> list[Shot]:
    """The in-context examples: audio, transcript and label word of each drawn row."""
    from ray_ser.branches.speech_llm.engines import Shot
    from ray_ser.io.labelled import load_audio
    rows = read_shot_rows(cfg, storage, columns, labels)
    return [Shot(audio, row.text, labels.classes[row.label]) for audio, row in zip(load_audio(rows, storage), rows)]
