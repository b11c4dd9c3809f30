"""SELM training with the frozen audio tower run once per clip (what makes it feasible on CPUs).

With the tower frozen (``finetune: lora``), a clip's audio tokens never change during
training, so they are computed once and kept (in memory, keyed by the waveform's hash).
Two facts make the cached tokens the ones the engines compute at inference:

- Qwen2-Audio's processor sizes the audio tokens to the clip (``(frames - 1) // 2 + 1``,
  then ``(n - 2) // 2 + 1``: 25 per second), and inside Qwen2-Audio (transformers and vLLM)
  the tower's attention masks the padding frames out. A clip's tokens therefore do not
  depend on the window it is padded to, as long as the window covers the clip plus a
  margin: the 30 s window of the engines and the project's clip + 2 s window give the same
  tokens up to float32 rounding (bit for bit on some CPUs; a longer window can change the order
  in which the matmul kernels sum: ``tests/branches/speech_llm/test_cached_tower.py``), and the
  short one costs a fraction (the tower's cost grows with the window, not the clip).
- The LM then reads ``projector(tokens)`` in place of the ``<|AUDIO|>`` tokens; the
  projector is trained, so it is applied at every step, after the cache.

Each step then runs only the projector and the LM with LoRA, and the LM head only where
the answer is scored (the 49k-word head over every prompt position is ~10% of the LM).
``CachedTowerSELM`` keeps ``SpeechLLMEmotionModel``'s interface (``prepare``, ``forward``,
``save``), so a trained model is saved merged, like any SELM branch, and served by the
unchanged engines.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import torch

from ray_ser.schema import SAMPLE_RATE as TARGET_SAMPLE_RATE
from ray_ser.models.pretrained.ct2_whisper import clip_window_frames, tower_hidden_states
from ray_ser.branches.speech_llm.engines import PromptBuilder, SpeechLLMInput
from ray_ser.branches.speech_llm.model import SpeechLLMEmotionModel, append_answers
from ray_ser.branches.speech_llm.settings import SpeechLLMTrain
from ray_ser.labels import EMOTIONS

__all__ = ["audio_token_count", "tower_audio_tokens", "expand_audio_placeholders", "embed_with_audio",
           "CachedTowerSELM"]

_HOP = 160  # samples per mel frame at 16 kHz


def audio_token_count(num_samples: int) -> int:
    """Audio tokens Qwen2-Audio gives a clip (its processor's rule; at most 750 for 30 s)."""
    frames = -(-min(num_samples, 30 * TARGET_SAMPLE_RATE) // _HOP)  # the feature mask's ceil(samples / hop)
    return ((frames - 1) // 2 + 1 - 2) // 2 + 1


def _run_tower(tower, mel: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``Qwen2AudioEncoder.forward`` (pool, then norm) for a window of any even length up to 30 s."""
    x = tower_hidden_states(tower, mel, attention_mask)
    x = tower.avg_pooler(x.permute(0, 2, 1)).permute(0, 2, 1)
    return tower.layer_norm(x)


def tower_audio_tokens(tower, feature_extractor, audios: Sequence[np.ndarray],
                       window_frames: int | None = None) -> list[torch.Tensor]:
    """Each clip's audio tokens as Qwen2-Audio's tower gives them: [n_i, d_audio] (before the projector).

    The clips are padded to one window: by default the longest clip + 2 s in whole seconds
    (the same tokens as the engines' 30 s window, see the module doc), or ``window_frames``.
    """
    from transformers.masking_utils import create_bidirectional_mask

    lengths = [min(len(a), 30 * TARGET_SAMPLE_RATE) for a in audios]
    if window_frames is None:
        window_frames = max(clip_window_frames(-(-n // _HOP)) for n in lengths)
    features = feature_extractor([np.asarray(a, dtype=np.float32) for a in audios], sampling_rate=TARGET_SAMPLE_RATE,
                                 return_attention_mask=True, padding="max_length", truncation=True,
                                 max_length=window_frames * _HOP, return_tensors="pt")
    mel, mel_mask = features["input_features"], features["attention_mask"]
    frames, tokens = tower._get_feat_extract_output_lengths(mel_mask.sum(-1))
    states = mel.shape[-1] // 2
    mask_2d = (torch.arange(states)[None, :] < frames[:, None]).long()
    mask = create_bidirectional_mask(config=tower.config, inputs_embeds=torch.zeros(len(audios), states, 1),
                                     attention_mask=mask_2d)
    with torch.no_grad():
        out = _run_tower(tower, mel, mask)
    return [out[i, :int(n)].clone() for i, n in enumerate(tokens)]


def expand_audio_placeholders(text: str, counts: Sequence[int], audio_token: str = "<|AUDIO|>") -> str:
    """The processor's expansion: the i-th ``<|AUDIO|>`` becomes counts[i] of them."""
    pieces = text.split(audio_token)
    if len(pieces) - 1 != len(counts):
        raise ValueError(f"{len(pieces) - 1} audio placeholders in the prompt, {len(counts)} audios")
    out = pieces[0]
    for count, piece in zip(counts, pieces[1:]):
        out += audio_token * count + piece
    return out


def embed_with_audio(qwen2_audio, input_ids: torch.Tensor, audio_tokens: torch.Tensor,
                     audio_lengths: torch.Tensor) -> torch.Tensor:
    """Token embeddings with ``projector(audio tokens)`` at the ``<|AUDIO|>`` positions, in order.

    ``audio_tokens`` [n_audio, max_n, d_audio] is padded; ``audio_lengths`` [n_audio] says how
    many of each are real. The result is what Qwen2-Audio feeds its LM.
    """
    inner = qwen2_audio.model
    embeds = inner.get_input_embeddings()(input_ids)
    keep = torch.arange(audio_tokens.shape[1], device=audio_tokens.device)[None, :] < audio_lengths[:, None]
    projected = inner.multi_modal_projector(audio_tokens[keep].to(embeds.dtype))
    slots = input_ids == qwen2_audio.config.audio_token_id
    if int(slots.sum()) != projected.shape[0]:
        raise ValueError(f"{int(slots.sum())} audio slots in the prompts, {projected.shape[0]} audio tokens")
    return embeds.masked_scatter(slots.unsqueeze(-1), projected.to(embeds.dtype))


class CachedTowerSELM(SpeechLLMEmotionModel):
    """SELM with LoRA on the LM, the projector trained, and the frozen tower's tokens cached per clip.

    Same interface as ``SpeechLLMEmotionModel``: ``prepare(items, answers)`` -> a batch,
    ``forward(**batch)`` -> answer log-likelihoods (training) or label logits, ``save``.
    """

    def __init__(self, model, processor, settings: SpeechLLMTrain, classes: tuple[str, ...] = EMOTIONS,
                 tower_batch: int = 8) -> None:
        if settings.finetune != "lora":
            raise ValueError(f"the cached tower is frozen: finetune must be 'lora', not {settings.finetune!r}")
        super().__init__(model, processor, settings, classes)
        self._cache: dict[str, torch.Tensor] = {}
        self.tower_batch = tower_batch

    @classmethod
    def from_settings(cls, settings: SpeechLLMTrain, cache_dir: str | None = None,
                      classes: tuple[str, ...] = EMOTIONS) -> CachedTowerSELM:
        from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

        from ray_ser.branches.speech_llm.model import resolve_speech_llm

        path = resolve_speech_llm(settings.base_model, cache_dir)
        model = Qwen2AudioForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
        return cls(model, AutoProcessor.from_pretrained(path), settings, classes)

    @property
    def _qwen(self):
        """The Qwen2-Audio model; peft injected the adapters into it in place."""
        return self.model.get_base_model()

    @staticmethod
    def _key(audio: np.ndarray) -> str:
        data = np.ascontiguousarray(audio, dtype=np.float32)
        return hashlib.sha1(data.tobytes()).hexdigest() + f":{data.size}"

    @property
    def cached_clips(self) -> int:
        return len(self._cache)

    def audio_tokens(self, audios: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """The tower's tokens per clip, computed for the clips not seen before (batched by length)."""
        keys = [self._key(a) for a in audios]
        todo = sorted({k: a for k, a in zip(keys, audios) if k not in self._cache}.items(), key=lambda kv: len(kv[1]))
        tower, features = self._qwen.model.audio_tower, self.processor.feature_extractor
        for start in range(0, len(todo), self.tower_batch):
            chunk = todo[start:start + self.tower_batch]
            for (key, _), tokens in zip(chunk, tower_audio_tokens(tower, features, [a for _, a in chunk])):
                self._cache[key] = tokens
        return [self._cache[k] for k in keys]

    def prepare(self, items: Sequence[SpeechLLMInput], answers: Sequence[int] | None = None) -> dict:
        drop = self.settings.transcript_dropout if answers is not None else 0.0
        texts, audios = [], []
        for audio, transcript in items:
            prompts = PromptBuilder(transcript is not None and self._rng.random() >= drop, classes=self.classes)
            clip_audios = prompts.audios(audio)
            text = self.processor.apply_chat_template(prompts.messages(transcript), add_generation_prompt=True,
                                                      tokenize=False)
            texts.append(expand_audio_placeholders(text, [audio_token_count(len(a)) for a in clip_audios]))
            audios += clip_audios
        tokens = self.audio_tokens(audios)
        tokenizer = self.processor.tokenizer
        batch = dict(tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False))
        lengths = torch.tensor([t.shape[0] for t in tokens])
        padded = torch.zeros(len(tokens), int(lengths.max()), tokens[0].shape[1])
        for i, t in enumerate(tokens):
            padded[i, :t.shape[0]] = t
        batch["audio_tokens"], batch["audio_lengths"] = padded, lengths
        if answers is None:
            return batch
        return append_answers(batch, [self.answers[a] for a in answers], tokenizer.pad_token_id)

    def forward(self, input_ids, attention_mask, audio_tokens, audio_lengths,
                answer_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B] mean log-probability of the answer tokens, or, without answers, [B, 8] label logits."""
        qwen = self._qwen
        embeds = embed_with_audio(qwen, input_ids, audio_tokens, audio_lengths)
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = qwen.model.language_model(inputs_embeds=embeds, attention_mask=attention_mask,
                                           position_ids=positions, use_cache=False).last_hidden_state
        if answer_mask is None:
            return torch.log_softmax(qwen.lm_head(hidden[:, -1]).float(), dim=-1)[:, self.first_tokens]
        width = answer_mask.shape[1]
        # The state at position t predicts token t + 1: the answer is predicted from one step earlier.
        predicting = torch.log_softmax(qwen.lm_head(hidden[:, -width - 1:-1]).float(), dim=-1)
        token_logp = predicting.gather(-1, input_ids[:, -width:].unsqueeze(-1)).squeeze(-1)
        mask = answer_mask.float()
        return (token_logp * mask).sum(1) / mask.sum(1)
