"""Builds and runs the labeling plan. ``apply_stage`` is the ONLY place Ray Data resources are applied.

    inputs -> decode (actor pool: VAD) -> asr (actor pool)
           -> one actor pool per branch -> vote (tasks) -> sink (tasks) -> summary rows

The plan is a list of ``StagePlan`` entries (ray_ser/stages/base.py): their declared columns are
checked against each other when the plan is built, before any model loads. A speaker-normalised
branch first needs every speaker's statistics: a pass over the rows that name a speaker (decode
-> speaker statistics) runs before the plan when one is configured.

Nothing lost, nothing duplicated (README, "Exactly once"): a run holds the output's lease
(ray_ser/io/lease.py) from before it reads what is written until it ends; it moves unreadable
parts aside, removes the rows it is about to label again (transient errors, or every error with
``retry_errors``) and skips what is complete (ray_ser/io/sink.py); every actor stage runs behind
the worker-loss guard (ray_ser/stages/guard.py).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ray_ser.io.manifest import read_inputs
from ray_ser.io.sink import purge_inputs, remove_temp_files, scan_progress

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

    from ray_ser.config import LabelConfig
    from ray_ser.stages.base import StagePlan
    from ray_ser.stages.speaker import SpeakerProfiles

__all__ = ["LabelSummary", "collect_speaker_statistics", "label_plan", "stage_arguments", "apply_stage",
           "label_progress", "run_label_job", "new_run_id", "refuse_local_output_on_cluster", "guard_plan",
           "output_lease"]


@dataclass(frozen=True)
class LabelSummary:
    run_id: str
    output: str
    inputs: int
    already_complete: int
    duplicate_ids: int          # manifest rows repeating an id, labelled apart (manifest.duplicate_ids)
    rows_written: int
    rows_ok: int
    files_written: int
    audio_seconds: float
    wall_seconds: float
    retried_inputs: int = 0     # inputs labelled again: their earlier rows were errors worth retrying
    quarantined_parts: int = 0  # unreadable parts moved to _quarantine/ (their inputs labelled again)
    inputs_given_up: int = 0    # rows whose worker died under them ray.max_worker_losses times: "worker lost"
    branches: tuple[str, ...] = ()  # the profile's branches, whose rows the summary counts one by one

    @property
    def rows_error(self) -> int:
        return self.rows_written - self.rows_ok

    @property
    def audio_seconds_per_second(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def stage_arguments(plan: StagePlan) -> dict:
    """``map_batches`` arguments for one stage: its resources, pool bounds and batch size from config.
    (A pure function, so what the config asks of Ray Data can be read without a cluster.)"""
    from ray.data import ActorPoolStrategy

    if plan.is_actor:
        res = plan.resources
        return {"fn_constructor_kwargs": plan.kwargs,
                "compute": ActorPoolStrategy(min_size=res.min_actors, max_size=res.max_actors),
                "batch_size": res.batch_size, "num_cpus": res.num_cpus, "num_gpus": res.num_gpus,
                **({"runtime_env": plan.runtime_env} if plan.runtime_env else {})}
    return {"fn_kwargs": plan.kwargs, "batch_size": plan.batch_size, "num_cpus": plan.resources.num_cpus}


def apply_stage(ds: ray.data.Dataset, plan: StagePlan) -> ray.data.Dataset:
    """One stage of the plan on the dataset, scheduled with its configured resources."""
    return ds.map_batches(plan.udf, batch_format="pyarrow", **stage_arguments(plan))


_MAX_INPUT_BLOCKS = 2000  # millions of tiny blocks would swamp the scheduler; batches still split them


def _to_blocks(table: pa.Table, batch_size: int) -> list[pa.Table]:
    rows_per_block = max(batch_size, math.ceil(table.num_rows / _MAX_INPUT_BLOCKS))
    count = max(1, math.ceil(table.num_rows / rows_per_block))
    return [table.slice(i * rows_per_block, rows_per_block) for i in range(count)]


def configure_data_context(cfg: LabelConfig) -> None:
    """Ray Data's driver-side settings: its per-operator progress goes to its log files only (the
    driver prints one line of its own, ``label_progress``); its block size from the profile."""
    import ray.data

    from ray_ser.progress import quiet_ray_console

    quiet_ray_console()
    ray.data.DataContext.get_current().target_max_block_size = cfg.ray.block_mb * 2**20


def label_progress(cfg: LabelConfig, total: int, plans: list[StagePlan], title: str = "labeling",
                   stage: str | None = None):
    """The driver's progress line over a plan: rows done by ``stage`` (default: the last stage before
    the sink) of ``total``; silent when ``ray.progress_bars`` is off."""
    from ray_ser.progress import LabelProgress

    watched = stage or (plans[-2] if len(plans) > 1 else plans[-1]).name
    return LabelProgress(total, watched.replace(" ", "_"), enabled=cfg.ray.progress_bars, title=title)


def check_cluster_fits(plans: list[StagePlan], can_grow: bool) -> None:
    """Before Ray Data starts: a cluster that can never hold the plan's minimum (every actor pool's smallest
    size and a task) is a ConfigError naming what each stage asks for, since Ray Data would wait forever for
    the actor it cannot place. On a cluster that can grow (an address: the autoscaler may add nodes), or
    when other work holds what the plan needs now, the job waits, and says so on stderr."""
    import sys

    import ray

    from ray_ser.config import ConfigError
    from ray_ser.stages.base import minimum_resources

    need = minimum_resources(plans)
    total, free = ray.cluster_resources(), ray.available_resources()
    short = {k: v for k, v in need.items() if v > total.get(k, 0.0) + 1e-9}
    if short:
        asks = ", ".join(f"{p.name} {p.resources.min_actors} x {p.resources.num_cpus:g} CPU"
                         + (f" {p.resources.num_gpus:g} GPU" if p.resources.num_gpus else "")
                         for p in plans if p.is_actor)
        what = " and ".join(f"{v:g} {k}" for k, v in short.items())
        has = " and ".join(f"{total.get(k, 0.0):g} {k}" for k in short)
        message = (f"the plan needs at least {what} at once and the cluster has {has} (actor pools at their "
                   f"min_actors: {asks}; plus the largest task). Lower a stage's resources.num_cpus/num_gpus or "
                   f"min_actors, or give the cluster more (ray.num_cpus for a local one)")
        if not can_grow:
            raise ConfigError(message)
        print(f"ray-ser: waiting for the cluster to grow: {message}", file=sys.stderr)
        return
    busy = {k: v for k, v in need.items() if v > free.get(k, 0.0) + 1e-9}
    if busy:
        held = ", ".join(f"{v:g} {k} needed, {free.get(k, 0.0):g} free" for k, v in busy.items())
        print(f"ray-ser: other work on the cluster holds what this job needs to start ({held}): it waits for it",
              file=sys.stderr)


def _run(cfg: LabelConfig, inputs: pa.Table, plans: list[StagePlan], ledger: str | None = None) -> ray.data.Dataset:
    import ray.data

    from ray_ser.stages.base import check_columns

    check_columns(inputs.column_names, plans)
    check_cluster_fits(plans, can_grow=cfg.ray.address is not None)
    configure_data_context(cfg)
    ds = ray.data.from_arrow(_to_blocks(inputs, cfg.decode.resources.batch_size))
    for plan in plans:
        ds = apply_stage(ds, guard_plan(cfg, plan, ledger) if ledger else plan)
    return ds


def guard_plan(cfg: LabelConfig, plan: StagePlan, ledger: str) -> StagePlan:
    """An actor stage behind the worker-loss guard of the run's ledger (ray_ser/stages/guard.py)."""
    from ray_ser.stages.guard import guarded

    return guarded(plan, ledger, cfg.ray.max_worker_losses)


def output_lease(cfg: LabelConfig, output_uri: str, run_id: str):
    """This run's lease on its output (ray_ser/io/lease.py): ``with output_lease(...) as lease:``."""
    from ray_ser.io.lease import OutputLease

    return OutputLease(output_uri, cfg.storage, run_id, cfg.sink.lease_ttl_s)


def refuse_local_output_on_cluster(output_uri: str) -> None:
    """A local output is where the sink task ran: on a cluster of several nodes, parts would be spread over
    their disks, out of sight of this run's resume scan. Refused before any work."""
    import ray

    from ray_ser.config import ConfigError
    from ray_ser.io.storage import is_s3

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if not is_s3(output_uri) and len(nodes) > 1:
        raise ConfigError(f"--output {output_uri} is a local path, but this Ray cluster has {len(nodes)} nodes: "
                          "parts written on other nodes would land on their disks, where a resumed run cannot see "
                          "them. Write to object storage (s3://bucket/prefix) instead")


def collect_speaker_statistics(cfg: LabelConfig, inputs: pa.Table, ledger: str | None = None) -> SpeakerProfiles:
    """Every speaker's statistics for the speaker-normalised branches, and the voice group of each clip
    that names no speaker (speakers.estimate); empty when no branch is speaker-normalised. With a ledger
    (the name of a running WorkerLossLedger), its actor stages run behind the worker-loss guard."""
    import pyarrow.compute as pc

    from ray_ser.core.branch import uses_speaker_statistics
    from ray_ser.stages.decode import decode_plans
    from ray_ser.stages.speaker import SpeakerProfiles, SpeakerStatisticsStage, add_batches

    branches = tuple(n for n, b in cfg.branches.items() if uses_speaker_statistics(b, cfg.storage))
    if not branches:
        return SpeakerProfiles()
    readable = pc.is_null(inputs.column("manifest_error"))
    estimate = cfg.speakers.estimate
    rows = inputs.filter(readable if estimate else pc.and_(pc.is_valid(inputs.column("speaker")), readable))
    profiles = SpeakerProfiles({name: {} for name in branches})
    if rows.num_rows:
        plans = [*decode_plans(cfg), SpeakerStatisticsStage.plan(branches, cfg)]
        with label_progress(cfg, rows.num_rows, plans, title="speaker profiles", stage=plans[0].name):
            found = add_batches(_run(cfg, rows, plans, ledger).iter_batches(batch_format="pyarrow", batch_size=None),
                                cfg.speakers)
        profiles.statistics.update(found.statistics)
        profiles.clusters = found.clusters
    return profiles


def label_plan(cfg: LabelConfig, output_uri: str, run_id: str, skip_ids: frozenset[str] = frozenset(),
               speakers: SpeakerProfiles | None = None) -> list[StagePlan]:
    """The labeling job's stages in order: decode (and long recordings' segments), (voice groups,) ASR, each
    branch, the decision, the sink."""
    from ray_ser.core.branch import shares_asr_encoder
    from ray_ser.stages import sink, vote
    from ray_ser.stages.asr import AsrStage
    from ray_ser.stages.branch import BranchStage
    from ray_ser.stages.decode import decode_plans
    from ray_ser.stages.speaker import SpeakerProfiles, cluster_plan

    speakers = speakers or SpeakerProfiles()
    grouped = bool(speakers.clusters)
    sharing = {name for name, branch in cfg.branches.items() if shares_asr_encoder(branch, cfg)}
    plans = decode_plans(cfg, skip_ids)
    if grouped:
        plans.append(cluster_plan(cfg, speakers.clusters))
    if cfg.asr.enabled:
        plans.append(AsrStage.plan(cfg, pooled_states=bool(sharing)))
    plans += [BranchStage.plan(name, cfg, speakers.statistics.get(name), name in sharing, grouped)
              for name in cfg.branches]
    if cfg.branches:
        plans.append(vote.plan(cfg))
    plans.append(sink.plan(cfg, output_uri, run_id))
    return plans


def job_inputs(cfg: LabelConfig, input_uri: str):
    """The job's inputs (ray_ser/io/manifest.py), the speaker column as the profile names it."""
    return read_inputs(input_uri, cfg.storage, cfg.columns.speaker, cfg.manifest.duplicate_ids, cfg.columns.language)


def run_label_job(cfg: LabelConfig, input_uri: str, output_uri: str, run_id: str | None = None,
                  retry_errors: bool = False) -> LabelSummary:
    """Label everything under input_uri into output_uri, resuming what earlier runs wrote.

    Inputs whose rows are transient errors are labelled again; with retry_errors, every error row's input.
    Raises OutputBusyError while another run writes output_uri, ManifestError for an unusable manifest.
    """
    import pyarrow.compute as pc
    import ray

    from ray_ser.core.branch import require_matching_classes
    from ray_ser.runtime import ray_session
    from ray_ser.stages.guard import start_ledger

    started = time.perf_counter()
    cfg.require_checkpoints()
    cfg.require_transcripts()
    cfg.require_fusion()
    require_matching_classes(cfg)
    run_id = run_id or new_run_id()
    input_set = job_inputs(cfg, input_uri)
    rows = ok = files = given_up = 0
    seconds = 0.0
    with output_lease(cfg, output_uri, run_id) as lease:
        remove_temp_files(output_uri, cfg.storage)
        progress = scan_progress(output_uri, cfg.storage, retry_errors)
        if progress.purge:
            purge_inputs(output_uri, cfg.storage, progress, cfg.sink.compression)
        table = input_set.table
        if progress.complete_count:
            table = table.filter(pc.invert(pc.is_in(table.column("input_id"), value_set=progress.complete_inputs)))
        if table.num_rows:
            with ray_session(cfg.ray):
                refuse_local_output_on_cluster(output_uri)
                ledger_name = f"ray_ser-ledger-{run_id}"
                ledger = start_ledger(ledger_name)
                # Statistics cover every input, labelled before or not: a speaker's profile does not
                # depend on where an interrupted run stopped.
                speakers = collect_speaker_statistics(cfg, input_set.table, ledger_name)
                plans = label_plan(cfg, output_uri, run_id, progress.partial_segment_ids, speakers)
                with label_progress(cfg, table.num_rows, plans) as line:
                    for batch in _run(cfg, table, plans, ledger_name).iter_batches(batch_format="pyarrow",
                                                                                    batch_size=None):
                        lease.check()
                        rows += sum(batch.column("rows").to_pylist())
                        ok += sum(batch.column("ok").to_pylist())
                        files += sum(1 for f in batch.column("file").to_pylist() if f)
                        seconds += sum(batch.column("audio_s").to_pylist())
                        line.written(rows, rows - ok, seconds)
                given_up = sum(n >= cfg.ray.max_worker_losses for n in ray.get(ledger.lost.remote()).values())
                ray.kill(ledger)
    return LabelSummary(
        run_id=run_id, output=output_uri, inputs=input_set.table.num_rows,
        already_complete=input_set.table.num_rows - table.num_rows, duplicate_ids=input_set.duplicate_ids,
        rows_written=rows, rows_ok=ok, files_written=files, audio_seconds=seconds,
        wall_seconds=time.perf_counter() - started, retried_inputs=len(progress.retry_inputs),
        quarantined_parts=len(progress.quarantined), inputs_given_up=given_up, branches=tuple(cfg.branches),
    )
