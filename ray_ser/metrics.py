"""Application metrics, defined once. Ray exports them to Prometheus with a ``ray_`` prefix
(``ser_rows`` is scraped as ``ray_ser_rows_total``); dashboards/ray_ser.json reads these names."""

from __future__ import annotations

import time

__all__ = ["METRICS", "StageMetrics"]

# name -> (kind, description, tag keys). The only place metric names are spelled.
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ser_rows": ("counter", "Rows leaving a stage, by stage and status.", ("stage", "status")),
    "ser_audio_seconds": ("counter", "Seconds of audio processed by a stage.", ("stage",)),
    "ser_batch_seconds": ("histogram", "Wall time of one batch in a stage.", ("stage",)),
}
_BOUNDARIES = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120]


class StageMetrics:
    """Per-actor handles; created inside the worker so importing stages stays light."""

    def __init__(self, stage: str) -> None:
        from ray.util import metrics

        self.stage = stage
        self._rows = metrics.Counter("ser_rows", METRICS["ser_rows"][1], METRICS["ser_rows"][2])
        self._audio = metrics.Counter("ser_audio_seconds", METRICS["ser_audio_seconds"][1],
                                      METRICS["ser_audio_seconds"][2])
        self._latency = metrics.Histogram("ser_batch_seconds", METRICS["ser_batch_seconds"][1],
                                          _BOUNDARIES, METRICS["ser_batch_seconds"][2])
        self._started = 0.0

    def start(self) -> None:
        self._started = time.perf_counter()

    def finish(self, statuses: list[str], audio_seconds: float) -> None:
        tags = {"stage": self.stage}
        self._latency.observe(time.perf_counter() - self._started, tags)
        if audio_seconds:
            self._audio.inc(audio_seconds, tags)
        for status in set(statuses):
            self._rows.inc(statuses.count(status), {"stage": self.stage, "status": status})
