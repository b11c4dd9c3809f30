"""How the Ray Train loop trains a speech_encoder branch."""

from __future__ import annotations

from ray_ser.branches.training import ClassifierLoss, ClipsWithSpeakers, Example, fit_reference, in_chunks, \
    speaker_statistics

__all__ = ["SpeechEncoderTraining"]


class SpeechEncoderTraining(ClipsWithSpeakers, ClassifierLoss):
    def prepare_examples(self, model, corpus, shard, val_shard, train):
        """Speaker statistics from the training clips, then each clip's deterministic input once:
        band limit, log-mel and speaker shift cost 40% of a step when redone every epoch."""
        speakers = fit_reference(model, train, speaker_statistics(model, corpus, train))

        def precompute(items):
            inputs = in_chunks(model.clip_inputs, [e.input[0] for e in items],
                               [speakers.get(e.input[1]) for e in items])
            return [Example(clip, e.label, e.weight) for clip, e in zip(inputs, items)]

        return precompute(shard), precompute(val_shard)

    def build(self, train, context):
        from ray_ser.branches.speech_encoder.model import SpeechEmotionModel

        return SpeechEmotionModel.from_settings(train, context.cache_dir, context.classes)

    def inputs(self, model, items):
        return model.collate(items)

    def training_inputs(self, model, items, train):
        return model.collate(items, augment=train.augment)
