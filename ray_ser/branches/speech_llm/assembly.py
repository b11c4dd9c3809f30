"""A Qwen2-Audio checkpoint assembled offline from real pretrained parts (``offline:selm-base``).

- audio tower: Whisper base's encoder, read from the shipped CTranslate2 ``model.bin``
  (:mod:`ray_ser.models.pretrained.ct2_whisper`); Qwen2-Audio's tower is a Whisper encoder
  that pools 2x before its final layer norm, so one audio token covers 40 ms;
- projector: ``Linear(512 -> 576)``, seeded, scaled so the projected audio has the RMS of
  the LM's token embeddings (it is trained; the tower stays frozen);
- LM: SmolLM2-135M-Instruct (the shipped GGUF, dequantized to float32) in a Qwen2
  decoder. A Llama layer is a Qwen2 layer without q/k/v biases, so the biases are zeros;
  RoPE theta (100000), RMSNorm eps, head_dim 64 (in vLLM's CPU attention set), GQA 9/3
  heads carry over. The tied embedding is saved untied (Qwen2-Audio has its own
  ``lm_head``); the three audio tokens are added to SmolLM2's tokenizer and the
  embedding grows by three rows (the mean embedding), the original rows unchanged.

The checkpoint is saved with the project's Qwen2-Audio chat template and in the weight
layout vLLM loads (``save_for_vllm``), once, into the cache (``build_once``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["SELM_BASE", "SELM_CACHE_NAME", "SELMParts", "smollm2_causal_lm", "qwen2_config_from_llama",
           "qwen2_state_dict_from_llama", "add_audio_tokens", "grow_embeddings", "projector_init",
           "assemble_selm", "build_selm_checkpoint", "resolve_pretrained_speech_llm", "PRETRAINED_SPEECH_LLMS"]

SELM_BASE = "offline:selm-base"
# The version suffix changes whenever the recipe changes, so an old cached build is never reused.
SELM_CACHE_NAME = "pretrained/selm-whisper-base-smollm2-v1"


@dataclass(frozen=True)
class SELMParts:
    """Where the parts come from; defaults are the offline packages."""

    whisper_dir: str | None = None     # CTranslate2 Whisper directory; None: the offline Whisper base
    seed: int = 0                      # projector init


def smollm2_causal_lm():
    """SmolLM2-135M-Instruct as ``LlamaForCausalLM`` (float32, from the GGUF) and its tokenizer."""
    import transformers

    from ray_ser.models.weights import offline_model

    directory, gguf = offline_model("offline:smollm2")
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory, gguf_file=gguf)
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf, dtype=torch.float32)
    model.hf_quantizer = None  # dequantized already; the marker only blocks save_pretrained
    model.config.quantization_config = None
    return model.eval(), tokenizer


def qwen2_config_from_llama(llama_config, vocab_size: int, tokenizer):
    """The Qwen2 config that computes what the Llama config does (checked for what differs)."""
    import transformers

    c = llama_config
    rope = dict(getattr(c, "rope_parameters", None) or {"rope_type": "default", "rope_theta": c.rope_theta})
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"RoPE scaling {rope} has no Qwen2 equivalent here")
    if getattr(c, "mlp_bias", False) or getattr(c, "attention_bias", False):
        raise ValueError("a Llama with MLP/attention biases has no exact Qwen2 layout")
    if c.hidden_act != "silu":
        raise ValueError(f"activation {c.hidden_act!r}: Qwen2 uses silu")
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return transformers.Qwen2Config(
        vocab_size=vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, head_dim=head_dim, hidden_act="silu",
        max_position_embeddings=c.max_position_embeddings, rms_norm_eps=float(c.rms_norm_eps),
        rope_parameters={"rope_type": "default", "rope_theta": float(rope["rope_theta"])},
        use_sliding_window=False, sliding_window=None, attention_dropout=0.0, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)


def grow_embeddings(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """``weight`` with ``rows`` more rows, each the mean row; the original rows are unchanged."""
    if rows <= 0:
        return weight.clone()
    return torch.cat([weight, weight.mean(0, keepdim=True).expand(rows, -1)], 0).contiguous()


def qwen2_state_dict_from_llama(llama, vocab_size: int) -> dict[str, torch.Tensor]:
    """Qwen2ForCausalLM weights (``model.*``, ``lm_head.weight``) from a LlamaForCausalLM.

    Names match one to one; q/k/v get zero biases; the embedding and the (untied) head
    grow to ``vocab_size`` rows.
    """
    state = {k: v.detach().clone() for k, v in llama.state_dict().items()}
    embed = state["model.embed_tokens.weight"]
    head = state.get("lm_head.weight", embed)
    extra = vocab_size - embed.shape[0]
    if extra < 0:
        raise ValueError(f"vocab_size {vocab_size} < the LM's {embed.shape[0]} rows")
    state["model.embed_tokens.weight"] = grow_embeddings(embed, extra)
    state["lm_head.weight"] = grow_embeddings(head, extra)
    c = llama.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    for i in range(c.num_hidden_layers):
        for proj, heads in (("q_proj", c.num_attention_heads), ("k_proj", c.num_key_value_heads),
                            ("v_proj", c.num_key_value_heads)):
            state[f"model.layers.{i}.self_attn.{proj}.bias"] = torch.zeros(heads * head_dim)
    state = {k: v for k, v in state.items() if "rotary_emb" not in k}
    return state


def add_audio_tokens(tokenizer):
    """The three Qwen2-Audio tokens, added as special tokens, and the project's chat template."""
    from ray_ser.branches.speech_llm.checkpoint import AUDIO_TOKENS, CHAT_TEMPLATE

    tokenizer.add_special_tokens({"additional_special_tokens": list(AUDIO_TOKENS)})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def projector_init(audio_d: int, text_d: int, tower_norm: torch.nn.LayerNorm, embed: torch.Tensor,
                   seed: int) -> dict[str, torch.Tensor]:
    """A seeded Gaussian projector whose output RMS matches the LM's token embeddings.

    A tower output is ``gamma * z + beta`` (z: zero mean, unit variance over features), so its
    expected squared norm is ``sum(gamma^2 + beta^2)``; ``W ~ N(0, s^2)`` gives outputs of RMS
    ``s * sqrt(that)``, and ``s`` is chosen to make it the embeddings' RMS. Bias: zeros.
    """
    norm_sq = float((tower_norm.weight.detach() ** 2 + tower_norm.bias.detach() ** 2).sum())
    target = float(embed.detach().pow(2).mean().sqrt())
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(text_d, audio_d, generator=generator) * (target / norm_sq ** 0.5)
    return {"linear.weight": weight, "linear.bias": torch.zeros(text_d)}


def assemble_selm(parts: SELMParts = SELMParts(), llama=None, tokenizer=None):
    """(Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor) from the real parts.

    ``llama``/``tokenizer`` default to SmolLM2-135M-Instruct; tests pass a small Llama.
    """
    import transformers

    from ray_ser.config import default_cache_dir
    from ray_ser.models.pretrained.ct2_whisper import (qwen2_audio_encoder_config, read_ct2_model,
                                                       whisper_encoder_state_dict)
    from ray_ser.models.weights import whisper_base_dir

    if llama is None:
        llama, tokenizer = smollm2_causal_lm()
    tokenizer = add_audio_tokens(tokenizer)
    whisper = parts.whisper_dir or str(whisper_base_dir(default_cache_dir()))
    ct2 = read_ct2_model(whisper)
    audio_config = qwen2_audio_encoder_config(ct2)
    text_config = qwen2_config_from_llama(llama.config, len(tokenizer), tokenizer)
    config = transformers.Qwen2AudioConfig(audio_config=audio_config.to_dict(), text_config=text_config.to_dict(),
                                           audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"))
    config.tie_word_embeddings = False
    torch.manual_seed(parts.seed)  # every weight is overwritten below; this only makes the init quiet
    model = transformers.Qwen2AudioForConditionalGeneration(config)
    parts_ = model.model
    lm_state = qwen2_state_dict_from_llama(llama, len(tokenizer))
    tower_state = whisper_encoder_state_dict(ct2)
    tower_norm = torch.nn.LayerNorm(audio_config.d_model)
    tower_norm.load_state_dict({"weight": tower_state["layer_norm.weight"], "bias": tower_state["layer_norm.bias"]})
    projector = projector_init(audio_config.d_model, text_config.hidden_size, tower_norm,
                               lm_state["model.embed_tokens.weight"], parts.seed)
    state = {**{f"model.audio_tower.{k}": v for k, v in tower_state.items()},
             **{f"model.multi_modal_projector.{k}": v for k, v in projector.items()},
             **{f"model.language_model.{k[len('model.'):]}": v for k, v in lm_state.items() if k.startswith("model.")},
             "lm_head.weight": lm_state["lm_head.weight"]}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"assembled weights do not fit Qwen2-Audio: missing {missing}, unexpected {unexpected}")
    model = model.to(torch.float32).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    from ray_ser.branches.speech_llm.checkpoint import CHAT_TEMPLATE

    features = transformers.WhisperFeatureExtractor(feature_size=audio_config.num_mel_bins)
    processor = transformers.Qwen2AudioProcessor(feature_extractor=features, tokenizer=tokenizer,
                                                 chat_template=CHAT_TEMPLATE)
    return model, processor


def build_selm_checkpoint(directory: str | Path, parts: SELMParts = SELMParts(), llama=None,
                          tokenizer=None) -> Path:
    """Assemble and save in the hub layout vLLM and transformers load (float32, ~0.74 GB)."""
    from ray_ser.branches.speech_llm.checkpoint import save_for_vllm

    model, processor = assemble_selm(parts, llama, tokenizer)
    return save_for_vllm(model, processor, directory)


PRETRAINED_SPEECH_LLMS = {SELM_BASE: SELM_CACHE_NAME}


def resolve_pretrained_speech_llm(name: str, cache_dir: str | Path | None = None) -> str:
    """The cached checkpoint directory for ``offline:selm-base``, built into cache_dir on first use
    (~1-2 min; None is the default cache)."""
    from ray_ser.config import default_cache_dir
    from ray_ser.models.weights import build_once

    if name not in PRETRAINED_SPEECH_LLMS:
        raise KeyError(f"unknown pretrained speech LLM {name!r}; known: {sorted(PRETRAINED_SPEECH_LLMS)}")
    from ray_ser.models.weights import whisper_base_dir

    cache = Path(cache_dir or default_cache_dir())
    parts = SELMParts(str(whisper_base_dir(cache)))
    return str(build_once(PRETRAINED_SPEECH_LLMS[name], lambda directory: build_selm_checkpoint(directory, parts),
                          cache))
