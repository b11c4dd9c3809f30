"""What the generic training loop needs from each branch family: examples, a model, batches.

A family turns manifest rows into (input, label, weight) examples, builds its model from
a TrainConfig, and turns a list of inputs into the model's keyword arguments. The loop
(train/loop.py) is the same for all of them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from ray_ser.registry import Registry

if TYPE_CHECKING:
    import torch

    from ray_ser.config import StorageConfig, TrainConfig
    from ray_ser.train.data import LabelledRow
    from ray_ser.train.losses import EmotionLoss

__all__ = ["Example", "TrainFamily", "TRAIN_FAMILIES"]


@dataclass(frozen=True)
class Example:
    input: Any
    label: int
    weight: float = 1.0


class TrainFamily(Protocol):
    def examples(self, rows: Sequence[LabelledRow], storage: StorageConfig, train: TrainConfig,
                 merge_duplicates: bool) -> list[Example]: ...

    def build(self, train: TrainConfig) -> torch.nn.Module: ...

    def inputs(self, model: torch.nn.Module, items: Sequence[Any]) -> dict[str, torch.Tensor]: ...

    def prepare_examples(self, model: torch.nn.Module, corpus: list[Example], shard: list[Example],
                         val_shard: list[Example], train: TrainConfig) -> tuple[list[Example], list[Example]]: ...

    def loss(self, model: torch.nn.Module, inner: torch.nn.Module, items: Sequence[Any], labels: torch.Tensor,
             weights: torch.Tensor, loss_fn: EmotionLoss, to_device, train: TrainConfig) -> torch.Tensor: ...


class _AsTheyAre:
    def prepare_examples(self, model, corpus, shard, val_shard, train):
        """Work done once before the first epoch: statistics over the whole training corpus, then
        per-clip features of this worker's shards. Nothing here."""
        return shard, val_shard


class _ClassifierLoss(_AsTheyAre):
    """Families whose model returns label logits: the loss is the configured classification loss."""

    def loss(self, model, inner, items, labels, weights, loss_fn, to_device, train):
        return loss_fn(model(**to_device(self.training_inputs(inner, items, train))), labels, weights)

    def training_inputs(self, model, items, train):
        """The model's inputs for a training batch; the same as for validation unless augmented."""
        return self.inputs(model, items)


class _ClipsWithSpeakers:
    def examples(self, rows, storage, train, merge_duplicates):
        from ray_ser.train.data import load_audio

        return [Example((audio, row.speaker), row.label) for audio, row in zip(load_audio(list(rows), storage), rows)]


class SpeechEncoderFamily(_ClipsWithSpeakers, _ClassifierLoss):
    def prepare_examples(self, model, corpus, shard, val_shard, train):
        """Speaker statistics from the training clips, then each clip's deterministic input once:
        band limit, log-mel and speaker shift cost 40% of a step when redone every epoch."""
        speakers = _fit_reference(model, train, _speaker_statistics(model, corpus, train))

        def precompute(items):
            inputs = _in_chunks(model.clip_inputs, [e.input[0] for e in items],
                                [speakers.get(e.input[1]) for e in items])
            return [Example(clip, e.label, e.weight) for clip, e in zip(inputs, items)]

        return precompute(shard), precompute(val_shard)

    def build(self, train):
        from ray_ser.models.speech_encoder import SpeechEmotionModel, SpeechEncoderOptions

        return SpeechEmotionModel.from_encoder(SpeechEncoderOptions(
            encoder=train.base_model, finetune=train.finetune, lora_rank=train.lora_rank,
            normalize=train.normalize_audio, max_seconds=train.max_seconds,
            max_frequency_hz=train.max_frequency_hz, speaker_normalization=train.speaker_normalization))

    def inputs(self, model, items):
        return model.collate(items)

    def training_inputs(self, model, items, train):
        from ray_ser.models.augment import SpeechAugmentOptions

        return model.collate(items, augment=SpeechAugmentOptions(**train.augment.model_dump()))


def _in_chunks(compute, *columns: list, size: int = 64) -> list:
    """compute(*columns) slice by slice, results concatenated: a corpus's features never form one batch."""
    return [row for i in range(0, len(columns[0]), size) for row in compute(*(c[i:i + size] for c in columns))]


def _speaker_statistics(model, examples: list[Example], train: TrainConfig) -> dict:
    """Speaker -> summed feature statistics over the examples that name a speaker; {} unless normalising."""
    from ray_ser.models.speaker_norm import add_statistics

    if not train.speaker_normalization:
        return {}
    known = [e.input for e in examples if e.input[1] is not None]
    sums = _in_chunks(model.feature_sums, [audio for audio, _ in known])
    return add_statistics(zip([speaker for _, speaker in known], sums))


def _fit_reference(model, train: TrainConfig, speakers: dict) -> dict:
    """Set the model's reference profile from the training speakers and keep their statistics; return them."""
    if not train.speaker_normalization:
        return {}
    if not speakers:
        raise ValueError(f"train.speaker_normalization needs speakers: the manifest's "
                         f"{train.speaker_column!r} column is missing or empty")
    from ray_ser.models.speaker_norm import reference_profile

    model.set_reference_profile(reference_profile(speakers))
    model.known_speakers = dict(speakers)  # saved with the checkpoint: see speakers.pool_known_speakers
    return speakers


class ProsodyFamily(_ClipsWithSpeakers, _ClassifierLoss):
    """Functionals of every training clip are computed once: they give the speaker statistics,
    the standardisation and each clip's input."""

    def prepare_examples(self, model, corpus, shard, val_shard, train):
        import numpy as np

        from ray_ser.models.speaker_norm import add_statistics

        values = np.stack(_in_chunks(model.functionals, [e.input[0] for e in corpus]))
        known = [i for i, e in enumerate(corpus) if e.input[1] is not None]
        speakers = _fit_reference(model, train, add_statistics(
            zip([corpus[i].input[1] for i in known], model.sums_of(values[known]))) if known else {})
        inputs = model.inputs_from_functionals(values, [speakers.get(e.input[1]) for e in corpus])
        model.fit_standardization(inputs)
        by_example = {id(e): x for e, x in zip(corpus, inputs)}
        shard = [Example(by_example[id(e)], e.label, e.weight) for e in shard]
        val_inputs = model.clip_inputs([e.input[0] for e in val_shard], [speakers.get(e.input[1]) for e in val_shard])
        return shard, [Example(x, e.label, e.weight) for x, e in zip(val_inputs, val_shard)]

    def build(self, train):
        from ray_ser.models.prosody import ProsodyEmotionModel, ProsodyOptions

        return ProsodyEmotionModel(ProsodyOptions(speaker_normalization=train.speaker_normalization))

    def inputs(self, model, items):
        return model.collate(items)


class TextClassifierFamily(_ClassifierLoss):
    def examples(self, rows, storage, train, merge_duplicates):
        missing = [r.utterance_id for r in rows if not (r.text or "").strip()]
        if missing:
            raise ValueError(f"text branch: {len(missing)} rows have no {train.text_column!r}, e.g. {missing[:3]}")
        if not merge_duplicates:
            return [Example(r.text.strip(), r.label) for r in rows]
        # Acted corpora repeat each sentence many times: merging identical (text, label) pairs
        # with their count as weight gives the same expected gradient at a fraction of the steps.
        counts = Counter((r.text.strip(), r.label) for r in rows)
        return [Example(text, label, float(n)) for (text, label), n in sorted(counts.items())]

    def build(self, train):
        from ray_ser.models.text_classifier import TextClassifierOptions, TextEmotionModel

        return TextEmotionModel.from_base(TextClassifierOptions(
            model=train.base_model, finetune=train.finetune, lora_rank=train.lora_rank,
            max_length=train.max_length, template=train.template))

    def inputs(self, model, items):
        return model.encode(items)


class SpeechLLMFamily(_AsTheyAre):
    """SELM's objective: the model is taught to generate the label word after the prompt."""

    def examples(self, rows, storage, train, merge_duplicates):
        from ray_ser.train.data import load_audio

        return [Example((audio, (row.text or "").strip() or None), row.label)
                for audio, row in zip(load_audio(list(rows), storage), rows)]

    def build(self, train):
        from ray_ser.models.speech_llm_tuning import SpeechLLMEmotionModel, SpeechLLMTuneOptions

        return SpeechLLMEmotionModel.from_base(SpeechLLMTuneOptions(
            model=train.base_model, finetune=train.finetune, lora_rank=train.lora_rank,
            transcript_dropout=train.transcript_dropout), seed=train.seed)

    def inputs(self, model, items):
        return model.prepare(items)

    def loss(self, model, inner, items, labels, weights, loss_fn, to_device, train):
        answer_logp = model(**to_device(inner.prepare(items, answers=labels.tolist())))
        return loss_fn.from_log_likelihood(answer_logp, labels, weights)


TRAIN_FAMILIES: Registry[TrainFamily] = Registry("training family")
TRAIN_FAMILIES.register("speech_encoder", SpeechEncoderFamily())
TRAIN_FAMILIES.register("text_classifier", TextClassifierFamily())
TRAIN_FAMILIES.register("speech_llm", SpeechLLMFamily())
TRAIN_FAMILIES.register("prosody", ProsodyFamily())
