"""Speech-LLM checkpoints on disk: the tiny random Qwen2-Audio, and the layout vLLM loads.

Production names Qwen2-Audio-7B-Instruct by hub id or path. Tests and the demo build a
Qwen2-Audio with random weights from a small config (a Whisper-style audio tower, a
projector and a Qwen2 LM whose head_dim is in vLLM's CPU attention set) and a real
tokenizer (SmolLM2's BPE with the three audio tokens added), saved the way the hub
ships one, so both load through the same ``from_pretrained`` path.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["tiny_speech_llm_checkpoint", "save_for_vllm", "AUDIO_TOKENS"]

AUDIO_TOKENS = ("<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>")

# The Qwen2-Audio chat format (ChatML; audio items as "Audio N: <bos><AUDIO><eos>\n"), the
# same template the hub checkpoint ships, so the OpenAI server and local engines build
# byte-identical prompts.
CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if 'audio' in content or 'audio_url' in content or content['type'] == 'audio' "
    "or content['type'] == 'input_audio' %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_speech_llm_checkpoint(directory: str | Path, hidden: int = 64, layers: int = 2,
                               audio_hidden: int = 64, audio_layers: int = 2, seed: int = 0) -> Path:
    """A random-weight Qwen2-Audio with a real tokenizer, saved like a hub checkpoint.

    The audio window stays Qwen2-Audio's 30 s (3000 mel frames): vLLM's loader checks it.
    """
    import torch
    import transformers

    from ray_ser.models.text_classifier import resolve_text_model

    smol_dir, gguf = resolve_text_model("offline:smollm2")
    tokenizer = transformers.AutoTokenizer.from_pretrained(smol_dir, gguf_file=gguf)
    tokenizer.add_special_tokens({"additional_special_tokens": list(AUDIO_TOKENS)})
    tokenizer.chat_template = CHAT_TEMPLATE
    features = transformers.WhisperFeatureExtractor(feature_size=80)
    processor = transformers.Qwen2AudioProcessor(feature_extractor=features, tokenizer=tokenizer,
                                                 chat_template=CHAT_TEMPLATE)
    audio = transformers.Qwen2AudioEncoderConfig(
        num_mel_bins=80, encoder_layers=audio_layers, encoder_attention_heads=4, encoder_ffn_dim=2 * audio_hidden,
        d_model=audio_hidden, max_source_positions=1500)
    text = transformers.Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=1, head_dim=hidden // 2, max_position_embeddings=2048,
        tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    config = transformers.Qwen2AudioConfig(audio_config=audio.to_dict(), text_config=text.to_dict(),
                                           audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"))
    torch.manual_seed(seed)
    model = transformers.Qwen2AudioForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return save_for_vllm(model, processor, directory)


def save_for_vllm(model, processor, directory: str | Path, state_dict: dict | None = None) -> Path:
    """save_pretrained, then the weight names vLLM's Qwen2-Audio loader expects.

    transformers 5.x nests the LM as ``language_model.model.model.*`` (and its head as
    ``language_model.lm_head``); vLLM reads the hub layout, ``language_model.model.*``.
    Both layouts load back in transformers.
    """
    from safetensors.torch import load_file, save_file

    directory = Path(directory)
    model.save_pretrained(directory, state_dict=state_dict)
    processor.save_pretrained(directory)
    for shard in sorted(directory.glob("*.safetensors")):
        tensors = load_file(shard)
        renamed = {_hub_name(k): v for k, v in tensors.items()}
        if renamed.keys() != tensors.keys():
            save_file(renamed, shard, metadata={"format": "pt"})
    index = directory / "model.safetensors.index.json"
    if index.exists():
        data = json.loads(index.read_text())
        data["weight_map"] = {_hub_name(k): v for k, v in data["weight_map"].items()}
        index.write_text(json.dumps(data, indent=2))
    return directory


def _hub_name(key: str) -> str:
    for old, new in (("language_model.model.model.", "language_model.model."),
                     ("model.language_model.", "language_model.model."),
                     ("model.audio_tower.", "audio_tower."),
                     ("model.multi_modal_projector.", "multi_modal_projector.")):
        if key.startswith(old):
            return new + key[len(old):]
    return key
