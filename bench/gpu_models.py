"""Random-weight models of the production shapes, for bench/gpu_profile.py: throughput depends on the
shapes, not on what the weights learned.

- Whisper large-v3 (1.55 B parameters: 32 + 32 layers of width 1280, 128 mel bins), built in
  transformers and converted to CTranslate2 (float16), with the offline Whisper base's tokenizer
  (51,865 tokens: large-v3 has one more language token; one row of 51,866 is the only difference);
- a WavLM-large-shaped encoder (24 layers of width 1024, 315 M) under the speech_encoder head;
- Qwen2-Audio-7B (a Whisper-large-v3 audio tower and a 32-layer LM of width 4096, vocabulary
  156,032: 8.4 B parameters), saved in the hub layout vLLM loads, SmolLM2's tokenizer with the
  audio tokens (its ids fit in the larger vocabulary).

``shape="tiny"`` builds the same architectures at a few layers of width 64 (the CPU check of the
script); ``shape="full"`` the real sizes, initialised on the GPU in half precision.
"""

from __future__ import annotations

from pathlib import Path

WHISPER = {
    "full": dict(d_model=1280, encoder_layers=32, decoder_layers=32, encoder_attention_heads=20,
                 decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120, num_mel_bins=128),
    "tiny": dict(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, num_mel_bins=80),
}
WAVLM = {
    "full": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
}
QWEN2_AUDIO = {
    "full": {"audio": dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120,
                           num_mel_bins=128),
             "text": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                          num_key_value_heads=32, head_dim=128, vocab_size=156032)},
    "tiny": {"audio": dict(d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128,
                           num_mel_bins=80),
             "text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=1, head_dim=32, vocab_size=None)},
}


def _init_device(device: str):
    """Parameters are created on the device in half precision (8 B parameters in fp32 on a CPU would
    take minutes and 34 GB); tiny models stay float32 on the CPU."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def scope():
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float16 if device == "cuda" else torch.float32)
        try:
            with torch.device(device):
                yield
        finally:
            torch.set_default_dtype(previous)

    return scope()


def whisper_ct2(directory: Path, shape: str, device: str, cache_dir: Path) -> Path:
    """A random Whisper of the shape, converted to CTranslate2 in directory/ct2 (float16 on GPU)."""
    import shutil

    import transformers
    from ctranslate2.converters import TransformersConverter

    from ray_ser.models.weights import whisper_base_dir

    target = directory / "ct2"
    if (target / "model.bin").exists():
        return target
    hf = directory / "hf"
    tokenizer_file = whisper_base_dir(cache_dir) / "tokenizer.json"
    tokenizer = transformers.WhisperTokenizerFast(tokenizer_file=str(tokenizer_file))
    dims = WHISPER[shape]
    config = transformers.WhisperConfig(vocab_size=51865, max_source_positions=1500, max_target_positions=448,
                                        decoder_start_token_id=50258, pad_token_id=50257, bos_token_id=50257,
                                        eos_token_id=50257, **dims)
    with _init_device(device):
        model = transformers.WhisperForConditionalGeneration(config)
    model.save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    transformers.WhisperFeatureExtractor(feature_size=dims["num_mel_bins"]).save_pretrained(hf)
    del model
    TransformersConverter(str(hf), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
        str(target), quantization="float16" if device == "cuda" else None, force=True)
    shutil.rmtree(hf)
    return target


def wavlm_branch(directory: Path, shape: str, device: str) -> Path:
    """A speech_encoder checkpoint over a random WavLM of the shape (frozen encoder, random head)."""
    import transformers

    from ray_ser.branches.speech_encoder.model import SpeechEmotionModel
    from ray_ser.branches.speech_encoder.settings import SpeechEncoderTrain

    target = directory / "branch"
    if (target / "branch.json").exists():
        return target
    config = transformers.WavLMConfig(do_stable_layer_norm=True, feat_extract_norm="layer", mask_time_prob=0.0,
                                      layerdrop=0.0, **WAVLM[shape])
    with _init_device("cpu"):  # 315 M parameters: fine on the CPU, and saved as float32 like the hub's
        encoder = transformers.AutoModel.from_config(config)
    encoder.save_pretrained(directory / "encoder")
    settings = SpeechEncoderTrain(base_model=str(directory / "encoder"), finetune="frozen", max_seconds=10)
    SpeechEmotionModel.from_settings(settings).save(target)
    return target


def qwen2_audio(directory: Path, shape: str, device: str) -> Path:
    """A random Qwen2-Audio of the shape in the hub layout vLLM loads (the speech_llm checkpoint)."""
    import transformers

    from ray_ser.branches.speech_llm.checkpoint import AUDIO_TOKENS, CHAT_TEMPLATE, save_for_vllm
    from ray_ser.models.weights import offline_model

    if (directory / "config.json").exists():
        return directory
    smol_dir, gguf = offline_model("offline:smollm2")
    tokenizer = transformers.AutoTokenizer.from_pretrained(smol_dir, gguf_file=gguf)
    tokenizer.add_special_tokens({"additional_special_tokens": list(AUDIO_TOKENS)})
    tokenizer.chat_template = CHAT_TEMPLATE
    dims = QWEN2_AUDIO[shape]
    features = transformers.WhisperFeatureExtractor(feature_size=dims["audio"]["num_mel_bins"])
    processor = transformers.Qwen2AudioProcessor(feature_extractor=features, tokenizer=tokenizer,
                                                 chat_template=CHAT_TEMPLATE)
    audio = transformers.Qwen2AudioEncoderConfig(max_source_positions=1500, **dims["audio"])
    text_dims = {**dims["text"], "vocab_size": dims["text"]["vocab_size"] or len(tokenizer)}
    text = transformers.Qwen2Config(
        max_position_embeddings=8192, tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **text_dims)
    config = transformers.Qwen2AudioConfig(audio_config=audio.to_dict(), text_config=text.to_dict(),
                                           audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"))
    with _init_device(device):
        model = transformers.Qwen2AudioForConditionalGeneration(config)
    if device == "cuda":
        import torch

        model = model.to(torch.bfloat16)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    save_for_vllm(model, processor, directory)
    return directory
