"""The speaker-statistics pass that runs before labeling when a branch is speaker-normalised.

Such a branch moves every speaker's mean features onto a reference (the model module says
how), so it needs each speaker's statistics, summed over all of that speaker's clips, before
it labels the first one. This stage reads decoded rows that name a speaker and returns, per
batch, one row per (branch, speaker): the branch's own ``feature_sums`` added up over the
batch. ``add_batches`` finishes the sum on the driver. The sums are opaque vectors here.
A clip that cannot be read is skipped: the labeling pass reports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import numpy as np

from ray_ser.core.errors import predict_isolating_failures
from ray_ser.io.audio import TARGET_SAMPLE_RATE, from_bytes
from ray_ser.metrics import StageMetrics
from ray_ser.stages.base import Stage, StagePlan

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config import LabelConfig

__all__ = ["SpeakerStatisticsStage", "add_batches"]


class SpeakerStatisticsStage(Stage):
    name = "speaker statistics"
    requires = ("speaker", "audio")
    adds = ("branch", "statistics")  # the output rows (branch, speaker, statistics) replace the batch's

    def __init__(self, branches: tuple[str, ...], cfg: LabelConfig) -> None:
        from ray_ser.core.branch import load_predictor

        self.profiles = {}
        for name in branches:
            profiles = load_predictor(cfg.branch(name), cfg).speaker_profiles
            if profiles is None:
                raise ValueError(f"branch {name!r} is not speaker-normalised; it needs no speaker statistics")
            self.profiles[name] = profiles
        self.metrics = StageMetrics("speaker_statistics")

    @classmethod
    def plan(cls, branches: tuple[str, ...], cfg: LabelConfig) -> StagePlan:
        return StagePlan(cls.name, cls, {"branches": branches, "cfg": cfg}, cls.requires, cls.adds,
                         cfg.speakers.resources)

    def process(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        self.metrics.start()
        speakers, audios = [], []
        for speaker, value in zip(batch.column("speaker").to_pylist(), batch.column("audio").to_pylist()):
            if speaker is None or not value:
                continue
            try:
                audios.append(from_bytes(value))
            except ValueError:  # not whole float32 samples: the labeling pass reports the row
                continue
            speakers.append(speaker)
        out: dict[str, list] = {"branch": [], "speaker": [], "statistics": []}
        statuses: list[str] = []
        for name, profiles in self.profiles.items():
            sums, failures = (predict_isolating_failures(name, profiles.feature_sums, audios)
                              if audios else ([], []))
            statuses += ["ok" if f is None else "error" for f in failures]
            totals: dict[str, np.ndarray] = {}
            for speaker, row, failure in zip(speakers, sums, failures):
                if failure is None:
                    totals[speaker] = totals[speaker] + row if speaker in totals else np.asarray(row, np.float64)
            for speaker, total in totals.items():
                out["branch"].append(name)
                out["speaker"].append(speaker)
                out["statistics"].append(total.tolist())
        self.metrics.finish(statuses, sum(a.size for a in audios) / TARGET_SAMPLE_RATE)
        return pa.table(out, schema=pa.schema([("branch", pa.string()), ("speaker", pa.string()),
                                               ("statistics", pa.list_(pa.float64()))]))


def add_batches(batches: Iterable[pa.Table]) -> dict[str, dict[str, np.ndarray]]:
    """branch -> speaker -> statistics summed over every batch the stage returned."""
    totals: dict[str, dict[str, np.ndarray]] = {}
    for batch in batches:
        for name, speaker, stats in zip(batch.column("branch").to_pylist(), batch.column("speaker").to_pylist(),
                                        batch.column("statistics").to_pylist()):
            per_branch = totals.setdefault(name, {})
            stats = np.asarray(stats, dtype=np.float64)
            per_branch[speaker] = per_branch[speaker] + stats if speaker in per_branch else stats
    return totals
