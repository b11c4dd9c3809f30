"""The text_classifier family's settings: an LM reading the Whisper transcript."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ray_ser.config_types import BranchBase, InputKind, TrainBase

__all__ = ["TextClassifierTrain", "TextClassifierBranch"]


class TextClassifierTrain(TrainBase):
    """How a text branch is trained; kept in its checkpoint, which inference reads back."""

    finetune: Literal["lora", "full", "head"] = Field(
        "lora", description="lora: adapters on the attention projections (decoder LLMs); full: every weight "
        "(small encoders); head: the classification head alone.")
    lora_rank: int = Field(8, ge=1, description="LoRA rank where finetune is a LoRA mode (alpha = 2 * rank).")
    max_length: int = Field(64, ge=8, description="Tokens per transcript prompt.")
    template: str = Field(
        "{text}", description="The prompt around the transcript ({text} is replaced). An encoder reads the bare "
        "transcript; give a decoder LLM an instruction, e.g. \"Transcript: {text}\\nThe speaker's emotion is\".")


class TextClassifierBranch(BranchBase):
    """Transcript in: any AutoModelForSequenceClassification (a Llama-3 instruct with LoRA, SmolLM2, MiniLM)."""

    family: Literal["text_classifier"] = "text_classifier"
    train: TextClassifierTrain | None = Field(None, description="How to fine-tune it; None: not trainable here.")

    @model_validator(mode="after")
    def _needs_base_model(self) -> TextClassifierBranch:
        if self.train is not None and self.train.base_model is None:
            raise ValueError("train.base_model is required for text_classifier branches")
        return self

    def input_kind(self) -> InputKind:
        return "text"

    def reads_transcript(self) -> bool:
        return True
