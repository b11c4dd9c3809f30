"""Small random-weight models of real architectures, saved the way the hub ships them.

The demo and the tests name them ``tiny-random:<kind>`` (``ray_ser.models.weights.resolve_model_name``
builds each once into the cache); tests also call the builders directly. They load through the same
``from_pretrained`` path as production models, so the code under test is the production code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ray_ser.models.weights import offline_model, save_pretrained_on_any_rank

__all__ = ["tiny_encoder_checkpoint", "tiny_decoder_checkpoint", "tiny_speech_llm_checkpoint", "tiny_model_builder",
           "TINY_KINDS"]


_TINY_FAMILIES = {
    "wavlm": ("WavLMConfig", {"num_buckets": 32, "max_bucket_distance": 100}),
    "hubert": ("HubertConfig", {}),
    "wav2vec2": ("Wav2Vec2Config", {}),
    "whisper": ("WhisperConfig", {}),
}


def tiny_encoder_checkpoint(family: str, directory: str | Path, hidden: int = 64, layers: int = 2,
                            seed: int = 0) -> Path:
    """A random-weight encoder of a real architecture, saved like a hub checkpoint (tests, demo)."""
    import torch
    import transformers

    if family not in _TINY_FAMILIES:
        raise ValueError(f"unknown encoder family {family!r}; expected one of {sorted(_TINY_FAMILIES)}")
    config_name, extra = _TINY_FAMILIES[family]
    if family == "whisper":
        return _tiny_whisper(directory, hidden, layers, seed)
    config = getattr(transformers, config_name)(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=2 * hidden,
        conv_dim=(32,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, do_stable_layer_norm=True,
        feat_extract_norm="layer", mask_time_prob=0.0, layerdrop=0.0, **extra,
    )
    torch.manual_seed(seed)
    model = transformers.AutoModel.from_config(config)
    directory = Path(directory)
    save_pretrained_on_any_rank(model, directory)
    return directory


def _tiny_whisper(directory: str | Path, hidden: int, layers: int, seed: int, window_s: int = 6) -> Path:
    """A random Whisper *encoder* with a window of window_s seconds (not 30), saved encoder-only."""
    import torch
    import transformers
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = transformers.WhisperConfig(
        d_model=hidden, encoder_layers=layers, encoder_attention_heads=4, encoder_ffn_dim=2 * hidden,
        decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=2 * hidden, num_mel_bins=80,
        max_source_positions=window_s * 50, vocab_size=16, max_target_positions=16,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3)
    torch.manual_seed(seed)
    directory = Path(directory)
    save_pretrained_on_any_rank(WhisperEncoder(config), directory)
    return directory


def tiny_decoder_checkpoint(directory: str | Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A random-weight Llama with a real tokenizer, saved like a hub checkpoint (tests)."""
    import torch
    import transformers

    minilm_dir, _ = offline_model("offline:minilm")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    config = transformers.LlamaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id)
    torch.manual_seed(seed)
    directory = Path(directory)
    save_pretrained_on_any_rank(transformers.AutoModelForCausalLM.from_config(config), directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_speech_llm_checkpoint(directory: str | Path, hidden: int = 64, layers: int = 2,
                               audio_hidden: int = 64, audio_layers: int = 2, seed: int = 0) -> Path:
    """A random-weight Qwen2-Audio with a real tokenizer, saved like a hub checkpoint.

    The audio window stays Qwen2-Audio's 30 s (3000 mel frames): vLLM's loader checks it.
    """
    import torch
    import transformers

    from ray_ser.branches.speech_llm.checkpoint import AUDIO_TOKENS, CHAT_TEMPLATE, save_for_vllm

    smol_dir, gguf = offline_model("offline:smollm2")
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


# kind (the part after "tiny-random:") -> builder(directory)
TINY_KINDS: dict[str, Callable[[Path], Path]] = {
    **{family: (lambda family: lambda d: tiny_encoder_checkpoint(family, d))(family) for family in _TINY_FAMILIES},
    "llama": tiny_decoder_checkpoint,
    "qwen2-audio": tiny_speech_llm_checkpoint,
}


def tiny_model_builder(kind: str) -> Callable[[Path], Path]:
    if kind not in TINY_KINDS:
        raise ValueError(f"unknown tiny-random model {kind!r}; known: {sorted(TINY_KINDS)}")
    return TINY_KINDS[kind]
