"""How the Ray Train loop trains a speech_llm branch (SELM's objective)."""

from __future__ import annotations

from ray_ser.branches.training import AsTheyAre, Example

__all__ = ["SpeechLLMTraining"]


class SpeechLLMTraining(AsTheyAre):
    """The model is taught to generate the label word after the prompt."""

    def examples(self, rows, context, train, merge_duplicates):
        from ray_ser.io.labelled import load_audio

        return [Example((audio, (row.text or "").strip() or None), row.label)
                for audio, row in zip(load_audio(list(rows), context.storage), rows)]

    def build(self, train, context):
        """A frozen audio tower (LoRA on the LM) runs once per clip: its tokens are cached (cached_tower.py)."""
        from ray_ser.branches.speech_llm.model import SpeechLLMEmotionModel

        if train.finetune == "lora":
            from ray_ser.branches.speech_llm.cached_tower import CachedTowerSELM

            return CachedTowerSELM.from_settings(train, context.cache_dir, context.classes)
        return SpeechLLMEmotionModel.from_settings(train, context.cache_dir, context.classes)

    def inputs(self, model, items):
        return model.prepare(items)

    def loss(self, model, inner, items, labels, weights, loss_fn, to_device, train):
        answer_logp = model(**to_device(inner.prepare(items, answers=labels.tolist())))
        return loss_fn.from_log_likelihood(answer_logp, labels, weights)
