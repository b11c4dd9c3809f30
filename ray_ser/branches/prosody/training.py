"""How the Ray Train loop trains a prosody branch."""

from __future__ import annotations

from ray_ser.branches.training import ClassifierLoss, ClipsWithSpeakers, Example, fit_reference, in_chunks

__all__ = ["ProsodyTraining"]


class ProsodyTraining(ClipsWithSpeakers, ClassifierLoss):
    """Functionals of every training clip are computed once: they give the speaker statistics,
    the standardisation and each clip's input."""

    def prepare_examples(self, model, corpus, shard, val_shard, train):
        import numpy as np

        from ray_ser.models.features.speaker_norm import add_statistics

        values = np.stack(in_chunks(model.functionals, [e.input[0] for e in corpus]))
        known = [i for i, e in enumerate(corpus) if e.input[1] is not None]
        speakers = fit_reference(model, train, add_statistics(
            zip([corpus[i].input[1] for i in known], model.sums_of(values[known]))) if known else {})
        inputs = model.inputs_from_functionals(values, [speakers.get(e.input[1]) for e in corpus])
        model.fit_standardization(inputs)
        by_example = {id(e): x for e, x in zip(corpus, inputs)}
        shard = [Example(by_example[id(e)], e.label, e.weight) for e in shard]
        val_inputs = model.clip_inputs([e.input[0] for e in val_shard], [speakers.get(e.input[1]) for e in val_shard])
        return shard, [Example(x, e.label, e.weight) for x, e in zip(val_inputs, val_shard)]

    def build(self, train, context):
        from ray_ser.branches.prosody.model import ProsodyEmotionModel

        return ProsodyEmotionModel(train, context.classes)

    def inputs(self, model, items):
        return model.collate(items)
