"""ASR: one batched recognition call per batch of decoded rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray_ser.core.errors import isolate_failures
from ray_ser.io.audio import TARGET_SAMPLE_RATE, from_bytes
from ray_ser.metrics import StageMetrics, error_kinds
from ray_ser.schema import STATUS_ERROR, STATUS_OK
from ray_ser.stages.base import Stage, StagePlan

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config import AsrConfig, LabelConfig

__all__ = ["AsrStage"]


class AsrStage(Stage):
    name = "asr"
    requires = ("utterance_id", "audio", "status", "error", "error_kind")
    adds = ("transcript", "language", "asr_avg_logprob", "asr_no_speech_prob")

    def __init__(self, asr: AsrConfig, cache_dir: str, pooled_states: bool = False) -> None:
        from ray_ser.models.asr import load_asr

        self.model = load_asr(asr, cache_dir)
        # A branch reads this encoder's states: keep each clip's, pooled, from the same pass.
        self.pooled_states = pooled_states
        self.adds = self.adds + (("encoder_features",) if pooled_states else ())
        self.metrics = StageMetrics("asr")

    @classmethod
    def plan(cls, cfg: LabelConfig, pooled_states: bool = False) -> StagePlan:
        adds = cls.adds + (("encoder_features",) if pooled_states else ())
        return StagePlan(cls.name, cls, {"asr": cfg.asr, "cache_dir": str(cfg.resolved_cache_dir()),
                                         "pooled_states": pooled_states},
                         cls.requires, adds, cfg.asr.resources, runtime_env=cfg.asr.runtime_env)

    def _recognise(self, items: list) -> list:
        """(transcript, pooled states or None) per (clip, language hint)."""
        audios, hints = [a for a, _ in items], [h for _, h in items]
        if not self.pooled_states:
            return [(t, None) for t in self.model.predict_batch(audios, hints)]
        transcripts, pooled = self.model.transcribe(audios, pooled_states=True, languages=hints)
        return list(zip(transcripts, pooled))

    def process(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        self.metrics.start()
        n = batch.num_rows
        audio = batch.column("audio").to_pylist()
        status = batch.column("status").to_pylist()
        errors = batch.column("error").to_pylist()
        kinds = batch.column("error_kind").to_pylist()
        todo = [i for i in range(n) if status[i] == STATUS_OK and audio[i]]
        # The manifest's language column, where it had one (decode carries it as language_hint).
        hints = batch.column("language_hint").to_pylist() if "language_hint" in batch.column_names else [None] * n
        results, failures, failure_kinds = isolate_failures("asr", self._recognise,
                                                            [(from_bytes(audio[i]), hints[i]) for i in todo])

        text, lang, logprob, no_speech, states = [None] * n, [None] * n, [None] * n, [None] * n, [None] * n
        for i, result, failure, kind in zip(todo, results, failures, failure_kinds):
            if failure is not None:
                status[i], errors[i], kinds[i] = STATUS_ERROR, failure, kind
                continue
            transcript, states[i] = result
            text[i], lang[i] = transcript.text, transcript.language
            logprob[i], no_speech[i] = transcript.avg_logprob, transcript.no_speech_prob
        batch = batch.set_column(batch.schema.get_field_index("status"), "status", pa.array(status, pa.string()))
        batch = batch.set_column(batch.schema.get_field_index("error"), "error", pa.array(errors, pa.string()))
        batch = batch.set_column(batch.schema.get_field_index("error_kind"), "error_kind", pa.array(kinds, pa.string()))
        self.metrics.finish(status, sum(from_bytes(audio[i]).size for i in todo) / TARGET_SAMPLE_RATE,
                            error_kinds(status, batch))
        batch = (batch.append_column("transcript", pa.array(text, pa.string()))
                 .append_column("language", pa.array(lang, pa.string()))
                 .append_column("asr_avg_logprob", pa.array(logprob, pa.float32()))
                 .append_column("asr_no_speech_prob", pa.array(no_speech, pa.float32())))
        if self.pooled_states:
            batch = batch.append_column("encoder_features", pa.array(
                [None if s is None else s.tolist() for s in states], pa.list_(pa.float32())))
        return batch
