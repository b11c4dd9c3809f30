"""Ray Train fine-tuning of the speech-encoder branch (TorchTrainer, DDP over N workers).

Each epoch reports loss and validation macro-F1; the checkpoint with the best
macro-F1 is kept, on local or s3:// storage, and loads with
``SpeechEncoderPredictor.load(path)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray_ser.config import StorageConfig

__all__ = ["SpeechTrainSpec", "train_loop_per_worker", "train_speech_branch"]


@dataclass(frozen=True)
class SpeechTrainSpec:
    manifest: str
    encoder: str
    finetune: str = "frozen"
    loss: str = "weighted_ce"
    focal_gamma: float = 2.0
    epochs: int = 4
    batch_size: int = 8
    learning_rate: float = 1e-3
    val_fraction: float = 0.15
    max_seconds: float = 6.0
    seed: int = 0


def train_loop_per_worker(config: dict) -> None:
    import os
    import tempfile

    import numpy as np
    import ray.train
    import ray.train.torch
    import torch

    from ray_ser.config import StorageConfig
    from ray_ser.evaluate import emotion_metrics
    from ray_ser.labels import NUM_CLASSES
    from ray_ser.models.speech_encoder import SpeechEmotionModel, SpeechEncoderOptions, collate_waveforms
    from ray_ser.train.data import load_audio, read_labelled_manifest, split_rows
    from ray_ser.train.losses import build_loss

    spec = SpeechTrainSpec(**config["spec"])
    storage = StorageConfig(**config["storage"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(spec.seed)

    train_rows, val_rows = split_rows(read_labelled_manifest(spec.manifest, storage), spec.val_fraction)
    counts = np.bincount([r.label for r in train_rows], minlength=NUM_CLASSES)
    shard = train_rows[rank::world]
    shard_audio = load_audio(shard, storage)
    val_audio = load_audio(val_rows, storage)

    model = SpeechEmotionModel.from_encoder(SpeechEncoderOptions(encoder=spec.encoder, finetune=spec.finetune))
    model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})
    inner = model.module if hasattr(model, "module") else model
    loss_fn = build_loss(spec.loss, counts.tolist(), gamma=spec.focal_gamma)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=spec.learning_rate)
    # Every worker runs the same number of steps, or DDP's all-reduce would wait forever.
    steps = -(-len(train_rows) // (world * spec.batch_size))
    rng = np.random.default_rng(spec.seed + rank)
    history: list[dict] = []  # Train V2 keeps metrics only for kept checkpoints; the run's curve rides along

    for epoch in range(spec.epochs):
        model.train()
        order = rng.permutation(len(shard))
        losses = []
        for step in range(steps):
            idx = [order[(step * spec.batch_size + k) % len(order)] for k in range(spec.batch_size)]
            waves, mask = collate_waveforms([shard_audio[i] for i in idx], spec.max_seconds)
            labels = torch.tensor([shard[i].label for i in idx])
            optimizer.zero_grad()
            loss = loss_fn(model(waves, mask), labels)
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
        model.eval()
        with torch.inference_mode():
            preds = []
            for i in range(0, len(val_rows), spec.batch_size):
                waves, mask = collate_waveforms(val_audio[i:i + spec.batch_size], spec.max_seconds)
                preds += inner(waves, mask).argmax(-1).tolist()
        metrics = {"epoch": epoch, "train_loss": float(np.mean(losses)),
                   **{f"val_{k}": v for k, v in emotion_metrics([r.label for r in val_rows], preds,
                                                                 NUM_CLASSES).items()}}
        history.append(dict(metrics))
        metrics["history"] = list(history)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                inner.save(os.path.join(tmp, "branch"))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=checkpoint)


def train_speech_branch(spec: SpeechTrainSpec, storage: StorageConfig, output_uri: str, name: str,
                        num_workers: int = 2, use_gpu: bool = False, cpus_per_worker: float = 1.0):
    """Run the TorchTrainer; return (best checkpoint path, its metrics, per-epoch history)."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ray_ser.io.storage import filesystem_for

    fs, path = filesystem_for(output_uri, storage)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"spec": asdict(spec), "storage": storage.model_dump()},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus_per_worker}),
        run_config=RunConfig(
            name=name, storage_path=path, storage_filesystem=fs,
            checkpoint_config=CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="val_macro_f1",
                                               checkpoint_score_order="max"),
        ),
    )
    result = trainer.fit()
    best, metrics = result.best_checkpoints[0]
    return f"{best.path}/branch", metrics, result.metrics["history"]
