"""The speech_llm family's trainable model: fine-tuning the speech LLM with SELM's objective: next-token loss on the emotion word.

The model sees the same chat prompt the engines build at inference (audio, optionally the
transcript, the question) and is taught to continue it with ``<label><|im_end|>``. LoRA
adapts the LM; the audio projector is trained in full; the audio tower stays frozen
(``lora``, as SELM freezes its speech encoder) or is trained too (``lora_audio``, for a
tower that starts from random weights); ``full`` trains everything, for a model that is
random throughout (the demo's tiny one). Checkpoints are saved merged, in the weight
layout vLLM loads: Qwen2-Audio has no LoRA support in vLLM, so adapters are not served.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ray_ser.schema import SAMPLE_RATE
from ray_ser.branches.checkpoint import write_manifest
from ray_ser.branches.speech_llm.engines import (PromptBuilder, SpeechLLMInput, label_answer_tokens, label_first_tokens,
                                                 model_directory)
from ray_ser.branches.speech_llm.settings import SpeechLLMTrain
from ray_ser.labels import EMOTIONS
from ray_ser.models.weights import resolve_model_name

__all__ = ["SpeechLLMEmotionModel", "resolve_speech_llm", "append_answers"]

_LM_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


def resolve_speech_llm(name: str, cache_dir: str | Path | None = None) -> str:
    """A directory transformers and vLLM can load, for a configured model name: a hub id, a directory,
    a trained branch (adapted further from its model/), offline:selm-base (assembled from real parts
    once into the cache: ray_ser/branches/speech_llm/assembly.py) or tiny-random:qwen2-audio."""
    from ray_ser.branches.speech_llm.assembly import PRETRAINED_SPEECH_LLMS, resolve_pretrained_speech_llm

    if name in PRETRAINED_SPEECH_LLMS:
        return resolve_pretrained_speech_llm(name, cache_dir)
    return str(model_directory(resolve_model_name(name, cache_dir)))


def append_answers(batch: dict, answers: Sequence[Sequence[int]], pad_id: int) -> dict:
    """Each row's answer tokens appended to its prompt (padded to the longest), with ``answer_mask``
    marking them: what the training loss scores."""
    width = max(len(ids) for ids in answers)
    answer_ids = torch.full((len(answers), width), pad_id, dtype=torch.long)
    answer_mask = torch.zeros((len(answers), width), dtype=torch.long)
    for row, ids in enumerate(answers):
        answer_ids[row, :len(ids)] = torch.tensor(ids)
        answer_mask[row, :len(ids)] = 1
    batch["input_ids"] = torch.cat([batch["input_ids"], answer_ids], dim=1)
    batch["attention_mask"] = torch.cat([batch["attention_mask"], answer_mask], dim=1)
    batch["answer_mask"] = answer_mask
    return batch


class SpeechLLMEmotionModel(nn.Module):
    """Qwen2-Audio + processor; forward gives answer log-likelihoods (training) or label logits."""

    def __init__(self, model: nn.Module, processor, settings: SpeechLLMTrain,
                 classes: tuple[str, ...] = EMOTIONS) -> None:
        super().__init__()
        self.settings = settings
        self.classes = tuple(classes)
        self.processor = processor
        processor.tokenizer.padding_side = "left"
        tokenizer = processor.tokenizer
        self.first_tokens = label_first_tokens(tokenizer, self.classes)
        self.answers = label_answer_tokens(tokenizer, self.classes)
        self.model = model
        self._rng = np.random.default_rng(settings.seed)
        self._apply_finetune_mode()

    def _apply_finetune_mode(self) -> None:
        from peft import LoraConfig, get_peft_model

        mode = self.settings.finetune
        if mode == "full":
            return
        if mode not in ("lora", "lora_audio"):
            raise ValueError(f"unknown finetune mode {mode!r} for speech_llm; expected lora, lora_audio or full")
        rank = self.settings.lora_rank
        self.model = get_peft_model(self.model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.05,
                                                           target_modules=_LM_TARGETS))
        base = self.model.get_base_model()
        parts = getattr(base, "model", base)  # transformers 5 nests the parts under .model
        trained = [parts.multi_modal_projector] + ([parts.audio_tower] if mode == "lora_audio" else [])
        for module in trained:
            module.requires_grad_(True)

    def prepare(self, items: Sequence[SpeechLLMInput], answers: Sequence[int] | None = None) -> dict:
        """Model inputs for clips; with answers (label ids), the teacher-forced answer appended."""
        drop = self.settings.transcript_dropout if answers is not None else 0.0
        texts, audios = [], []
        for audio, transcript in items:
            prompts = PromptBuilder(transcript is not None and self._rng.random() >= drop, classes=self.classes)
            texts.append(self.processor.apply_chat_template(prompts.messages(transcript), add_generation_prompt=True,
                                                            tokenize=False))
            audios += prompts.audios(audio)
        batch = dict(self.processor(text=texts, audio=audios, sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                    padding=True))
        if answers is None:
            return batch
        return append_answers(batch, [self.answers[a] for a in answers], self.processor.tokenizer.pad_token_id)

    def forward(self, input_ids, attention_mask, input_features, feature_attention_mask,
                answer_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B] mean log-probability of the answer tokens, or, without answers, [B, 8] label logits."""
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, input_features=input_features,
                            feature_attention_mask=feature_attention_mask).logits
        if answer_mask is None:
            return torch.log_softmax(logits[:, -1].float(), dim=-1)[:, self.first_tokens]
        width = answer_mask.shape[1]
        # The logits at position t predict token t + 1: the answer is predicted from one step earlier.
        predicting = torch.log_softmax(logits[:, -width - 1:-1].float(), dim=-1)
        token_logp = predicting.gather(-1, input_ids[:, -width:].unsqueeze(-1)).squeeze(-1)
        mask = answer_mask.float()
        return (token_logp * mask).sum(1) / mask.sum(1)

    @classmethod
    def from_settings(cls, settings: SpeechLLMTrain, cache_dir: str | Path | None = None,
                      classes: tuple[str, ...] = EMOTIONS) -> SpeechLLMEmotionModel:
        from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

        path = resolve_speech_llm(settings.base_model, cache_dir)
        model = Qwen2AudioForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
        return cls(model, AutoProcessor.from_pretrained(path), settings, classes)

    def save(self, directory: str | Path) -> None:
        from ray_ser.branches.speech_llm.checkpoint import save_for_vllm
        from ray_ser.models.lora import merged_state_dict

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.settings.finetune == "full":
            save_for_vllm(self.model, self.processor, directory / "model")
        else:
            save_for_vllm(self.model.get_base_model(), self.processor, directory / "model",
                          state_dict=merged_state_dict(self.model))
        write_manifest(directory, "speech_llm", self.settings, self.classes)
