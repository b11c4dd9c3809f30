"""What every stage shares: declared columns, a setup/teardown lifecycle, and the plan entry the
pipeline builder checks and schedules.

A stage class loads its model in ``__init__`` (setup, on the actor), processes a batch in
``process``, and releases what it holds in ``teardown`` (Ray Data deletes the callable when its
actor pool shuts down). ``__call__`` checks the declared columns first, so a wiring mistake is a
clear error rather than a KeyError deep in a model. A ``StagePlan`` names a stage with its
arguments, its declared columns and its resources; ``check_columns`` walks the plans' column
chain when the plan is built, before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ray_ser.core.errors import error_reason, predict_isolating_failures

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config_types import StageResources, TaskResources

__all__ = ["StageContractError", "Stage", "StagePlan", "check_columns", "minimum_resources", "require_columns",
           "error_reason", "append_warning", "predict_isolating_failures"]


class StageContractError(RuntimeError):
    """A batch lacks columns the stage declares it needs: a wiring bug, so it is fatal."""


def require_columns(stage: str, batch: pa.Table, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in batch.column_names]
    if missing:
        raise StageContractError(
            f"stage {stage!r} needs columns {list(required)}; the batch lacks {missing} "
            f"(has {batch.column_names}). Check the stage order in ray_ser.pipeline."
        )


class Stage:
    """Base of the callable stage classes (Ray Data actor pools)."""

    name: str = "stage"
    requires: tuple[str, ...] = ()
    adds: tuple[str, ...] = ()

    def __call__(self, batch: pa.Table) -> pa.Table:
        require_columns(self.name, batch, self.requires)
        return self.process(batch)

    def process(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError

    def give_up(self, batch: pa.Table, reason: str, kind: str) -> pa.Table:
        """The stage's output for rows it will not process (their worker kept dying): each row an
        error with this reason and kind, the stage's added columns empty (ray_ser/stages/guard.py)."""
        import pyarrow as pa

        from ray_ser.schema import STATUS_ERROR

        n = batch.num_rows
        for name, value in (("status", STATUS_ERROR), ("error", reason), ("error_kind", kind)):
            column = pa.array([value] * n, pa.string())
            index = batch.schema.get_field_index(name)
            batch = batch.set_column(index, name, column) if index >= 0 else batch.append_column(name, column)
        for name in self.adds:
            if name not in batch.column_names:
                batch = batch.append_column(name, pa.nulls(n))
        return batch

    def teardown(self) -> None:
        """Release what setup acquired (a vLLM engine's processes); called once, when the pool ends."""

    def __del__(self) -> None:
        try:
            self.teardown()
        except Exception:  # interpreter shutdown: nothing left to report to
            pass


@dataclass(frozen=True)
class StagePlan:
    """One step of the labeling plan, as the pipeline builder schedules it.

    ``udf`` is a Stage class (an actor pool with ``StageResources``) or a function (tasks with
    ``TaskResources``); ``kwargs`` go to its constructor or as keyword arguments.
    """

    name: str
    udf: type | Callable[..., Any]
    kwargs: dict[str, Any]
    requires: tuple[str, ...]
    adds: tuple[str, ...]
    resources: StageResources | TaskResources
    runtime_env: dict[str, Any] | None = None
    batch_size: int | None = None  # tasks only: rows per call (None: whole blocks)
    removes: tuple[str, ...] = field(default=())

    @property
    def is_actor(self) -> bool:
        return isinstance(self.udf, type)


def minimum_resources(plans: Sequence[StagePlan]) -> dict[str, float]:
    """The least a plan needs at once to make progress: every actor pool's smallest size, plus room for the
    largest of its tasks. Ray Data starts every pool before rows flow through all of them, so a cluster
    with less than this never finishes the job: it waits for an actor that cannot be placed."""
    need = {"CPU": 0.0, "GPU": 0.0}
    largest_task = 0.0
    for plan in plans:
        res = plan.resources
        if plan.is_actor:
            need["CPU"] += res.min_actors * res.num_cpus
            need["GPU"] += res.min_actors * res.num_gpus
        else:
            largest_task = max(largest_task, res.num_cpus)
    need["CPU"] += largest_task
    return need


def check_columns(initial: Iterable[str], plans: Sequence[StagePlan]) -> None:
    """Walk the plans' declared columns from the input's: every stage finds what it needs."""
    available = set(initial)
    for plan in plans:
        missing = [c for c in plan.requires if c not in available]
        if missing:
            raise StageContractError(f"stage {plan.name!r} needs columns {missing} that no earlier stage adds "
                                     f"(available: {sorted(available)})")
        available = (available - set(plan.removes)) | set(plan.adds)


def append_warning(batch: pa.Table, new: list[str | None]) -> pa.Table:
    """Add per-row warnings to the ``warnings`` column ("; "-joined), creating it if absent."""
    import pyarrow as pa

    if "warnings" in batch.column_names:
        old = batch.column("warnings").to_pylist()
        merged = ["; ".join(w for w in (a, b) if w) or None for a, b in zip(old, new)]
        return batch.set_column(batch.schema.get_field_index("warnings"), "warnings", pa.array(merged, pa.string()))
    return batch.append_column("warnings", pa.array(new, pa.string()))
