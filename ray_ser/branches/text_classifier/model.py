"""The text_classifier family's model: an LM reading the Whisper transcript, with a sequence-classification head.

Any ``AutoModelForSequenceClassification`` architecture works: a decoder LLM (Llama-3
8B instruct in production, SmolLM2-135M from the offline GGUF here) fine-tuned with
LoRA, or a small encoder (all-MiniLM-L6-v2) fine-tuned in full. A checkpoint is a
plain ``save_pretrained`` directory (LoRA merged, GGUF dequantized) plus ``branch.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ray_ser.branches.checkpoint import read_manifest, write_manifest
from ray_ser.branches.text_classifier.settings import TextClassifierTrain
from ray_ser.labels import EMOTIONS
from ray_ser.models.weights import OFFLINE_PREFIX, offline_model, resolve_model_name

__all__ = ["resolve_text_model", "TextEmotionModel", "TextClassifierPredictor"]


def resolve_text_model(name: str, cache_dir: str | Path | None = None) -> tuple[str, str | None]:
    """(directory or hub id, GGUF file name or None) for a configured model name."""
    if name.startswith(OFFLINE_PREFIX):
        return offline_model(name)
    return resolve_model_name(name, cache_dir), None


_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value")


class TextEmotionModel(nn.Module):
    """Tokenizer + sequence classifier over the 8 emotions."""

    def __init__(self, model: nn.Module, tokenizer, settings: TextClassifierTrain,
                 classes: tuple[str, ...] = EMOTIONS) -> None:
        super().__init__()
        self.settings = settings
        self.classes = tuple(classes)
        self.tokenizer = tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        self.model = model
        self._apply_finetune_mode()

    def _apply_finetune_mode(self) -> None:
        mode = self.settings.finetune
        if mode == "lora":
            from peft import LoraConfig, TaskType, get_peft_model

            present = {name.rsplit(".", 1)[-1] for name, _ in self.model.named_modules()}
            self.model = get_peft_model(self.model, LoraConfig(
                task_type=TaskType.SEQ_CLS, r=self.settings.lora_rank, lora_alpha=2 * self.settings.lora_rank,
                lora_dropout=0.05, target_modules=[t for t in _LORA_TARGETS if t in present]))
        elif mode == "head":
            base = self.model
            base.requires_grad_(False)
            head = getattr(base, "score", None) or getattr(base, "classifier", None)
            if head is None:
                raise ValueError(f"{type(base).__name__} has no score/classifier head to train")
            head.requires_grad_(True)
        elif mode != "full":
            raise ValueError(f"unknown finetune mode {mode!r}; expected lora, full or head")

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        prompts = [self.settings.template.format(text=t.strip()) for t in texts]
        encoded = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.settings.max_length,
                                 return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    @classmethod
    def from_settings(cls, settings: TextClassifierTrain, cache_dir: str | Path | None = None,
                      classes: tuple[str, ...] = EMOTIONS) -> TextEmotionModel:
        """A new model over settings.base_model (a hub id, a directory, offline:<alias> or tiny-random:llama)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path, gguf = resolve_text_model(settings.base_model, cache_dir)
        extra = {"gguf_file": gguf} if gguf else {}
        tokenizer = AutoTokenizer.from_pretrained(path, **extra)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(classes), id2label=dict(enumerate(classes)),
            label2id={e: i for i, e in enumerate(classes)}, dtype=torch.float32, **extra)
        if gguf:
            # GGUF weights are dequantized to fp32 on load; drop the marker so the model
            # trains and saves like any other (save_pretrained refuses "quantized" models).
            model.hf_quantizer = None
            model.is_quantized = False
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
        return cls(model, tokenizer, settings, classes)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.settings.finetune == "lora":
            from ray_ser.models.lora import merged_state_dict

            self.model.get_base_model().save_pretrained(directory / "model", state_dict=merged_state_dict(self.model))
        else:
            self.model.save_pretrained(directory / "model")
        self.tokenizer.save_pretrained(directory / "model")
        write_manifest(directory, "text_classifier", self.settings, self.classes)

    @classmethod
    def load(cls, directory: str | Path) -> TextEmotionModel:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        directory = Path(directory)
        manifest = read_manifest(directory, "text_classifier")
        settings = manifest.parse(TextClassifierTrain)
        tokenizer = AutoTokenizer.from_pretrained(directory / "model")
        model = AutoModelForSequenceClassification.from_pretrained(directory / "model", dtype=torch.float32)
        if model.config.num_labels != len(manifest.classes):
            raise ValueError(f"{directory} has {model.config.num_labels} labels, its manifest {len(manifest.classes)}")
        # Loaded to predict: the merged weights are plain, so no adapters are added again.
        return cls(model, tokenizer, settings.model_copy(update={"finetune": "full"}), manifest.classes).eval()


class TextClassifierPredictor:
    """The branch's BranchPredictor: ``predict_batch(texts) -> probabilities [n, 8]``."""

    input_kind = "text"
    speaker_profiles = None

    def __init__(self, model: TextEmotionModel, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.classes = model.classes

    @classmethod
    def load(cls, checkpoint: str | Path, device: str = "cpu") -> TextClassifierPredictor:
        return cls(TextEmotionModel.load(checkpoint), device)

    @torch.inference_mode()
    def predict_batch(self, texts: Sequence[str], speakers: None = None) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        inputs = {k: v.to(self.device) for k, v in self.model.encode(texts).items()}
        return torch.softmax(self.model(**inputs).float(), dim=-1).cpu().numpy()
