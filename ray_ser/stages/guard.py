"""Inputs that kill their worker: found, and given up on, instead of retried forever.

Ray Data restarts a dead actor and retries its batch without limit. An input that crashes the
process every time (a native decoder crash, the OOM killer) would hang the job. So every actor
stage of the plan runs behind ``GuardedStage``, which tells a run-wide ``WorkerLossLedger`` actor
which rows it is processing before it starts and that it is done after:

- a row still marked as in progress when its batch comes back (the worker died under it) gets
  one loss;
- a batch holding a row with a loss is processed one row at a time, each row marked alone, so
  the next death is charged to the culprit only;
- a row with ray.max_worker_losses losses is not processed again: the stage's ``give_up`` output
  makes it an error row "worker lost" (kind transient, so the next run tries it once more), and
  the rest of its batch is written.

Each call returns one table, whatever happened, so Ray's retry of a batch is all or nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import ray

from ray_ser.schema import TRANSIENT

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.stages.base import StagePlan

__all__ = ["WorkerLossLedger", "GuardedStage", "guarded", "start_ledger"]

log = logging.getLogger("ray_ser.guard")


@ray.remote(num_cpus=0)
class WorkerLossLedger:
    """Which rows each stage is processing, and how many workers died processing each."""

    def __init__(self) -> None:
        self.in_progress: set[tuple[str, str]] = set()
        self.losses: dict[tuple[str, str], int] = {}

    def begin(self, stage: str, keys: list[str]) -> list[int]:
        """Mark the rows in progress; a row found in progress already lost a worker. Its losses, per row."""
        out = []
        for key in keys:
            slot = (stage, key)
            if slot in self.in_progress:
                self.losses[slot] = self.losses.get(slot, 0) + 1
            self.in_progress.add(slot)
            out.append(self.losses.get(slot, 0))
        return out

    def end(self, stage: str, keys: list[str]) -> None:
        self.in_progress.difference_update((stage, key) for key in keys)

    def lost(self) -> dict[str, int]:
        """'<stage>: <key>' -> losses, for rows that lost at least one worker."""
        return {f"{stage}: {key}": n for (stage, key), n in self.losses.items()}


def start_ledger(name: str):
    """The run's ledger (one per labeling run, gone with the driver)."""
    return WorkerLossLedger.options(name=name, get_if_exists=True).remote()


def _keys(batch: pa.Table) -> list[str]:
    column = "utterance_id" if "utterance_id" in batch.column_names else "input_id"
    return [str(k) for k in batch.column(column).to_pylist()]


class GuardedStage:
    """A stage of the plan, with its rows' worker losses counted in the run's ledger."""

    def __init__(self, stage: type, kwargs: dict[str, Any], ledger: str, max_losses: int) -> None:
        self.stage = stage(**kwargs)
        self.name = self.stage.name
        self.ledger = ray.get_actor(ledger)
        self.max_losses = max_losses

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        keys = _keys(batch)
        losses = ray.get(self.ledger.begin.remote(self.name, keys))
        if not any(losses):
            out = self.stage(batch)
            self.ledger.end.remote(self.name, keys)
            return out
        log.warning("%s: a worker died processing this batch before; processing its %d rows one at a time",
                    self.name, len(keys))
        ray.get(self.ledger.end.remote(self.name, keys))
        pieces = []
        for i, key in enumerate(keys):
            row = batch.slice(i, 1)
            lost = ray.get(self.ledger.begin.remote(self.name, [key]))[0]
            if lost >= self.max_losses:
                reason = f"{self.name}: worker lost ({lost} worker processes died processing this input)"
                log.error("%s: giving up on %s: %s", self.name, key, reason)
                pieces.append(self.stage.give_up(row, reason, TRANSIENT))
            else:
                pieces.append(self.stage(row))
            self.ledger.end.remote(self.name, [key])
        return pa.concat_tables(pieces, promote_options="permissive")


def guarded(plan: StagePlan, ledger: str, max_losses: int) -> StagePlan:
    """The plan entry of an actor stage, run behind GuardedStage (function stages are left as they are)."""
    from dataclasses import replace

    if not plan.is_actor:
        return plan
    # Named after the stage, so Ray Data's operators keep their names (MapBatches(DecodeStage)).
    named = type(plan.udf.__name__, (GuardedStage,), {"__qualname__": plan.udf.__name__})
    return replace(plan, udf=named, kwargs={"stage": plan.udf, "kwargs": plan.kwargs, "ledger": ledger,
                                            "max_losses": max_losses})
