"""Fixtures for the pretrained speech-LLM tests: the real Whisper base, real speech, a small LM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf




@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on a 2-core machine shared with other jobs, two OpenMP threads wait on
    each other at every op (a 135M-LM forward measured 8.1 s with 2 threads, 1.3 s with 1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_selm(tmp_path_factory, whisper_dir):
    """A Qwen2-Audio assembled by the production code from the real Whisper-base tower, SmolLM2's
    real tokenizer and a small random Llama (2 layers) in place of SmolLM2's weights: fast, and
    enough for what does not depend on the LM's weights."""
    import copy

    import torch
    import transformers

    from ray_ser.branches.speech_llm.assembly import SELMParts, build_selm_checkpoint
    from ray_ser.models.weights import offline_model

    directory, gguf = offline_model("offline:smollm2")
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory, gguf_file=gguf)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0}, rms_norm_eps=1e-5,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    llama = transformers.LlamaForCausalLM(config).eval()
    path = build_selm_checkpoint(tmp_path_factory.mktemp("small-selm") / "model", SELMParts(str(whisper_dir)),
                                 llama, copy.deepcopy(tokenizer))
    return path, llama, tokenizer
