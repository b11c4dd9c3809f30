"""What a branch family is: one typed plugin that says how to load its predictor and how to train it.

A family lives in one folder, ``ray_ser/branches/<family>/``:

- ``settings.py``: its config model (a ``BranchBase`` with ``family: Literal[...]`` and its own
  ``train`` section), light enough for ``ray_ser.config`` to import;
- its model and predictor (torch, transformers, vLLM; never Ray);
- ``training.py``: what the family-agnostic Ray Train loop needs (``TrainingFamily``);
- ``__init__.py``: the ``BranchFamily`` that ties them together, importing the heavy parts lazily.

Checkpoints of every family go through one codec (``ray_ser/branches/checkpoint.py``). Adding a
family is its folder plus one line in ``ray_ser/branches/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generic, Protocol, Sequence, TypeVar, runtime_checkable

from ray_ser.config_types import BranchBase, InputKind

if TYPE_CHECKING:
    import numpy as np

    from ray_ser.branches.checkpoint import CheckpointManifest
    from ray_ser.branches.training import TrainingFamily

__all__ = ["InputKind", "SpeakerProfiles", "BranchPredictor", "LoadContext", "BranchFamily"]


@runtime_checkable
class SpeakerProfiles(Protocol):
    """The speaker-normalisation capability of a predictor whose checkpoint moves each speaker's features.

    Statistics are per-clip ``feature_sums`` rows added up over all of a speaker's clips; the
    predictor turns them into the speaker's offset (ray_ser/models/features/speaker_norm.py).
    """

    def feature_sums(self, audios: Sequence[np.ndarray]) -> np.ndarray: ...

    def with_known_speakers(self, statistics: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@runtime_checkable
class BranchPredictor(Protocol):
    """A loaded branch: inputs of its kind in, a probability distribution over the emotions out.

    ``speaker_profiles`` is None unless the checkpoint is speaker-normalised; then
    ``predict_batch`` takes each clip's speaker statistics (None: the clip is not moved).
    """

    input_kind: InputKind
    speaker_profiles: SpeakerProfiles | None
    classes: tuple[str, ...]  # the taxonomy, in the order of the probabilities predict_batch returns

    def predict_batch(self, inputs: Sequence[Any],
                      speakers: Sequence[np.ndarray | None] | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class LoadContext:
    """What loading a predictor may need beyond its checkpoint: object storage (few-shot examples)
    and the cache directory (offline weights)."""

    storage: Any          # ray_ser.config.StorageConfig
    cache_dir: Path
    columns: Any = None   # ray_ser.config.ColumnsConfig, for manifests a predictor reads
    labels: Any = None    # ray_ser.config.LabelsConfig


S = TypeVar("S", bound=BranchBase)


@dataclass(frozen=True)
class BranchFamily(Generic[S]):
    """One branch family. ``settings`` is its config model; the callables import their module when called,
    so importing a family (as ``ray_ser.config`` does) stays free of torch."""

    name: str
    settings: type[S]
    load_predictor: Callable[[Path, S, LoadContext], BranchPredictor]
    training: Callable[[], TrainingFamily]
    # Whether a checkpoint of this family can be speaker-normalised (the job then profiles speakers first).
    speaker_normalisable: bool = False
    # Whether a checkpoint (its manifest) reads exactly the encoder states the ASR computes for a profile's
    # asr section: the job then hands it the ASR's pooled states instead of encoding the clip again.
    reuses_asr_encoder: Callable[[CheckpointManifest, Any], bool] | None = None

