"""Builds and runs the labeling plan. The ONLY place stage resources are applied.

    inputs -> decode (actor pool: VAD) -> asr (actor pool)
           -> one actor pool per branch -> vote (tasks) -> sink (tasks) -> summary rows

A speaker-normalised branch first needs every speaker's statistics: a pass over the rows that
name a speaker (decode -> speaker statistics) runs before the plan when one is configured.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from ray_ser.config import ConfigError
from ray_ser.io.manifest import read_inputs
from ray_ser.io.sink import scan_progress

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

    from ray_ser.config import LabelConfig, RayConfig, StageResources

__all__ = ["LabelSummary", "ray_session", "collect_speaker_statistics", "build_label_plan", "run_label_job",
           "new_run_id"]


@dataclass(frozen=True)
class LabelSummary:
    run_id: str
    output: str
    inputs: int
    already_complete: int
    duplicates_collapsed: int
    rows_written: int
    rows_ok: int
    files_written: int
    audio_seconds: float
    wall_seconds: float

    @property
    def rows_error(self) -> int:
        return self.rows_written - self.rows_ok

    @property
    def audio_seconds_per_second(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


@contextlib.contextmanager
def ray_session(cfg: RayConfig) -> Iterator[None]:
    """Connect to cfg.address, or start a local cluster; reuse one the caller already started."""
    import ray

    if ray.is_initialized():
        yield
        return
    kwargs: dict = {"include_dashboard": False, "log_to_driver": True}
    if cfg.address:
        ray.init(address=cfg.address, **kwargs)
    else:
        ray.init(num_cpus=cfg.num_cpus, _temp_dir=cfg.temp_dir, **kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def _actor_args(res: StageResources) -> dict:
    from ray.data import ActorPoolStrategy

    return {
        "compute": ActorPoolStrategy(min_size=res.min_actors, max_size=res.max_actors),
        "batch_size": res.batch_size,
        "num_cpus": res.num_cpus,
        "num_gpus": res.num_gpus,
    }


_MAX_INPUT_BLOCKS = 2000  # millions of tiny blocks would swamp the scheduler; batches still split them


def _to_blocks(table: pa.Table, batch_size: int) -> list[pa.Table]:
    rows_per_block = max(batch_size, math.ceil(table.num_rows / _MAX_INPUT_BLOCKS))
    count = max(1, math.ceil(table.num_rows / rows_per_block))
    return [table.slice(i * rows_per_block, rows_per_block) for i in range(count)]


def _decoded(cfg: LabelConfig, inputs: pa.Table, skip_ids: frozenset[str]) -> ray.data.Dataset:
    import ray.data

    from ray_ser.stages.decode import DecodeStage

    ray.data.DataContext.get_current().enable_progress_bars = cfg.ray.progress_bars
    return ray.data.from_arrow(_to_blocks(inputs, cfg.decode.resources.batch_size)).map_batches(
        DecodeStage, batch_format="pyarrow",
        fn_constructor_kwargs={"storage": cfg.storage, "decode": cfg.decode, "skip_ids": skip_ids},
        **_actor_args(cfg.decode.resources),
    )


def collect_speaker_statistics(cfg: LabelConfig, inputs: pa.Table) -> dict[str, dict]:
    """branch -> speaker -> statistics, for the speaker-normalised branches; {} when there are none."""
    import pyarrow.compute as pc

    from ray_ser.registry import uses_speaker_statistics
    from ray_ser.stages.speaker import SpeakerStatisticsStage, add_batches

    branches = {n: b for n, b in cfg.branches.items() if uses_speaker_statistics(b, cfg.storage)}
    if not branches:
        return {}
    named = inputs.filter(pc.and_(pc.is_valid(inputs.column("speaker")), pc.is_null(inputs.column("manifest_error"))))
    statistics = {name: {} for name in branches}
    if named.num_rows:
        ds = _decoded(cfg, named, frozenset()).map_batches(
            SpeakerStatisticsStage, batch_format="pyarrow",
            fn_constructor_kwargs={"branches": branches, "storage": cfg.storage,
                                   "cache_dir": str(cfg.resolved_cache_dir())},
            **_actor_args(cfg.speakers.resources),
        )
        statistics.update(add_batches(ds.iter_batches(batch_format="pyarrow", batch_size=None)))
    return statistics


def build_label_plan(cfg: LabelConfig, inputs: pa.Table, output_uri: str, run_id: str,
                     skip_ids: frozenset[str] = frozenset(),
                     speaker_statistics: dict[str, dict] | None = None) -> ray.data.Dataset:
    """The lazy Ray Data plan; iterating it writes Parquet and yields one summary row per file.

    speaker_statistics (branch -> speaker -> statistics) feeds speaker-normalised branches.
    """
    from ray_ser.stages.asr import AsrStage
    from ray_ser.stages.branch import BranchStage
    from ray_ser.stages.sink import write_batch
    from ray_ser.stages.vote import vote_batch

    speaker_statistics = speaker_statistics or {}
    ds = _decoded(cfg, inputs, skip_ids)
    if cfg.asr.enabled:
        asr_args = _actor_args(cfg.asr.resources)
        if cfg.asr.runtime_env:
            asr_args["runtime_env"] = cfg.asr.runtime_env
        ds = ds.map_batches(
            AsrStage, batch_format="pyarrow",
            fn_constructor_kwargs={"asr": cfg.asr, "cache_dir": str(cfg.resolved_cache_dir())},
            **asr_args,
        )
    for name, branch in cfg.branches.items():
        ds = ds.map_batches(
            BranchStage, batch_format="pyarrow",
            fn_constructor_kwargs={"name": name, "branch": branch, "storage": cfg.storage,
                                   "cache_dir": str(cfg.resolved_cache_dir()),
                                   "speaker_statistics": speaker_statistics.get(name),
                                   "pool_known_speakers": cfg.speakers.pool_known_speakers},
            **_actor_args(branch.resources),
        )
    names = tuple(cfg.branches)
    if names:
        ds = ds.map_batches(
            vote_batch, batch_format="pyarrow", num_cpus=cfg.sink.num_cpus,
            fn_kwargs={"branches": names, "weights": cfg.vote_weights(),
                       "priority": cfg.vote.priority},
        )
    return ds.map_batches(
        write_batch, batch_format="pyarrow", batch_size=cfg.sink.rows_per_file, num_cpus=cfg.sink.num_cpus,
        fn_kwargs={"output_uri": output_uri, "storage": cfg.storage, "compression": cfg.sink.compression,
                   "run_id": run_id, "branches": names},
    )


def run_label_job(cfg: LabelConfig, input_uri: str, output_uri: str, run_id: str | None = None) -> LabelSummary:
    """Label everything under input_uri into output_uri, resuming what an earlier run wrote."""
    import pyarrow as pa
    import pyarrow.compute as pc

    started = time.perf_counter()
    cfg.require_checkpoints()
    if not cfg.asr.enabled:
        text = [n for n, b in cfg.branches.items()
                if b.family == "text_classifier" or (b.family == "speech_llm" and b.llm_settings().use_transcript)]
        if text:
            raise ConfigError(f"branches {text} read transcripts; they need asr.enabled=true")
    run_id = run_id or new_run_id()
    input_set = read_inputs(input_uri, cfg.storage, cfg.speakers.column)
    progress = scan_progress(output_uri, cfg.storage)
    table = input_set.table
    if progress.complete_inputs:
        done = pc.is_in(table.column("input_id"), value_set=pa.array(sorted(progress.complete_inputs), pa.string()))
        table = table.filter(pc.invert(done))
    rows = ok = files = 0
    seconds = 0.0
    if table.num_rows:
        with ray_session(cfg.ray):
            # Statistics cover every input, labelled before or not: a speaker's profile does not
            # depend on where an interrupted run stopped.
            statistics = collect_speaker_statistics(cfg, input_set.table)
            plan = build_label_plan(cfg, table, output_uri, run_id, progress.partial_segment_ids, statistics)
            for batch in plan.iter_batches(batch_format="pyarrow", batch_size=None):
                rows += sum(batch.column("rows").to_pylist())
                ok += sum(batch.column("ok").to_pylist())
                files += sum(1 for f in batch.column("file").to_pylist() if f)
                seconds += sum(batch.column("audio_s").to_pylist())
    return LabelSummary(
        run_id=run_id, output=output_uri, inputs=input_set.table.num_rows,
        already_complete=input_set.table.num_rows - table.num_rows,
        duplicates_collapsed=input_set.duplicates_collapsed, rows_written=rows, rows_ok=ok,
        files_written=files, audio_seconds=seconds, wall_seconds=time.perf_counter() - started,
    )
