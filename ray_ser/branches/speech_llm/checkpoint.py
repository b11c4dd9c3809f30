"""Speech-LLM checkpoints on disk: the layout vLLM loads, and the chat format every engine shares.

Production names Qwen2-Audio-7B-Instruct by hub id or path. Tests and the demo build a tiny
random Qwen2-Audio (ray_ser/testing/tiny_models.py) with a real tokenizer (SmolLM2's BPE with
the three audio tokens added), saved the way the hub ships one, so both load through the same
``from_pretrained`` path.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["save_for_vllm", "AUDIO_TOKENS", "CHAT_TEMPLATE"]

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


def save_for_vllm(model, processor, directory: str | Path, state_dict: dict | None = None) -> Path:
    """save_pretrained, then the weight names vLLM's Qwen2-Audio loader expects.

    transformers 5.x nests the LM as ``language_model.model.model.*`` (and its head as
    ``language_model.lm_head``); vLLM reads the hub layout, ``language_model.model.*``.
    Both layouts load back in transformers.
    """
    from safetensors.torch import load_file, save_file

    from ray_ser.models.weights import save_pretrained_on_any_rank

    directory = Path(directory)
    # Any rank: a cache build (under build_once's lock, which any Ray Train rank may win) or a checkpoint
    # is this process's own to write; transformers alone writes nothing on a rank other than 0.
    save_pretrained_on_any_rank(model, directory, state_dict=state_dict)
    if not (directory / "config.json").exists() or not any(directory.glob("*.safetensors")):
        raise RuntimeError(f"save_pretrained wrote no config or weights into {directory}")
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
