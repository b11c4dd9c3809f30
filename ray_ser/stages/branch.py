"""A voting branch as a Ray Data stage: a thin wrapper over the annotation core's BranchRunner.

Audio branches read rows whose audio decoded; text branches read rows with a non-empty
transcript; speech-LLM branches read the audio with whatever transcript there is. Other rows
abstain (null label). A speaker-normalised branch also gets each row's speaker statistics from
the pass before labeling (ray_ser/stages/speaker.py). A failure costs only the rows it
touches: the reason lands in ``warnings``, so the other branches still vote on that row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ray_ser.core.branch import Clip
from ray_ser.io.audio import from_bytes
from ray_ser.metrics import StageMetrics
from ray_ser.stages.base import Stage, StagePlan, append_warning, error_reason

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config import LabelConfig

__all__ = ["BranchStage"]

_INPUT_COLUMNS = {"audio": ("audio",), "text": ("transcript",), "audio_text": ("audio", "transcript")}


class BranchStage(Stage):
    def __init__(self, name: str, cfg: LabelConfig, speaker_statistics: dict | None = None,
                 grouped: bool = False) -> None:
        from ray_ser.core.branch import load_branch_runner

        self.name = f"branch {name}"
        self.runner = load_branch_runner(name, cfg, speaker_statistics)
        # Clips without a speaker carry the voice group the speaker pass found (speaker_cluster).
        self.grouped = grouped and self.runner.uses_speakers
        self.requires, self.adds = self.columns(name, cfg, self.runner.uses_speakers, self.runner.reads_asr_encoder,
                                                self.grouped)
        self.metrics = StageMetrics(f"branch_{name}")

    @staticmethod
    def columns(name: str, cfg: LabelConfig, uses_speakers: bool, reads_asr_encoder: bool = False,
                grouped: bool = False) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(requires, adds), from the branch's settings alone."""
        kind = cfg.branch(name).input_kind()
        requires = ("utterance_id", *_INPUT_COLUMNS[kind], *(("speaker",) if uses_speakers else ()),
                    *(("speaker_cluster",) if uses_speakers and grouped else ()),
                    *(("encoder_features",) if reads_asr_encoder else ()))
        # warnings is created by the first branch and extended by the others (a failure's reason).
        return requires, (f"{name}_label", f"{name}_probs", "warnings")

    @classmethod
    def plan(cls, name: str, cfg: LabelConfig, speaker_statistics: dict | None,
             reads_asr_encoder: bool = False, grouped: bool = False) -> StagePlan:
        uses_speakers = speaker_statistics is not None
        requires, adds = cls.columns(name, cfg, uses_speakers, reads_asr_encoder, grouped)
        return StagePlan(f"branch {name}", cls, {"name": name, "cfg": cfg, "speaker_statistics": speaker_statistics,
                                                 "grouped": grouped and uses_speakers},
                         requires, adds, cfg.branch(name).resources)

    def _clips(self, batch: pa.Table) -> tuple[list[Clip], dict[int, str]]:
        """The batch's clips, and the rows whose audio bytes could not even be read (reason)."""
        n = batch.num_rows

        def column(name: str) -> list:
            return batch.column(name).to_pylist() if name in batch.column_names else [None] * n

        audio: list = [None] * n
        unreadable: dict[int, str] = {}
        if self.runner.input_kind != "text":
            for i, value in enumerate(column("audio")):
                try:
                    audio[i] = from_bytes(value) if value else None
                except Exception as exc:
                    unreadable[i] = error_reason(self.runner.name, exc)
        states = [None if v is None else np.asarray(v, np.float32) for v in column("encoder_features")]
        # A clip's profile: its speaker's, else its voice group's.
        speakers = [s if s is not None else g for s, g in zip(column("speaker"), column("speaker_cluster"))]
        return ([Clip(a, t, s, e) for a, t, s, e in zip(audio, column("transcript"), speakers, states)],
                unreadable)

    def process(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        self.metrics.start()
        clips, unreadable = self._clips(batch)
        results = self.runner.run(clips)
        statuses = ["ok" if r.label is not None else "error" for r in results if r.attempted]
        self.metrics.finish(statuses + ["error"] * len(unreadable),
                            self.runner.audio_seconds([c for c, r in zip(clips, results) if r.attempted]))
        batch = append_warning(batch, [unreadable.get(i, r.warning) for i, r in enumerate(results)])
        return (batch.append_column(self.adds[0], pa.array([r.label for r in results], pa.string()))
                .append_column(self.adds[1], pa.array([r.probs for r in results], pa.list_(pa.float32()))))

    def give_up(self, batch: pa.Table, reason: str, kind: str) -> pa.Table:
        """A branch that cannot process rows abstains on them (the other branches still vote)."""
        import pyarrow as pa

        batch = append_warning(batch, [reason] * batch.num_rows)
        return (batch.append_column(self.adds[0], pa.nulls(batch.num_rows, pa.string()))
                .append_column(self.adds[1], pa.nulls(batch.num_rows, pa.list_(pa.float32()))))

    def teardown(self) -> None:
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.close()
