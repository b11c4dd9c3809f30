"""How the Ray Train loop trains a text_classifier branch."""

from __future__ import annotations

from collections import Counter

from ray_ser.branches.training import ClassifierLoss, Example

__all__ = ["TextClassifierTraining"]


class TextClassifierTraining(ClassifierLoss):
    def examples(self, rows, context, train, merge_duplicates):
        missing = [r.utterance_id for r in rows if not (r.text or "").strip()]
        if missing:
            raise ValueError(f"text branch: {len(missing)} rows have no {context.columns.text!r}, e.g. {missing[:3]}")
        if not merge_duplicates:
            return [Example(r.text.strip(), r.label) for r in rows]
        # Acted corpora repeat each sentence many times: merging identical (text, label) pairs
        # with their count as weight gives the same expected gradient at a fraction of the steps.
        counts = Counter((r.text.strip(), r.label) for r in rows)
        return [Example(text, label, float(n)) for (text, label), n in sorted(counts.items())]

    def build(self, train, context):
        from ray_ser.branches.text_classifier.model import TextEmotionModel

        return TextEmotionModel.from_settings(train, context.cache_dir, context.classes)

    def inputs(self, model, items):
        return model.encode(items)
