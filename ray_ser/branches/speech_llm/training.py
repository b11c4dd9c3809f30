"""How the Ray Train loop trains a speech_llm branch (SELM's objective)."""

from __future__ import annotations

from ray_ser.branches.training import AsTheyAre, Example

__all__ = ["SpeechLLMTraining"]


class SpeechLLMTraining(AsTheyAre):
    """The model is taught to generate the label word after the prompt."""

    def examples(self, rows, context, train, merge_duplicates):
        """(audio, transcript) per row: the manifest's text, or with ``transcripts: asr`` the profile's
        Whisper transcript where the manifest has none (an empty one then reads "(none)", as in the job)."""
        from ray_ser.io.labelled import load_audio

        rows = list(rows)
        audios = load_audio(rows, context.storage)
        texts = [(row.text or "").strip() or None for row in rows]
        if train.transcripts == "asr":
            from ray_ser.branches.speech_llm.transcripts import fill_transcripts

            texts = fill_transcripts(audios, texts, context.asr, context.cache_dir, context.rank, context.world,
                                     context.gather)
        return [Example((audio, text), row.label) for audio, text, row in zip(audios, texts, rows)]

    def build(self, train, context):
        """A frozen audio tower (LoRA on the LM) runs once per clip: its tokens are cached (cached_tower.py)."""
        from ray_ser.branches.speech_llm.model import SpeechLLMEmotionModel

        if train.finetune == "lora":
            from ray_ser.branches.speech_llm.cached_tower import CachedTowerSELM

            return CachedTowerSELM.from_settings(train, context.cache_dir, context.classes)
        return SpeechLLMEmotionModel.from_settings(train, context.cache_dir, context.classes)

    def parameter_groups(self, model, train):
        """The projector at learning_rate x projector_lr_scale; LoRA (and a trained tower) at learning_rate."""
        projector, rest = [], []
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                (projector if "multi_modal_projector" in name else rest).append(parameter)
        groups = [{"params": rest, "lr": train.learning_rate},
                  {"params": projector, "lr": train.learning_rate * train.projector_lr_scale}]
        return [g for g in groups if g["params"]]

    def warmup_fraction(self, train):
        return train.warmup_fraction

    def inputs(self, model, items):
        return model.prepare(items)

    def loss(self, model, inner, items, labels, weights, loss_fn, to_device, train):
        answer_logp = model(**to_device(inner.prepare(items, answers=labels.tolist())))
        return loss_fn.from_log_likelihood(answer_logp, labels, weights)
