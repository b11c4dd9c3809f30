"""The speaker pass that runs before labeling when a branch is speaker-normalised.

Such a branch moves every speaker's features onto a reference (the model module says how), so
it needs each speaker's statistics, summed over all of that speaker's clips, before it labels the
first one. This stage reads decoded rows and returns, per batch:

- for rows that name a speaker: one row per (branch, speaker), the branch's own ``feature_sums``
  added up over the batch (``add_batches`` finishes the sum on the driver);
- for rows that name none (speakers.estimate): one row per clip with its voice embedding, and
  one per (branch, clip) with its feature sums; the driver groups the clips by voice
  (``estimate_speakers``) and adds the sums up per group.

The sums are opaque vectors here. A clip that cannot be read is skipped: the labeling pass
reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

import numpy as np

from ray_ser.core.errors import predict_isolating_failures
from ray_ser.io.audio import TARGET_SAMPLE_RATE, from_bytes
from ray_ser.metrics import StageMetrics
from ray_ser.stages.base import Stage, StagePlan, require_columns

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config import LabelConfig, SpeakerConfig

__all__ = ["SpeakerStatisticsStage", "SpeakerProfiles", "add_batches", "assign_clusters", "cluster_plan",
           "EMBEDDING"]

EMBEDDING = "~voice"          # the branch name of a clip's voice-embedding row
_CLIP = "clip:"               # the speaker key of a clip-level statistics row (no speaker id)


class SpeakerStatisticsStage(Stage):
    name = "speaker statistics"
    requires = ("utterance_id", "speaker", "audio")
    adds = ("branch", "statistics")  # the output rows (branch, speaker, statistics) replace the batch's

    def __init__(self, branches: tuple[str, ...], cfg: LabelConfig) -> None:
        from ray_ser.core.branch import load_predictor

        self.profiles = {}
        for name in branches:
            profiles = load_predictor(cfg.branch(name), cfg).speaker_profiles
            if profiles is None:
                raise ValueError(f"branch {name!r} is not speaker-normalised; it needs no speaker statistics")
            self.profiles[name] = profiles
        self.voices = None
        if cfg.speakers.estimate:
            from ray_ser.models.features.speaker_embedding import VoiceEncoder

            self.voices = VoiceEncoder()
        self.metrics = StageMetrics("speaker_statistics")

    @classmethod
    def plan(cls, branches: tuple[str, ...], cfg: LabelConfig) -> StagePlan:
        return StagePlan(cls.name, cls, {"branches": branches, "cfg": cfg}, cls.requires, cls.adds,
                         cfg.speakers.resources)

    def process(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        self.metrics.start()
        keys, audios, anonymous = [], [], []
        rows = zip(batch.column("utterance_id").to_pylist(), batch.column("speaker").to_pylist(),
                   batch.column("audio").to_pylist())
        for uid, speaker, value in rows:
            if not value or (speaker is None and self.voices is None):
                continue
            try:
                audio = from_bytes(value)
            except ValueError:  # not whole float32 samples: the labeling pass reports the row
                continue
            keys.append(speaker if speaker is not None else _CLIP + uid)
            audios.append(audio)
            if speaker is None:
                anonymous.append((uid, audio))
        out: dict[str, list] = {"branch": [], "speaker": [], "statistics": []}
        statuses: list[str] = []
        for name, profiles in self.profiles.items():
            sums, failures = (predict_isolating_failures(name, profiles.feature_sums, audios)
                              if audios else ([], []))
            statuses += ["ok" if f is None else "error" for f in failures]
            totals: dict[str, np.ndarray] = {}
            for key, row, failure in zip(keys, sums, failures):
                if failure is None:
                    totals[key] = totals[key] + row if key in totals else np.asarray(row, np.float64)
            for key, total in totals.items():
                out["branch"].append(name)
                out["speaker"].append(key)
                out["statistics"].append(total.tolist())
        if anonymous:
            embeddings, failures = predict_isolating_failures("speakers", self.voices, [a for _, a in anonymous])
            for (uid, _), embedding, failure in zip(anonymous, embeddings, failures):
                if failure is None:
                    out["branch"].append(EMBEDDING)
                    out["speaker"].append(uid)
                    out["statistics"].append(np.asarray(embedding, np.float64).tolist())
        self.metrics.finish(statuses, sum(a.size for a in audios) / TARGET_SAMPLE_RATE)
        return pa.table(out, schema=pa.schema([("branch", pa.string()), ("speaker", pa.string()),
                                               ("statistics", pa.list_(pa.float64()))]))


@dataclass
class SpeakerProfiles:
    """What the speaker pass found: branch -> speaker (or voice group) -> statistics, and the voice
    group of each clip that named no speaker (utterance id -> group)."""

    statistics: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    clusters: dict[str, str] = field(default_factory=dict)


def add_batches(batches: Iterable[pa.Table], speakers: SpeakerConfig | None = None) -> SpeakerProfiles:
    """Statistics summed per speaker over every batch; with speakers.estimate, clips without a speaker
    grouped by voice and their statistics summed per group (named "~1", "~2", ...)."""
    estimate = speakers is not None and speakers.estimate
    max_clips = speakers.max_estimated_clips if estimate else None
    totals: dict[str, dict[str, np.ndarray]] = {}
    embeddings: dict[str, np.ndarray] = {}
    for batch in batches:
        for name, speaker, stats in zip(batch.column("branch").to_pylist(), batch.column("speaker").to_pylist(),
                                        batch.column("statistics").to_pylist()):
            stats = np.asarray(stats, dtype=np.float64)
            if name == EMBEDDING:
                embeddings[speaker] = stats.astype(np.float32)
                if max_clips is not None and len(embeddings) > max_clips:
                    raise ValueError(f"more than speakers.max_estimated_clips={max_clips} clips name no speaker: "
                                     "give the manifest a speaker column, or label the corpus in parts")
                continue
            per_branch = totals.setdefault(name, {})
            per_branch[speaker] = per_branch[speaker] + stats if speaker in per_branch else stats
    clusters: dict[str, str] = {}
    if embeddings and estimate:
        from ray_ser.models.features.speaker_embedding import cluster_speakers

        ids = sorted(embeddings)
        groups = cluster_speakers(np.stack([embeddings[i] for i in ids]), speakers.max_groups,
                                  speakers.min_separation)
        clusters = {uid: f"~{int(g) + 1}" for uid, g in zip(ids, groups)}
    for per_branch in totals.values():
        for key in [k for k in per_branch if k.startswith(_CLIP)]:
            stats = per_branch.pop(key)
            group = clusters.get(key[len(_CLIP):])
            if group is not None:
                per_branch[group] = per_branch[group] + stats if group in per_branch else stats
    return SpeakerProfiles(totals, clusters)


def assign_clusters(batch: pa.Table, *, clusters: dict[str, str]) -> pa.Table:
    """The voice group of each row that names no speaker (null where it has a speaker, or none was found)."""
    import pyarrow as pa

    require_columns("speaker clusters", batch, ("utterance_id", "speaker"))
    groups = [None if speaker is not None else clusters.get(uid)
              for uid, speaker in zip(batch.column("utterance_id").to_pylist(), batch.column("speaker").to_pylist())]
    return batch.append_column("speaker_cluster", pa.array(groups, pa.string()))


def cluster_plan(cfg: LabelConfig, clusters: dict[str, str]) -> StagePlan:
    return StagePlan("speaker clusters", assign_clusters, {"clusters": clusters}, ("utterance_id", "speaker"),
                     ("speaker_cluster",), cfg.speakers.group_resources)
