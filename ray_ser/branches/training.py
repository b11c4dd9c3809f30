"""What the family-agnostic training loop (ray_ser/train/loop.py) needs from each branch family.

A family turns manifest rows into (input, label, weight) examples, builds its model from its
own train settings, and turns a list of inputs into the model's keyword arguments. Each family's
``training.py`` implements ``TrainingFamily``; the helpers here are what several share. No Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from ray_ser.labels import EMOTIONS

if TYPE_CHECKING:
    import torch

    from ray_ser.config import AsrConfig, ColumnsConfig, StorageConfig
    from ray_ser.config_types import TrainBase
    from ray_ser.io.labelled import LabelledRow
    from ray_ser.models.losses import EmotionLoss

__all__ = ["Example", "TrainingContext", "TrainingFamily", "AsTheyAre", "ClassifierLoss", "ClipsWithSpeakers", "in_chunks",
           "speaker_statistics", "fit_reference"]


@dataclass(frozen=True)
class Example:
    input: Any
    label: int
    weight: float = 1.0


def _alone(values: list) -> list:
    return values


@dataclass(frozen=True)
class TrainingContext:
    """Where a training run reads from and builds into, and which worker of how many runs it.

    ``gather(values)`` returns every worker's values in rank order (this worker's alone when it
    runs by itself), for work a family shares out across the workers (encoding a corpus once).
    """

    storage: StorageConfig
    cache_dir: Path
    columns: ColumnsConfig
    asr: AsrConfig | None = None
    classes: tuple[str, ...] = EMOTIONS
    rank: int = 0
    world: int = 1
    gather: Callable[[list], list] = _alone


class TrainingFamily(Protocol):
    def examples(self, rows: Sequence[LabelledRow], context: TrainingContext, train: TrainBase,
                 merge_duplicates: bool) -> list[Example]: ...

    def build(self, train: TrainBase, context: TrainingContext) -> torch.nn.Module: ...

    def inputs(self, model: torch.nn.Module, items: Sequence[Any]) -> dict[str, torch.Tensor]: ...

    def prepare_examples(self, model: torch.nn.Module, corpus: list[Example], shard: list[Example],
                         val_shard: list[Example], train: TrainBase) -> tuple[list[Example], list[Example]]: ...

    def loss(self, model: torch.nn.Module, inner: torch.nn.Module, items: Sequence[Any], labels: torch.Tensor,
             weights: torch.Tensor, loss_fn: EmotionLoss, to_device, train: TrainBase) -> torch.Tensor: ...


class AsTheyAre:
    def prepare_examples(self, model, corpus, shard, val_shard, train):
        """Work done once before the first epoch: statistics over the whole training corpus, then
        per-clip features of this worker's shards. Nothing here."""
        return shard, val_shard


class ClassifierLoss(AsTheyAre):
    """Families whose model returns label logits: the loss is the configured classification loss."""

    def loss(self, model, inner, items, labels, weights, loss_fn, to_device, train):
        return loss_fn(model(**to_device(self.training_inputs(inner, items, train))), labels, weights)

    def training_inputs(self, model, items, train):
        """The model's inputs for a training batch; the same as for validation unless augmented."""
        return self.inputs(model, items)


class ClipsWithSpeakers:
    """Families that read each clip's audio and its speaker."""

    def examples(self, rows, context, train, merge_duplicates):
        from ray_ser.io.labelled import load_audio

        return [Example((audio, row.speaker), row.label)
                for audio, row in zip(load_audio(list(rows), context.storage), rows)]


def in_chunks(compute, *columns: list, size: int = 64) -> list:
    """compute(*columns) slice by slice, results concatenated: a corpus's features never form one batch."""
    return [row for i in range(0, len(columns[0]), size) for row in compute(*(c[i:i + size] for c in columns))]


def speaker_statistics(model, examples: list[Example], train: TrainBase) -> dict:
    """Speaker -> summed feature statistics over the examples that name a speaker; {} unless normalising."""
    from ray_ser.models.features.speaker_norm import add_statistics

    if not train.speaker_normalised:
        return {}
    known = [e.input for e in examples if e.input[1] is not None]
    sums = in_chunks(model.feature_sums, [audio for audio, _ in known])
    return add_statistics(zip([speaker for _, speaker in known], sums))


def fit_reference(model, train: TrainBase, speakers: dict) -> dict:
    """Set the model's reference profile from the training speakers and keep their statistics; return them."""
    if not train.speaker_normalised:
        return {}
    if not speakers:
        raise ValueError("speaker normalisation needs speakers: the manifest's speaker column "
                         "(columns.speaker) is missing or empty")
    from ray_ser.models.features.speaker_norm import reference_profile

    model.set_reference_profile(reference_profile(speakers))
    model.known_speakers = dict(speakers)  # saved with the checkpoint: see speakers.pool_known_speakers
    return speakers
