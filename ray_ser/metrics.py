"""Application metrics, defined once. Ray exports them to Prometheus with a ``ray_`` prefix
(``ser_rows`` is scraped as ``ray_ser_rows_total``, a histogram as ``..._bucket``/``_sum``/``_count``,
a gauge under its own name); dashboards/ray_ser.json reads these names, and
tests/test_dashboards.py scrapes a real cluster's exporter for every series a panel queries.

Handles are created lazily, once per process (a Ray worker), so importing a stage stays light, and
recording never fails a batch: a metric that cannot be recorded is dropped.

Serve request latency and status come from Ray's own ``ray_serve_*`` series (the dashboard reads
those); ``ser_serve_*`` below is for what Ray cannot see (the endpoint's own reasons for a 4xx):
the Serve app calls ``record_request``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

__all__ = ["METRICS", "MetricSpec", "StageMetrics", "exported_series", "error_kind", "error_kinds",
           "record_vote", "record_sink_file", "record_epoch", "record_request"]

_LATENCY_S = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
_AGREEMENT = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 1.0)
_REQUEST_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class MetricSpec:
    kind: str                      # counter | gauge | histogram
    description: str
    tags: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()


# The only place metric names are spelled.
METRICS: dict[str, MetricSpec] = {
    # Every stage, per batch.
    "ser_rows": MetricSpec("counter", "Rows leaving a stage, by stage and status (ok, error).", ("stage", "status")),
    "ser_row_errors": MetricSpec("counter", "Error rows leaving a stage, by stage and kind of error "
                                 "(transient, permanent; unknown where the row does not say).", ("stage", "kind")),
    "ser_audio_seconds": MetricSpec("counter", "Seconds of audio processed by a stage.", ("stage",)),
    "ser_batch_seconds": MetricSpec("histogram", "Wall time of one batch in a stage.", ("stage",), _LATENCY_S),
    # The vote.
    "ser_vote_labels": MetricSpec("counter", "Rows the vote labelled, by label.", ("label",)),
    "ser_vote_agreement": MetricSpec("histogram", "Share of the vote's weight behind the chosen label, per row.",
                                     (), _AGREEMENT),
    # The sink.
    "ser_sink_files": MetricSpec("counter", "Parquet parts written.", ()),
    "ser_sink_bytes": MetricSpec("counter", "Bytes of Parquet written.", ()),
    # Training, per epoch (rank 0 of each branch's run).
    "ser_train_epoch": MetricSpec("gauge", "The last epoch a branch's training run finished (0-based).", ("branch",)),
    "ser_train_loss": MetricSpec("gauge", "Mean training loss of the branch's last epoch.", ("branch",)),
    "ser_train_val_macro_f1": MetricSpec("gauge", "Validation macro-F1 of the branch's last epoch.", ("branch",)),
    "ser_train_val_uar": MetricSpec("gauge", "Validation UAR of the branch's last epoch.", ("branch",)),
    # Serve: the endpoint's own view (Ray's ray_serve_* series hold latency and HTTP status).
    "ser_serve_requests": MetricSpec("counter", "Requests the endpoint answered, by route and HTTP status.",
                                     ("route", "status")),
    "ser_serve_request_seconds": MetricSpec("histogram", "Time the endpoint took per request.", ("route",),
                                            _REQUEST_S),
}

_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def exported_series(name: str) -> tuple[str, ...]:
    """The Prometheus series Ray exports for one metric of the table."""
    return tuple(f"ray_{name}{suffix}" for suffix in _SUFFIXES[METRICS[name].kind])


@functools.lru_cache(maxsize=None)
def _handle(name: str):
    from ray.util import metrics

    spec = METRICS[name]
    if spec.kind == "counter":
        return metrics.Counter(name, spec.description, spec.tags)
    if spec.kind == "gauge":
        return metrics.Gauge(name, spec.description, spec.tags)
    return metrics.Histogram(name, spec.description, list(spec.boundaries), spec.tags)


def _record(name: str, value: float, tags: dict[str, str] | None = None) -> None:
    """inc / set / observe by the metric's kind; never raises (metrics must not fail a batch)."""
    try:
        handle, kind = _handle(name), METRICS[name].kind
        if kind == "counter":
            if value:
                handle.inc(value, tags or None)
        elif kind == "gauge":
            handle.set(value, tags or None)
        else:
            handle.observe(value, tags or None)
    except Exception:
        pass


def error_kind(reason: str | None) -> str:
    """transient | permanent | unknown for an error row without an ``error_kind`` of its own.

    The rows carry their kind once the reliability work lands (an ``error_kind`` column, read by
    ``error_kinds``); until then a reason alone does not say, and guessing from its text would
    put wrong numbers on a dashboard."""
    return "unknown"


def error_kinds(statuses: Sequence[str], batch: Any = None) -> list[str]:
    """The kind of each error row in statuses, from the batch's ``error_kind`` column where it has one."""
    column = None
    if batch is not None and "error_kind" in getattr(batch, "column_names", ()):
        column = batch.column("error_kind").to_pylist()
    reasons = (batch.column("error").to_pylist() if batch is not None and "error" in batch.column_names
               else [None] * len(statuses))
    return [(column[i] if column and column[i] else error_kind(reasons[i]))
            for i, status in enumerate(statuses) if status == "error"]


class StageMetrics:
    """A stage's per-batch record: rows by status, error kinds, audio seconds, batch latency; the
    same counts go to the driver's progress line (ray_ser/progress.py)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._started = 0.0

    def start(self) -> None:
        self._started = time.perf_counter()

    def finish(self, statuses: list[str], audio_seconds: float, kinds: Iterable[str] | None = None) -> None:
        """Record one batch. kinds: each error row's kind (``error_kinds``); unknown when not given."""
        from ray_ser.progress import report_batch

        tags = {"stage": self.stage}
        _record("ser_batch_seconds", time.perf_counter() - self._started, tags)
        _record("ser_audio_seconds", audio_seconds, tags)
        for status in set(statuses):
            _record("ser_rows", statuses.count(status), {"stage": self.stage, "status": status})
        errors = statuses.count("error")
        kinds = list(kinds) if kinds is not None else ["unknown"] * errors
        for kind in set(kinds):
            _record("ser_row_errors", kinds.count(kind), {"stage": self.stage, "kind": kind})
        report_batch(self.stage, len(statuses), errors, audio_seconds)


def record_vote(labels: Sequence[str | None], agreement: Sequence[float | None]) -> None:
    """The vote's label distribution and how much of the vote stood behind each label."""
    for label in set(labels) - {None}:
        _record("ser_vote_labels", labels.count(label), {"label": label})
    for value in agreement:
        if value is not None:
            _record("ser_vote_agreement", float(value))


def record_sink_file(size_bytes: int) -> None:
    _record("ser_sink_files", 1)
    _record("ser_sink_bytes", size_bytes)


def record_epoch(branch: str, metrics: dict) -> None:
    """A finished epoch of a branch's training run (train_loss, val_macro_f1, val_uar)."""
    tags = {"branch": branch}
    _record("ser_train_epoch", metrics["epoch"], tags)
    _record("ser_train_loss", metrics["train_loss"], tags)
    _record("ser_train_val_macro_f1", metrics["val_macro_f1"], tags)
    _record("ser_train_val_uar", metrics["val_uar"], tags)


def record_request(route: str, status: int, seconds: float) -> None:
    """For the Serve app: one answered request (its route, HTTP status and time taken)."""
    _record("ser_serve_requests", 1, {"route": route, "status": str(status)})
    _record("ser_serve_request_seconds", seconds, {"route": route})
