"""The driver's progress output, fed by real stages and trainers running as Ray tasks on a real
local cluster: they report to the job's board, the driver polls it and prints."""

from __future__ import annotations

import io
import time

from ray_ser.progress import LabelProgress, TrainProgress, format_epoch, format_progress


def test_progress_line_reads_as_a_person_wants_it():
    line = format_progress(120, 400, 2, 2.0, 5.3, 60)
    assert line == "labeling  120/400 rows (30%)  2.0 rows/s  5.3 audio-h/h  2 errors  ETA 2m20s"
    assert format_progress(400, 400, 1, 2.0, 5.3, 3725).endswith("1 error  done in 1h02m")
    assert format_progress(0, 400, 0, 0.0, 0.0, 12).endswith("starting (12s)")
    record = {"branch": "speech", "epochs": 24, "epoch": 2, "train_loss": 1.23456, "val_macro_f1": 0.5, "val_uar": 0.47}
    assert format_epoch(record, 8) == "train speech    epoch  3/24  loss 1.235  val macro-F1 0.500  UAR 0.470"


def _wait_for(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.2)


def test_stages_in_ray_workers_feed_the_drivers_progress_line(ray_cluster):
    import ray

    from ray_ser.metrics import StageMetrics

    # Fresh worker processes (their own runtime env): a worker that looked for the board while an
    # earlier test's job ran without progress output remembers "no board" for a few seconds.
    @ray.remote(num_cpus=0, runtime_env={"env_vars": {"RAY_SER_TEST_WORKERS": "progress"}})
    def batch(statuses: list[str], seconds: float, stage: str = "vote") -> None:  # a stage's work per batch
        metrics = StageMetrics(stage)
        metrics.start()
        metrics.finish(statuses, seconds)

    out = io.StringIO()
    with LabelProgress(total=5, stage="vote", stream=out, log_interval_s=0) as line:
        line.poll_s = 0.1
        ray.get([batch.remote(["ok", "ok", "error"], 7.5), batch.remote(["ok"], 2.5)])
        ray.get(batch.remote(["ok", "ok"], 1.0, "asr"))  # an earlier stage's rows are not done rows
        _wait_for(lambda: "4/5 rows" in out.getvalue())
        line.written(5, 1, 10.0)  # the sink's exact totals, which the last line shows
    lines = out.getvalue().strip().splitlines()
    assert any(l.startswith("labeling  4/5 rows (80%)") and " 1 error " in l for l in lines[:-1]), lines
    assert not any("6/5" in l for l in lines), lines
    assert lines[-1].startswith("labeling  5/5 rows (100%)") and " 1 error  done in" in lines[-1]


def test_training_workers_epochs_become_one_line_each(ray_cluster):
    import ray

    from ray_ser.progress import report_epoch

    @ray.remote(num_cpus=0, runtime_env={"env_vars": {"RAY_SER_TEST_WORKERS": "progress"}})  # as above
    def epoch(branch: str, n: int) -> None:  # what rank 0's report callback does (train/loop.py)
        report_epoch(branch, {"epoch": n, "train_loss": 1.0 / (n + 1), "val_macro_f1": 0.1 * n, "val_uar": 0.1 * n,
                              "val_accuracy": 0.0, "history": [{"epoch": 0}]}, epochs=2)

    out = io.StringIO()
    with TrainProgress(["prosody", "speech"], stream=out):
        ray.get([epoch.remote("prosody", 0), epoch.remote("speech", 0)])
        ray.get([epoch.remote("prosody", 1)])
    lines = sorted(out.getvalue().strip().splitlines())
    assert lines == ["train prosody  epoch 1/2  loss 1.000  val macro-F1 0.000  UAR 0.000",
                     "train prosody  epoch 2/2  loss 0.500  val macro-F1 0.100  UAR 0.100",
                     "train speech   epoch 1/2  loss 1.000  val macro-F1 0.000  UAR 0.000"]
    assert "history" not in out.getvalue()


def test_reporting_without_a_board_or_a_cluster_is_silent():
    from ray_ser.metrics import StageMetrics

    metrics = StageMetrics("asr")
    metrics.start()
    metrics.finish(["ok", "error"], 1.0)  # no Ray here: nothing to report to, nothing raised
