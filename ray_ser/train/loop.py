"""Ray Train fine-tuning of one branch: TorchTrainer, DDP over N workers, any branch family.

Each epoch reports the training loss and validation macro-F1/UAR/accuracy; the
checkpoint with the best validation macro-F1 is kept, on local or s3:// storage, and
loads by path in the labeling job and in Serve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray_ser.config import LabelConfig
    from ray_ser.config_types import BranchBase, TrainBase
    from ray_ser.train.fusion import FusionResult

__all__ = ["TrainResult", "train_loop_per_worker", "fit_branch", "fit_branches", "train_branches", "adapt_branch",
           "format_train_result", "trainable_branches", "union_manifest", "BranchTrainingError", "scaling_arguments",
           "adaptation", "TrainingSummary", "format_fusion"]


@dataclass(frozen=True)
class TrainResult:
    branch: str
    checkpoint: str            # the directory BranchConfig.checkpoint should name
    best: dict                 # metrics of the kept epoch
    history: list[dict]        # one entry per epoch
    wall_seconds: float
    started_at: float = 0.0    # time.time() when the trainer was launched


def train_loop_per_worker(config: dict) -> None:
    """What each Ray Train worker runs: ray_ser.train.run.run_training with this worker's rank, DDP, and
    each epoch reported to Ray Train (with a checkpoint when the epoch is kept)."""
    import os
    import tempfile

    import ray.train
    import ray.train.torch

    from ray_ser.config import LabelConfig
    from ray_ser.metrics import record_epoch
    from ray_ser.progress import report_epoch
    from ray_ser.train.run import WorkerContext, run_training

    cfg = LabelConfig.model_validate(config["profile"])
    branch = cfg.branch(config["branch"])
    train = type(branch.train).model_validate(config["train"])  # the branch's, or adapt's variant of it
    ctx = ray.train.get_context()

    def report(metrics: dict, save) -> None:
        if ctx.get_world_rank() == 0:  # every rank holds the same gathered figures: one reports them
            record_epoch(config["branch"], metrics)
            report_epoch(config["branch"], metrics, train.epochs)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if save is not None:
                save(os.path.join(tmp, "branch"))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)

    worker = WorkerContext(
        rank=ctx.get_world_rank(), world=ctx.get_world_size(), report=report,
        prepare_model=lambda model: ray.train.torch.prepare_model(
            model, parallel_strategy_kwargs={"find_unused_parameters": True}))
    run_training(cfg, config["branch"], train, config["manifest"], worker, config.get("shots"))


def fit_branch(cfg: LabelConfig, name: str, manifest: str, output_uri: str, shots: dict | None = None,
               train: object | None = None) -> TrainResult:
    """Run the TorchTrainer for cfg.branches[name] (Ray must be initialised); return the best checkpoint.

    The branch's train section sets the workers (the one place Ray Train resources are read);
    ``train`` replaces it (``ray-ser adapt``). With shots ({"k": .., "seed": ..}) only k rows drawn
    from the manifest are trained on, and the last epoch is kept: k examples leave nothing to
    validate on.
    """
    import time

    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ray_ser.io.storage import filesystem_for

    branch = cfg.branch(name)
    train = train or branch.train
    if train is None:
        raise ValueError(f"branch {name!r} has no train section to fine-tune from")
    started, started_at = time.perf_counter(), time.time()
    fs, path = filesystem_for(output_uri, cfg.storage)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"profile": cfg.model_dump(mode="json"), "branch": name,
                           "train": train.model_dump(mode="json"), "manifest": manifest, "shots": shots},
        scaling_config=ScalingConfig(**scaling_arguments(train)),
        run_config=RunConfig(
            name=name, storage_path=path, storage_filesystem=fs,
            checkpoint_config=(CheckpointConfig(num_to_keep=1) if shots else CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute="val_macro_f1", checkpoint_score_order="max")),
        ),
    )
    result = trainer.fit()
    best, metrics = result.best_checkpoints[0]
    location = best.path if not output_uri.startswith("s3://") else f"s3://{best.path}"
    return TrainResult(branch=name, checkpoint=f"{location}/branch",
                       best={k: v for k, v in metrics.items() if k != "history"},
                       history=result.metrics["history"], wall_seconds=time.perf_counter() - started,
                       started_at=started_at)


def scaling_arguments(train: TrainBase) -> dict:
    """``ScalingConfig`` arguments from a branch's train section: the one place Ray Train resources are read."""
    return {"num_workers": train.num_workers, "use_gpu": train.use_gpu,
            "resources_per_worker": {"CPU": train.cpus_per_worker}}


def _worker_resources(branch: BranchBase) -> dict[str, float]:
    """What all of a branch's workers hold together, to decide whether it fits beside the others."""
    scaling = scaling_arguments(branch.train)
    workers = scaling["num_workers"]
    return {"CPU": workers * scaling["resources_per_worker"]["CPU"], "GPU": float(workers if scaling["use_gpu"] else 0)}


class BranchTrainingError(RuntimeError):
    """A branch's training failed; the others were stopped. The message names the branch."""


def fit_branches(cfg: LabelConfig, names: list[str], manifest: str, output_uri: str) -> dict[str, TrainResult]:
    """Fit several branches side by side (Ray must be initialised); results in the given order.

    Each branch's TorchTrainer starts as soon as the cluster's free CPUs and GPUs hold its
    workers, the earlier branch first when several fit (one bigger than what is free starts once
    nothing else runs, and is left to the autoscaler): Train V2 gives up on a placement group
    after 60 s, so trainers are not queued on Ray's side. On a cluster every branch gets its own
    workers; on one machine the trainers share the cores, and one's start-up, validation and
    checkpointing fill another's idle time.

    The first branch that fails ends the whole run at once with its error (BranchTrainingError):
    training the others on for minutes would only hide it. Trainers still running are left to
    the caller's Ray session, whose end stops them (``ray_session`` does).
    """
    import queue
    import threading

    import ray

    from ray_ser.progress import TrainProgress

    branches = {name: cfg.branch(name) for name in names}
    untrainable = [name for name, branch in branches.items() if branch.train is None]
    if untrainable:
        raise ValueError(f"branches {untrainable} have no train section to fine-tune from")
    available = ray.available_resources()
    free = {k: float(available.get(k, 0.0)) for k in ("CPU", "GPU")}
    pending = [(name, _worker_resources(branch)) for name, branch in branches.items()]
    running: dict[str, dict[str, float]] = {}
    results: dict[str, TrainResult] = {}
    finished: queue.Queue = queue.Queue()

    def fit(name: str) -> None:
        try:
            finished.put((name, fit_branch(cfg, name, manifest, output_uri), None))
        except BaseException as exc:  # reported to the driver thread, which raises it
            finished.put((name, None, exc))

    with TrainProgress(names, enabled=cfg.ray.progress_bars):  # one line per epoch per branch
        while pending or running:
            for name, need in list(pending):
                if all(need[k] <= free[k] + 1e-9 for k in need) or not running:
                    pending.remove((name, need))
                    for k in need:
                        free[k] -= need[k]
                    running[name] = need
                    # Daemon threads: a failure must not wait for the other trainers to finish.
                    threading.Thread(target=fit, args=(name,), name=f"fit-{name}", daemon=True).start()
            name, result, error = finished.get()
            for k, amount in running.pop(name).items():
                free[k] += amount
            if error is not None:
                raise BranchTrainingError(f"branch {name!r} failed to train: {type(error).__name__}: {error}") \
                    from error
            results[name] = result
    return {name: results[name] for name in branches}


def trainable_branches(cfg: LabelConfig) -> list[str]:
    """The profile's branches that have a train section, in profile order."""
    return [name for name, branch in cfg.branches.items() if branch.train is not None]


@dataclass(frozen=True)
class TrainingSummary:
    branches: dict[str, TrainResult]
    fusion: FusionResult | None = None     # fitted when the profile has a fusion method

    def overrides(self) -> list[str]:
        """The --set lines that label with what was trained."""
        lines = [f"branches.{name}.checkpoint={r.checkpoint}" for name, r in self.branches.items()]
        return lines + ([f"fusion.checkpoint={self.fusion.path}"] if self.fusion else [])


def train_branches(cfg: LabelConfig, manifest: str | list[str], output_uri: str,
                   names: list[str] | None = None) -> TrainingSummary:
    """`ray-ser train`: fine-tune the named branches (every trainable one when None) on the manifest(s),
    side by side; checkpoints under output_uri. Several manifests are trained on as their union.

    With a fusion method and every branch of the profile trained, a share of the speakers is held
    out of the branches' training, labelled by them with the labeling job, and the fusion fitted there.
    With fusion.refit the branches are then trained again on every speaker (see refit_output), and
    the summary names those checkpoints.
    """
    from ray_ser.runtime import ray_session
    from ray_ser.train.fusion import fit_fusion_on_holdout, refit_output, split_for_fusion

    names = names or trainable_branches(cfg)
    if not names:
        raise ValueError("the profile has no branch with a train section")
    for name in names:
        cfg.branch(name)  # unknown names fail here, before Ray starts
    fusing = cfg.fusion.method != "none" and set(names) == set(cfg.branches)
    with ray_session(cfg.ray):
        manifest = union_manifest(manifest, cfg, output_uri) if isinstance(manifest, list) else manifest
        if not fusing:
            return TrainingSummary(fit_branches(cfg, names, manifest, output_uri))
        branch_manifest, holdout = split_for_fusion(cfg, manifest, output_uri)
        results = fit_branches(cfg, names, branch_manifest, output_uri)
        trained = cfg.model_copy(update={"branches": {
            name: branch.model_copy(update={"checkpoint": results[name].checkpoint})
            for name, branch in cfg.branches.items()}})
        fusion = fit_fusion_on_holdout(trained, holdout, output_uri)
        refit_uri = refit_output(cfg, output_uri)
        if refit_uri is not None:
            # The fusion's weights stay those fitted above, on voices its branches had not heard; the
            # branches it is applied to learn from every speaker.
            results = fit_branches(cfg, names, manifest, refit_uri)
        return TrainingSummary(results, fusion)


def union_manifest(manifests: list[str], cfg: LabelConfig, output_uri: str) -> str:
    """One manifest listing the rows of several (paths made absolute), written beside the checkpoints."""
    if len(manifests) == 1:
        return manifests[0]
    import posixpath

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ray_ser.io.manifest import read_manifest_table, resolve_path
    from ray_ser.io.storage import filesystem_for

    tables = []
    for uri in manifests:
        table = read_manifest_table(uri, cfg.storage)
        base = posixpath.dirname(uri)
        paths = [resolve_path(str(p), base) for p in table.column("path").to_pylist()]
        table = table.set_column(table.schema.get_field_index("path"), "path", pa.array(paths, pa.string()))
        tables.append(table.cast(pa.schema([(f.name, pa.string()) for f in table.schema])))
    union = pa.concat_tables(tables, promote_options="permissive")
    fs, root = filesystem_for(output_uri, cfg.storage)
    fs.create_dir(root, recursive=True)
    target = f"{root}/training-manifest.parquet"
    pq.write_table(union, target, filesystem=fs)
    return f"s3://{target}" if output_uri.startswith("s3://") else target


def adaptation(cfg: LabelConfig, name: str):
    """(train section, few_shot section) of `ray-ser adapt`: a LoRA run from the branch's checkpoint on its
    few_shot examples, with the few_shot section's epochs and learning rate."""
    from ray_ser.config import ConfigError

    branch = cfg.branch(name)
    if branch.family != "speech_llm" or branch.few_shot is None or not branch.checkpoint or branch.train is None:
        raise ConfigError(f"adapt needs a trained speech_llm branch with train and few_shot sections; "
                          f"branch {name!r} is {branch.family} (checkpoint={branch.checkpoint!r}, "
                          f"few_shot={'set' if getattr(branch, 'few_shot', None) else 'unset'})")
    shots = branch.few_shot
    per_worker = max(1, -(-shots.k // branch.train.num_workers))
    train = branch.train.model_copy(update={
        "base_model": branch.checkpoint, "epochs": shots.epochs, "learning_rate": shots.learning_rate,
        # Few-shot adaptation is a LoRA run even where the branch was first trained in full.
        "finetune": branch.train.finetune if branch.train.finetune.startswith("lora") else "lora",
        "batch_size": min(branch.train.batch_size, per_worker)})
    return train, shots


def adapt_branch(cfg: LabelConfig, name: str, output_uri: str) -> TrainResult:
    """`ray-ser adapt`: a quick LoRA run of a trained speech_llm branch on its few_shot examples."""
    from ray_ser.runtime import ray_session

    from ray_ser.progress import TrainProgress

    train, shots = adaptation(cfg, name)
    with ray_session(cfg.ray), TrainProgress([name], enabled=cfg.ray.progress_bars):
        return fit_branch(cfg, name, shots.manifest, output_uri, shots={"k": shots.k, "seed": shots.seed},
                          train=train)


def format_fusion(fusion: FusionResult) -> str:
    """The fitted fusion: its weights, and macro-F1 on the held-out speakers."""
    scores = fusion.scores
    lines = [f"fusion ({fusion.fusion.method}) fitted on {fusion.fusion.fitted_on.get('rows')} clips of held-out "
             f"speakers: {fusion.path}"]
    if fusion.fusion.method == "weights":
        lines.append("  weights: " + ", ".join(f"{b} {w:.2f}" for b, w in zip(fusion.fusion.branches,
                                                                              fusion.fusion.weights)))
    lines.append("  held-out macro-F1: " + ", ".join(f"{name} {m['macro_f1']:.3f}" for name, m in scores.items())
                 + " (the fusion's is in-sample)")
    return "\n".join(lines)


def format_train_result(result: TrainResult) -> str:
    """The run's outcome; its epochs were printed as they finished (ray_ser/progress.py)."""
    best = result.best
    return "\n".join([
        f"branch {result.branch}: {len(result.history)} epochs in {result.wall_seconds:.0f} s; best epoch "
        f"{best['epoch'] + 1}: loss {best['train_loss']:.3f}  val macro-F1 {best['val_macro_f1']:.3f}  "
        f"UAR {best['val_uar']:.3f}  acc {best['val_accuracy']:.3f}",
        f"  checkpoint: {result.checkpoint}",
        f"  use it with: --set branches.{result.branch}.checkpoint={result.checkpoint}"])
