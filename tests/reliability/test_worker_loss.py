"""An input that kills its worker process: given up on after ray.max_worker_losses deaths, while the rest of
its batch is processed, instead of Ray Data retrying the batch forever."""

from __future__ import annotations

import os
import signal

import pyarrow as pa
import pytest

from ray_ser.config_types import StageResources
from ray_ser.stages.base import Stage, StagePlan

pytestmark = pytest.mark.usefixtures("ray_cluster")


class CrashOn(Stage):
    """A stage whose worker process dies (SIGKILL, as the OOM killer or a native crash would) on one input."""

    name = "crash-on"
    requires = ("utterance_id",)
    adds = ("seen_by",)

    def __init__(self, poison: str) -> None:
        self.poison = poison

    def process(self, batch: pa.Table) -> pa.Table:
        if self.poison in batch.column("utterance_id").to_pylist():
            os.kill(os.getpid(), signal.SIGKILL)
        return batch.append_column("seen_by", pa.array([os.getpid()] * batch.num_rows, pa.int64()))


def test_an_input_that_kills_its_worker_twice_becomes_a_worker_lost_row():
    import ray
    import ray.data

    from ray_ser.pipeline import apply_stage
    from ray_ser.stages.guard import guarded, start_ledger

    ids = [f"u{i:02d}" for i in range(12)]
    ledger_name = f"test-ledger-{os.getpid()}"
    ledger = start_ledger(ledger_name)
    plan = StagePlan("crash-on", CrashOn, {"poison": "u05"}, CrashOn.requires, CrashOn.adds,
                     StageResources(num_cpus=0.5, batch_size=4, min_actors=1, max_actors=1))
    ds = ray.data.from_arrow([pa.table({"utterance_id": ids[i:i + 4], "status": ["ok"] * 4})
                              for i in range(0, 12, 4)])
    rows = apply_stage(ds, guarded(plan, ledger_name, max_losses=2)).take_all()
    by_id = {r["utterance_id"]: r for r in rows}
    assert sorted(by_id) == ids  # every row, once
    assert by_id["u05"]["status"] == "error" and by_id["u05"]["error_kind"] == "transient"
    assert "worker lost (2 worker processes died" in by_id["u05"]["error"]
    assert all(by_id[i]["seen_by"] and by_id[i]["status"] == "ok" for i in ids if i != "u05")
    losses = ray.get(ledger.lost.remote())
    # The first death is charged to the whole batch; isolated, the culprit alone takes the second.
    assert losses["crash-on: u05"] == 2 and all(n == 1 for k, n in losses.items() if k != "crash-on: u05")
    ray.kill(ledger)
