"""What a person watching a run reads: one progress line for labeling, one line per epoch per
branch for training, and none of Ray's per-operator output (that stays in Ray's log directory).

Stages and training workers report each batch or epoch to a small board actor of their job
(``report_batch``, ``report_epoch``: fire and forget, silently skipped when no board runs, as
in Serve or a test calling a stage directly); the driver polls the board and prints
(``LabelProgress``, ``TrainProgress``). On a terminal the labeling line is rewritten in place; in
a log (``ray job logs``, CI) a new line is printed every ``log_interval_s``.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from typing import IO, Any

__all__ = ["report_batch", "report_epoch", "LabelProgress", "TrainProgress", "quiet_ray_console",
           "format_epoch", "format_progress"]

_BOARD_PREFIX = "ray_ser_progress_"
_LOOKUP_RETRY_S = 5.0


class _Board:
    """Counts per stage and the epochs reported so far, for one job."""

    def __init__(self) -> None:
        self.stages: dict[str, list[float]] = {}
        self.epochs: list[dict] = []

    def add(self, stage: str, rows: int, errors: int, audio_s: float) -> None:
        counts = self.stages.setdefault(stage, [0, 0, 0.0])
        counts[0] += rows
        counts[1] += errors
        counts[2] += audio_s

    def epoch(self, record: dict) -> None:
        self.epochs.append(record)

    def reset_stages(self) -> None:
        self.stages = {}

    def snapshot(self, epochs_seen: int = 0) -> tuple[dict[str, list[float]], list[dict]]:
        return self.stages, self.epochs[epochs_seen:]

    def epoch_count(self) -> int:
        return len(self.epochs)


def _board_key() -> tuple[str, str]:
    """(cluster, board name): one board per job, for the job's whole life."""
    import ray

    context = ray.get_runtime_context()
    return context.gcs_address, _BOARD_PREFIX + context.get_job_id()


_lookups: dict[tuple[str, str], tuple[Any, float]] = {}  # board key -> (handle or None, when looked up)
_started: dict[tuple[str, str], Any] = {}  # the driver's own handle: the board lives as long as the job


def _board() -> Any:
    """This job's board, or None (looked up again after a while: the driver may start it later)."""
    import ray

    if not ray.is_initialized():
        return None
    key = _board_key()
    handle, when = _lookups.get(key, (None, float("-inf")))
    if handle is None and time.monotonic() - when > _LOOKUP_RETRY_S:
        try:
            handle = ray.get_actor(key[1])
        except ValueError:
            handle = None
        _lookups[key] = (handle, time.monotonic())
    return handle


def report_batch(stage: str, rows: int, errors: int, audio_s: float) -> None:
    """A stage finished a batch (from StageMetrics.finish). Never raises."""
    try:
        board = _board()
        if board is not None:
            board.add.remote(stage, rows, errors, float(audio_s))
    except Exception:
        pass


def report_epoch(branch: str, metrics: dict, epochs: int) -> None:
    """Rank 0 of a branch's training run finished an epoch (train/loop.py). Never raises."""
    try:
        board = _board()
        if board is not None:
            keys = ("epoch", "train_loss", "val_macro_f1", "val_uar", "val_accuracy")
            board.epoch.remote({"branch": branch, "epochs": epochs, **{k: metrics[k] for k in keys if k in metrics}})
    except Exception:
        pass


def _start_board() -> Any:
    """The job's board, started once; workers keep the handle they looked up, so it is never replaced."""
    import ray

    key = _board_key()
    if key not in _started:
        actor = ray.remote(num_cpus=0, max_concurrency=1)(_Board)
        _started[key] = actor.options(name=key[1], get_if_exists=True).remote()
    return _started[key]


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def format_progress(done: int, total: int, errors: int, rows_per_s: float, audio_per_s: float,
                    elapsed_s: float, title: str = "labeling") -> str:
    """'labeling  120/400 rows (30%)  2.1 rows/s  5.3 audio-h/h  0 errors  ETA 2m13s'."""
    share = f" ({100 * done / total:.0f}%)" if total else ""
    if done >= total and total:
        eta = f"done in {_duration(elapsed_s)}"
    elif rows_per_s > 0:
        eta = f"ETA {_duration((total - done) / rows_per_s)}"
    else:
        eta = f"starting ({_duration(elapsed_s)})"
    return (f"{title}  {done}/{total} rows{share}  {rows_per_s:.1f} rows/s  {audio_per_s:.1f} audio-h/h  "
            f"{errors} error{'s' if errors != 1 else ''}  {eta}")


def format_epoch(record: dict, width: int = 12) -> str:
    """'train speech        epoch  3/24  loss 1.234  val macro-F1 0.456  UAR 0.470'."""
    epochs = record.get("epochs") or 0
    digits = len(str(epochs))
    return (f"train {record['branch']:<{width}}  epoch {record['epoch'] + 1:>{digits}}/{epochs}  "
            f"loss {record['train_loss']:.3f}  val macro-F1 {record['val_macro_f1']:.3f}  "
            f"UAR {record['val_uar']:.3f}")


class _Poller:
    """Starts the job's board and a thread that polls it every poll_s until closed."""

    def __init__(self, enabled: bool = True, stream: IO[str] | None = None, poll_s: float = 1.0) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.board: Any = None

    def __enter__(self):
        if self.enabled:
            try:
                self.board = _start_board()
                self._prepare()
            except Exception as exc:  # progress is a courtesy: the run goes on without it
                print(f"(no progress output: {type(exc).__name__}: {exc})", file=self.stream)
                self.enabled = False
                return self
            self._thread = threading.Thread(target=self._loop, name=type(self).__name__, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
            self._poll(final=exc_info[0] is None)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._poll(final=False)

    def _snapshot(self, epochs_seen: int = 0):
        import ray

        try:
            return ray.get(self.board.snapshot.remote(epochs_seen), timeout=10)
        except Exception:
            return None

    def _prepare(self) -> None:
        pass

    def _poll(self, final: bool) -> None:
        raise NotImplementedError


class LabelProgress(_Poller):
    """The labeling job's one line: rows done (of `total` inputs) by the last stage before the sink."""

    def __init__(self, total: int, stage: str, enabled: bool = True, stream: IO[str] | None = None,
                 log_interval_s: float = 15.0, title: str = "labeling") -> None:
        super().__init__(enabled, stream)
        self.total, self.stage, self.title = total, stage, title
        self.log_interval_s = log_interval_s
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._started = time.monotonic()
        self._samples: collections.deque = collections.deque(maxlen=120)  # (t, rows, audio_s)
        self._printed_at = float("-inf")
        self._written: tuple[int, int, float] | None = None

    def _prepare(self) -> None:
        import ray

        ray.get(self.board.reset_stages.remote())
        self._started = time.monotonic()

    def written(self, rows: int, errors: int, audio_s: float) -> None:
        """The driver's exact totals (summary rows) so far: the final line shows these."""
        self._written = (rows, errors, audio_s)

    def _poll(self, final: bool) -> None:
        snapshot = self._snapshot()
        now = time.monotonic()
        rows, errors, audio = (snapshot[0].get(self.stage, (0, 0, 0.0)) if snapshot else (0, 0, 0.0))
        if final and self._written is not None:
            rows, errors, audio = self._written
        rows, errors = int(rows), int(errors)
        self._samples.append((now, rows, audio))
        t0, rows0, audio0 = next(((t, r, a) for t, r, a in self._samples if now - t <= 60), self._samples[0])
        if final or now - t0 < 1e-6:
            t0, rows0, audio0 = self._started, 0, 0.0
        span = max(now - t0, 1e-6)
        line = format_progress(rows, self.total, errors, (rows - rows0) / span, (audio - audio0) / span,
                               now - self._started, self.title)
        if self.interactive:
            self.stream.write("\r" + line.ljust(100) + ("\n" if final else ""))
            self.stream.flush()
        elif final or (now - self._printed_at >= self.log_interval_s and rows < self.total):
            print(line, file=self.stream, flush=True)
            self._printed_at = now


class TrainProgress(_Poller):
    """One line per epoch per branch, as rank 0 of each run reports it."""

    def __init__(self, branches: list[str], enabled: bool = True, stream: IO[str] | None = None) -> None:
        super().__init__(enabled, stream)
        self.width = max((len(b) for b in branches), default=8)
        self._seen = 0

    def _prepare(self) -> None:
        import ray

        self._seen = ray.get(self.board.epoch_count.remote())  # earlier runs of this job are not news

    def _poll(self, final: bool) -> None:
        snapshot = self._snapshot(self._seen)
        if not snapshot:
            return
        for record in snapshot[1]:
            print(format_epoch(record, self.width), file=self.stream, flush=True)
        self._seen += len(snapshot[1])


def quiet_ray_console() -> None:
    """Ray Data's per-operator progress and INFO chatter go to its log files (ray-data.log), not
    to this process's terminal; warnings and errors still show."""
    import ray.data
    from ray.util.debug import log_once

    # Ray Data warns once that its bars are off; that is this function's point, not news.
    log_once("ray_data_progress_manager_disabled")
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    for handler in logging.getLogger("ray.data").handlers:
        if not type(handler).__name__.endswith("FileHandler"):
            handler.setLevel(logging.WARNING)
