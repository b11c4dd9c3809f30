"""A voting branch as a Ray Data stage: one model family, one checkpoint, two added columns.

Audio branches read rows whose audio decoded; text branches read rows with a non-empty
transcript; speech-LLM branches read the audio with whatever transcript there is. Other
rows abstain (null label). A speaker-normalised branch also gets each row's speaker
statistics from the pass before labeling (ray_ser/stages/speaker.py), pooled with the
checkpoint's own for the speakers it was trained on when speakers.pool_known_speakers is
set. A failure costs only the rows it touches: the batch is retried row by row and the
reason lands in ``warnings``, so the other branches still vote on that row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray_ser.io.audio import TARGET_SAMPLE_RATE, from_bytes
from ray_ser.labels import EMOTIONS
from ray_ser.metrics import StageMetrics
from ray_ser.stages.base import append_warning, error_reason, predict_isolating_failures, require_columns

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config import BranchConfig, StorageConfig

__all__ = ["BranchStage"]

_INPUT_COLUMNS = {"audio": ("audio",), "text": ("transcript",), "audio_text": ("audio", "transcript")}


class BranchStage:
    def __init__(self, name: str, branch: BranchConfig, storage: StorageConfig, cache_dir: str,
                 speaker_statistics: dict | None = None, pool_known_speakers: bool = False) -> None:
        from ray_ser.registry import load_branch_predictor

        self.name = name
        self.predictor = load_branch_predictor(branch, storage, cache_dir)
        self.input_kind = self.predictor.input_kind
        # speaker -> statistics; None: the branch does not use them, or none were computed
        self.speaker_statistics = (speaker_statistics
                                   if getattr(self.predictor, "uses_speaker_statistics", False) else None)
        if self.speaker_statistics is not None and pool_known_speakers:
            self.speaker_statistics = self.predictor.with_known_speakers(self.speaker_statistics)
        speaker_column = ("speaker",) if self.speaker_statistics is not None else ()
        self.requires = ("utterance_id", *_INPUT_COLUMNS[self.input_kind], *speaker_column)
        self.adds = (f"{name}_label", f"{name}_probs")
        self.metrics = StageMetrics(f"branch_{name}")

    def _inputs(self, batch: pa.Table) -> tuple[list[int], list, dict[int, str]]:
        """Rows to predict, their inputs, and rows whose input could not even be read."""
        if self.input_kind == "text":
            values = batch.column("transcript").to_pylist()
            todo = [i for i, v in enumerate(values) if v and v.strip()]
            return todo, [values[i] for i in todo], {}
        transcripts = (batch.column("transcript").to_pylist() if self.input_kind == "audio_text"
                       else [None] * batch.num_rows)
        todo, inputs, unreadable = [], [], {}
        for i, (value, transcript) in enumerate(zip(batch.column("audio").to_pylist(), transcripts)):
            if not value:
                continue
            try:
                audio = from_bytes(value)
            except Exception as exc:
                unreadable[i] = error_reason(self.name, exc)
                continue
            inputs.append(audio if self.input_kind == "audio" else (audio, transcript))
            todo.append(i)
        return todo, inputs, unreadable

    def _audio_of(self, item):
        return item[0] if self.input_kind == "audio_text" else item

    def _predict(self, batch: pa.Table, todo: list[int], inputs: list) -> tuple[list, list[str | None]]:
        if self.speaker_statistics is None:
            return predict_isolating_failures(self.name, self.predictor.predict_batch, inputs)
        speakers = batch.column("speaker").to_pylist()
        items = [(x, self.speaker_statistics.get(speakers[i])) for i, x in zip(todo, inputs)]
        return predict_isolating_failures(
            self.name, lambda chunk: self.predictor.predict_batch([a for a, _ in chunk], [s for _, s in chunk]),
            items)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        require_columns(f"branch {self.name}", batch, self.requires)
        self.metrics.start()
        n = batch.num_rows
        todo, inputs, unreadable = self._inputs(batch)
        predicted, failures = self._predict(batch, todo, inputs) if inputs else ([], [])
        labels, probs, warnings = [None] * n, [None] * n, [None] * n
        for i, reason in unreadable.items():
            warnings[i] = reason
        for i, p, failure in zip(todo, predicted, failures):
            if failure is not None:
                warnings[i] = failure
                continue
            labels[i], probs[i] = EMOTIONS[int(p.argmax())], [float(x) for x in p]
        attempted = sorted(set(todo) | set(unreadable))
        seconds = sum(self._audio_of(x).size for x in inputs) / TARGET_SAMPLE_RATE if self.input_kind != "text" else 0.0
        self.metrics.finish(["ok" if labels[i] is not None else "error" for i in attempted], seconds)
        batch = append_warning(batch, warnings)
        return (batch.append_column(self.adds[0], pa.array(labels, pa.string()))
                .append_column(self.adds[1], pa.array(probs, pa.list_(pa.float32()))))
