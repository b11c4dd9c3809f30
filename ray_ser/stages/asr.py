"""ASR: one batched recognition call per batch of decoded rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray_ser.core.errors import isolate_failures
from ray_ser.io.audio import TARGET_SAMPLE_RATE, from_bytes
from ray_ser.metrics import StageMetrics
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

    def __init__(self, asr: AsrConfig, cache_dir: str) -> None:
        from ray_ser.models.asr import load_asr

        self.model = load_asr(asr, cache_dir)
        self.metrics = StageMetrics("asr")

    @classmethod
    def plan(cls, cfg: LabelConfig) -> StagePlan:
        return StagePlan(cls.name, cls, {"asr": cfg.asr, "cache_dir": str(cfg.resolved_cache_dir())},
                         cls.requires, cls.adds, cfg.asr.resources, runtime_env=cfg.asr.runtime_env)

    def process(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        self.metrics.start()
        n = batch.num_rows
        audio = batch.column("audio").to_pylist()
        status = batch.column("status").to_pylist()
        errors = batch.column("error").to_pylist()
        kinds = batch.column("error_kind").to_pylist()
        todo = [i for i in range(n) if status[i] == STATUS_OK and audio[i]]
        results, failures, failure_kinds = isolate_failures("asr", self.model.predict_batch,
                                                            [from_bytes(audio[i]) for i in todo])

        text, lang, logprob, no_speech = [None] * n, [None] * n, [None] * n, [None] * n
        for i, result, failure, kind in zip(todo, results, failures, failure_kinds):
            if failure is not None:
                status[i], errors[i], kinds[i] = STATUS_ERROR, failure, kind
                continue
            text[i], lang[i] = result.text, result.language
            logprob[i], no_speech[i] = result.avg_logprob, result.no_speech_prob
        self.metrics.finish(status, sum(from_bytes(audio[i]).size for i in todo) / TARGET_SAMPLE_RATE)
        batch = batch.set_column(batch.schema.get_field_index("status"), "status", pa.array(status, pa.string()))
        batch = batch.set_column(batch.schema.get_field_index("error"), "error", pa.array(errors, pa.string()))
        batch = batch.set_column(batch.schema.get_field_index("error_kind"), "error_kind", pa.array(kinds, pa.string()))
        return (batch.append_column("transcript", pa.array(text, pa.string()))
                .append_column("language", pa.array(lang, pa.string()))
                .append_column("asr_avg_logprob", pa.array(logprob, pa.float32()))
                .append_column("asr_no_speech_prob", pa.array(no_speech, pa.float32())))
