"""The building blocks every config section shares: the frozen base model, stage resources, and
the branch and training settings that each branch family (ray_ser/branches/<family>/settings.py)
extends. pydantic only: importing this imports no model, runtime or torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ConfigError", "Frozen", "StageResources", "TaskResources", "BranchResources", "TrainBase",
           "BranchBase", "Loss", "InputKind", "ServeAutoscaling", "ServeDeployment", "ServeModelDeployment"]


class ConfigError(ValueError):
    """A configuration problem, with the offending field named in the message."""


class Frozen(BaseModel):
    """Immutable, and a misspelt field is an error rather than a silently ignored key."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class StageResources(Frozen):
    """How one Ray Data actor stage is scheduled. Applied only by ray_ser.pipeline.apply_stage.

    Each stage has its own subclass whose defaults are written out beside it, so overriding
    one field (``--set asr.resources.num_cpus=2``) changes that field alone.
    """

    num_cpus: float = Field(1.0, ge=0, description="Logical CPUs reserved per task or actor.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs (fractions allowed) reserved per actor.")
    batch_size: int = Field(16, ge=1, description="Rows per batch handed to the stage.")
    min_actors: int = Field(1, ge=1, description="Smallest actor pool size (stateful stages only).")
    max_actors: int = Field(1, ge=1, description="Largest actor pool size; the pool autoscales in between.")

    @model_validator(mode="after")
    def _pool_bounds(self) -> StageResources:
        if self.max_actors < self.min_actors:
            raise ValueError(f"max_actors ({self.max_actors}) must be >= min_actors ({self.min_actors})")
        return self


class TaskResources(Frozen):
    """How a stateless Ray Data stage (plain tasks, no model) is scheduled."""

    num_cpus: float = Field(0.25, ge=0, description="Logical CPUs per task: these stages are light.")


class BranchResources(StageResources):
    """A branch's actor pool: one model per actor."""

    num_cpus: float = Field(1.0, ge=0, description="Logical CPUs reserved per branch actor.")
    batch_size: int = Field(16, ge=1, description="Rows per batch a branch actor predicts at once.")


class ServeAutoscaling(Frozen):
    """How many replicas of one Serve deployment run: Serve adds replicas while the requests in flight per
    replica stay above the target, down to min_replicas when idle (min == max: a fixed count)."""

    min_replicas: int = Field(1, ge=1, description="Replicas kept when idle.")
    max_replicas: int = Field(1, ge=1, description="Most replicas under load.")
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Requests in flight per replica that Serve steers towards when scaling.")

    @model_validator(mode="after")
    def _bounds(self) -> ServeAutoscaling:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be >= min_replicas ({self.min_replicas})")
        return self


class ServeDeployment(Frozen):
    """One Ray Serve deployment: its resources, its scaling and its admission limits. Applied only by
    ray_ser.serve.app.deployment_options."""

    num_cpus: float = Field(1.0, ge=0, description="Logical CPUs per replica.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs (fractions allowed) per replica.")
    autoscaling: ServeAutoscaling = Field(ServeAutoscaling(), description="Replica count and autoscaling.")
    max_ongoing_requests: int = Field(8, ge=1, description="Requests a replica works on at once; more wait in "
                                      "the caller's queue.")
    max_queued_requests: int = Field(
        32, ge=1, description="Requests waiting for a replica, per caller; past it the request is refused at "
        "once (503, retry later) instead of queueing without bound.")
    request_timeout_s: float = Field(
        30.0, gt=0, description="How long one call to this deployment may take before the request is answered "
        "504 (for the ingress: the whole HTTP request, Serve's end-to-end timeout).")


class ServeModelDeployment(ServeDeployment):
    """A deployment holding a model (ASR, one branch): requests from concurrent clients are batched."""

    max_batch_size: int = Field(8, ge=1, description="Clips one model call takes at most (@serve.batch); 1 "
                                "turns batching off.")
    batch_wait_timeout_s: float = Field(
        0.01, ge=0, description="How long the first clip of a batch waits for others before the batch runs.")

    @model_validator(mode="after")
    def _batch_fits(self) -> ServeModelDeployment:
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(f"max_ongoing_requests ({self.max_ongoing_requests}) must be >= max_batch_size "
                             f"({self.max_batch_size}), or no batch ever fills")
        return self


Loss = Literal["ce", "weighted_ce", "focal", "weighted_focal"]
# What a branch reads per clip: "audio", a 16 kHz waveform; "text", the transcript;
# "audio_text", the waveform and the transcript (or None).
InputKind = Literal["audio", "text", "audio_text"]


class TrainBase(Frozen):
    """What every branch family's training shares (Ray Train, TorchTrainer, DDP).

    A family's own ``train`` section extends it with what only that family reads; the
    checkpoint keeps the section it was trained with, so inference needs no training config.
    """

    base_model: str | None = Field(
        None, description="What training starts from: a hub id, a local directory, an offline alias "
        "(offline:smollm2, offline:minilm) or a small random model built locally (tiny-random:<family>). "
        "Never fetched at import time.")
    loss: Loss = Field("weighted_ce", description="Loss against class imbalance; weights come from the "
                       "training prior.")
    focal_gamma: float = Field(2.0, ge=0, description="Focusing parameter of the focal losses.")
    epochs: int = Field(4, ge=1, description="Passes over the training split.")
    batch_size: int = Field(8, ge=1, description="Examples per step on each worker.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate of the one-cycle schedule.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="Share of rows (hashed by id) held out for "
                                "validation; the best epoch by validation macro-F1 is kept.")
    seed: int = Field(0, description="Seed of initialisation and shuffling.")
    num_workers: int = Field(2, ge=1, description="Ray Train workers (DDP ranks).")
    use_gpu: bool = Field(False, description="One GPU per worker (cluster profiles).")
    cpus_per_worker: float = Field(1.0, gt=0, description="Logical CPUs per worker.")

    @property
    def speaker_normalised(self) -> bool:
        """Whether the trained model moves each speaker's features (families that can say so override)."""
        return False


class BranchBase(Frozen):
    """One voting branch: a model family, its checkpoint, its actor pool, its vote weight.

    Each family subclasses it with ``family: Literal[<name>]`` and its own ``train`` section;
    ``ray_ser.branches`` joins them into the discriminated union ``BranchConfig``.
    """

    family: str = Field(..., description="The branch family (ray_ser/branches/<family>/).")
    checkpoint: str | None = Field(
        None, description="Trained checkpoint directory or s3:// URI (what `ray-ser train` prints). "
        "Labeling and Serve need it.")
    weight: float = Field(1.0, gt=0, description="Vote weight of this branch.")
    device: Literal["cpu", "cuda"] = Field("cpu", description="Torch device of the branch actors.")
    resources: BranchResources = Field(BranchResources(), description="Scheduling of the branch's actor pool.")
    serve: ServeModelDeployment = Field(ServeModelDeployment(), description="The branch's Ray Serve deployment "
                                        "(`ray-ser serve`): resources, scaling, admission and batching.")
    train: TrainBase | None = Field(None, description="How to fine-tune it; None: not trainable here.")

    @model_validator(mode="after")
    def _device_fits_resources(self) -> BranchBase:
        if self.device == "cpu" and self.resources.num_gpus > 0:
            raise ValueError(f"device is cpu but resources.num_gpus={self.resources.num_gpus}: a CPU branch "
                             "must not hold GPUs")
        if self.device == "cpu" and self.serve.num_gpus > 0:
            raise ValueError(f"device is cpu but serve.num_gpus={self.serve.num_gpus}: a CPU branch's Serve "
                             "replicas must not hold GPUs")
        return self

    def input_kind(self) -> InputKind:
        """What the branch reads per clip, known from its settings before any model loads."""
        return "audio"

    def reads_transcript(self) -> bool:
        """Whether the branch's input includes the ASR transcript (the job then needs ASR on)."""
        return False
