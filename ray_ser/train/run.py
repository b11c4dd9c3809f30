"""One branch's training run, family-agnostic and Ray-free: what each Ray Train worker executes.

The Ray Train wrapper (ray_ser/train/loop.py) supplies the worker's rank, the DDP wrap of the
model and the report of each epoch; run here with rank 0 of 1 and no wrap, it trains in one
process (tests, and the config walk that checks every training setting reaches this code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch

    from ray_ser.config import LabelConfig
    from ray_ser.config_types import TrainBase

__all__ = ["WorkerContext", "run_training", "gather"]


def gather(values: list) -> list:
    """Every rank's values, in rank order (this rank's alone outside a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, values)
    return [v for part in parts for v in part]


@dataclass(frozen=True)
class WorkerContext:
    """Where a run executes: its rank among ``world`` workers, how the model is wrapped for data
    parallelism, and where each epoch's metrics go, with a saver for the model when it should be kept."""

    rank: int = 0
    world: int = 1
    prepare_model: Callable[[torch.nn.Module], torch.nn.Module] = lambda model: model
    # report(metrics, save) where save(directory) writes the model, or None when this epoch is not kept
    report: Callable[[dict, Callable[[str], None] | None], None] = lambda metrics, save: None


def run_training(cfg: LabelConfig, name: str, train: TrainBase, manifest: str, worker: WorkerContext,
                 shots: dict | None = None) -> list[dict]:
    """Train cfg.branches[name] with ``train`` on the manifest; return the per-epoch history.

    With shots ({"k": .., "seed": ..}) only k rows drawn from the manifest are trained on and
    every epoch is reported for keeping; otherwise an epoch is kept when its validation
    macro-F1 beats the best so far, and the last one always (its metrics carry the curve).
    """
    import numpy as np
    import torch

    from ray_ser.branches import FAMILIES
    from ray_ser.branches.speech_llm.shots import draw_shots
    from ray_ser.branches.training import TrainingContext
    from ray_ser.evaluate import emotion_metrics
    from ray_ser.io.labelled import read_labelled_manifest
    from ray_ser.models.losses import build_loss
    from ray_ser.train.data import split_rows

    branch = cfg.branch(name)
    family = FAMILIES.get(branch.family).training()
    rank, world = worker.rank, worker.world
    classes = cfg.labels.classes
    context = TrainingContext(cfg.storage, cfg.resolved_cache_dir(), cfg.columns, cfg.asr, classes, rank, world,
                              gather)
    torch.manual_seed(train.seed)

    if (train.base_model or "").startswith("s3://"):  # adapting a trained branch kept on S3
        from ray_ser.io.storage import localize_directory

        train = train.model_copy(update={"base_model": str(localize_directory(
            train.base_model, cfg.storage, context.cache_dir))})
    rows = read_labelled_manifest(manifest, cfg.storage, cfg.columns, cfg.labels)
    if shots:
        # Few-shot adaptation: fit the k shots; the curve reports the fit on those same shots.
        train_rows = val_rows = draw_shots(rows, **shots)
    else:
        train_rows, val_rows = split_rows(rows, train.val_fraction)
    counts = np.bincount([r.label for r in train_rows], minlength=len(classes))
    examples = family.examples(train_rows, context, train, merge_duplicates=True)
    val_shard = family.examples(val_rows[rank::world], context, train, merge_duplicates=False)
    model = family.build(train, context)
    # Every rank holds every training example, so corpus statistics agree across ranks.
    shard, val_shard = family.prepare_examples(model, examples, examples[rank::world], val_shard, train)

    model = worker.prepare_model(model)
    inner = model.module if hasattr(model, "module") else model
    device = next(inner.parameters()).device
    loss_fn = build_loss(train.loss, counts.tolist(), gamma=train.focal_gamma)
    # Every worker runs the same number of steps, or DDP's all-reduce would wait forever.
    steps = max(1, -(-len(examples) // (world * train.batch_size)))
    # The family groups the trained parameters by peak learning rate (the same objects DDP wraps).
    groups = family.parameter_groups(inner, train)
    optimizer = torch.optim.AdamW(groups, lr=train.learning_rate, weight_decay=train.weight_decay)
    total_steps = steps * train.epochs
    warmup = family.warmup_fraction(train)
    # torch's OneCycleLR divides by (pct_start * total_steps - 1): a 5-step run would divide by zero.
    if abs(warmup * total_steps - 1) < 1e-6:
        warmup += 0.1 if warmup < 0.5 else -0.1
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups],
                                                   total_steps=total_steps, pct_start=warmup)
    rng = np.random.default_rng(train.seed + rank)
    history: list[dict] = []  # Train V2 keeps metrics only for kept checkpoints; the curve rides along
    best_f1 = float("-inf")

    def to_device(batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(device) for k, v in batch.items()}

    for epoch in range(train.epochs):
        model.train()
        order = rng.permutation(len(shard))
        losses = []
        for step in range(steps):
            chosen = [shard[order[(step * train.batch_size + k) % len(order)]] for k in range(train.batch_size)]
            loss = family.loss(model, inner, [e.input for e in chosen],
                               torch.tensor([e.label for e in chosen], device=device),
                               torch.tensor([e.weight for e in chosen]), loss_fn, to_device, train)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        model.eval()
        preds: list[int] = []
        with torch.inference_mode():
            for i in range(0, len(val_shard), train.batch_size):
                chunk = [e.input for e in val_shard[i:i + train.batch_size]]
                preds += inner(**to_device(family.inputs(inner, chunk))).argmax(-1).tolist()
        truth, preds = gather([e.label for e in val_shard]), gather(preds)
        metrics = {"epoch": epoch, "train_rows": len(train_rows), "val_rows": len(val_rows),
                   "train_loss": float(np.mean(gather(losses))),
                   **{f"val_{k}": v for k, v in emotion_metrics(truth, preds, len(classes)).items()}}
        history.append(dict(metrics))
        metrics["history"] = list(history)
        # Only an epoch that beats the best so far is written (a merged 135M LM is half a GB),
        # and the last one, whose metrics carry the whole curve back to the driver. Few-shot
        # runs keep the last epoch, so they write it alone.
        improved = not shots and metrics["val_macro_f1"] > best_f1
        best_f1 = max(best_f1, metrics["val_macro_f1"])
        keep = rank == 0 and (improved or epoch == train.epochs - 1)
        worker.report(metrics, inner.save if keep else None)
    return history
