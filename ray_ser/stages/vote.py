"""The vote as a stateless Ray Data step: per-branch columns in, label/confidence/agreement out.

It also settles each row's status: a row any branch voted on is "ok" (an ASR failure
moves to ``warnings``, since the speech branches still voted); a row no branch could
label is "error" with the first reason found, and that error's kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray_ser.schema import PERMANENT, STATUS_ERROR, STATUS_OK
from ray_ser.stages.base import StagePlan, require_columns
from ray_ser.vote import BranchVote, majority_vote

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config import LabelConfig

__all__ = ["vote_batch", "plan"]

ADDS = ("label", "confidence", "agreement")


def _requires(branches: tuple[str, ...]) -> tuple[str, ...]:
    return ("status", "error", "error_kind", "warnings", *(f"{b}_{c}" for b in branches for c in ("label", "probs")))


def plan(cfg: LabelConfig) -> StagePlan:
    branches = tuple(cfg.branches)
    return StagePlan("vote", vote_batch, {"branches": branches, "weights": cfg.vote_weights(),
                                          "priority": cfg.vote.priority},
                     _requires(branches), ADDS, cfg.vote.resources)


def vote_batch(batch: pa.Table, *, branches: tuple[str, ...], weights: dict[str, float],
               priority: tuple[str, ...]) -> pa.Table:
    import pyarrow as pa

    require_columns("vote", batch, _requires(branches))
    columns = {b: (batch.column(f"{b}_label").to_pylist(), batch.column(f"{b}_probs").to_pylist())
               for b in branches}
    status = batch.column("status").to_pylist()
    errors = batch.column("error").to_pylist()
    kinds = batch.column("error_kind").to_pylist()
    warnings = batch.column("warnings").to_pylist()
    labels, confidence, agreement = [], [], []
    for i in range(batch.num_rows):
        votes = {b: BranchVote(lab[i], probs[i]) if lab[i] is not None else None
                 for b, (lab, probs) in columns.items()}
        result = majority_vote(votes, weights, priority)
        labels.append(result.label)
        confidence.append(result.confidence)
        agreement.append(result.agreement)
        if result.label is not None:
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
    return (batch.append_column("label", pa.array(labels, pa.string()))
            .append_column("confidence", pa.array(confidence, pa.float32()))
            .append_column("agreement", pa.array(agreement, pa.float32())))
