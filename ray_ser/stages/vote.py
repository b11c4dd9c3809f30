"""The decision as a stateless Ray Data step: per-branch columns in; the label, its confidence and
probabilities, the agreement and the majority vote out (ray_ser/core/decision.py decides).

It also settles each row's status: a row any branch voted on is "ok" (an ASR failure
moves to ``warnings``, since the speech branches still voted); a row no branch could
label is "error" with the first reason found, and that error's kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray_ser.core.decision import decide
from ray_ser.labels import EMOTIONS
from ray_ser.metrics import StageMetrics, error_kinds, record_vote
from ray_ser.schema import PERMANENT, STATUS_ERROR, STATUS_OK
from ray_ser.stages.base import StagePlan, require_columns

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config import LabelConfig

__all__ = ["vote_batch", "plan"]

ADDS = ("label", "confidence", "agreement", "probs", "vote_label", "vote_confidence")


def _requires(branches: tuple[str, ...]) -> tuple[str, ...]:
    return ("status", "error", "error_kind", "warnings", *(f"{b}_{c}" for b in branches for c in ("label", "probs")))


def plan(cfg: LabelConfig) -> StagePlan:
    """The decision tasks; the fitted fusion (when the profile has one) is read here once, on the driver."""
    from ray_ser.core.fusion import load_fusion

    branches = tuple(cfg.branches)
    fusion = None
    if cfg.fusion.method != "none":
        fusion = load_fusion(cfg.fusion.checkpoint, cfg.storage)
        fusion.check(branches, cfg.labels.classes, f"fusion {cfg.fusion.checkpoint}")
    return StagePlan("vote", vote_batch, {"branches": branches, "weights": cfg.vote_weights(),
                                          "priority": cfg.vote.priority, "classes": cfg.labels.classes,
                                          "fusion": fusion},
                     _requires(branches), ADDS, cfg.vote.resources)


def vote_batch(batch: pa.Table, *, branches: tuple[str, ...], weights: dict[str, float],
               priority: tuple[str, ...], classes: tuple[str, ...] = EMOTIONS, fusion=None) -> pa.Table:
    import pyarrow as pa

    require_columns("vote", batch, _requires(branches))
    metrics = StageMetrics("vote")
    metrics.start()
    columns = {b: (batch.column(f"{b}_label").to_pylist(), batch.column(f"{b}_probs").to_pylist())
               for b in branches}
    status = batch.column("status").to_pylist()
    errors = batch.column("error").to_pylist()
    kinds = batch.column("error_kind").to_pylist()
    warnings = batch.column("warnings").to_pylist()
    out: dict[str, list] = {name: [] for name in ADDS}
    for i in range(batch.num_rows):
        decision = decide({b: lab[i] for b, (lab, _) in columns.items()},
                          {b: probs[i] for b, (_, probs) in columns.items()}, weights, priority, classes, fusion)
        for name in ADDS:
            out[name].append(getattr(decision, name))
        if decision.label is not None:
            if errors[i]:
                warnings[i] = "; ".join(w for w in (errors[i], warnings[i]) if w)
            status[i], errors[i], kinds[i] = STATUS_OK, None, None
        else:
            status[i] = STATUS_ERROR
            # A branch's failure is in warnings without its kind: kept, until --retry-errors.
            kinds[i] = kinds[i] if errors[i] else PERMANENT
            errors[i] = errors[i] or warnings[i] or "vote: no branch produced a label"
    for name, values in (("status", status), ("error", errors), ("error_kind", kinds), ("warnings", warnings)):
        batch = batch.set_column(batch.schema.get_field_index(name), name, pa.array(values, pa.string()))
    durations = batch.column("duration").to_pylist() if "duration" in batch.column_names else []
    metrics.finish(status, sum(d for d in durations if d), error_kinds(status, batch))
    record_vote(out["label"], out["agreement"])
    types = {"label": pa.string(), "vote_label": pa.string(), "probs": pa.list_(pa.float32())}
    for name in ADDS:
        batch = batch.append_column(name, pa.array(out[name], types.get(name, pa.float32())))
    return batch
