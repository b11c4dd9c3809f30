"""Assembling Qwen2-Audio from real parts, on a small random Llama (fast): the mapping, the tokenizer,
the projector, the saved layout, and generation through the project's transformers engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ray_ser.labels import EMOTIONS
from ray_ser.branches.speech_llm.checkpoint import AUDIO_TOKENS

VLLM_CPU_HEAD_DIMS = {32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512}


@pytest.fixture(scope="module")
def loaded(small_selm):
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    path, _, _ = small_selm
    model = Qwen2AudioForConditionalGeneration.from_pretrained(str(path), dtype=torch.float32).eval()
    return model, AutoProcessor.from_pretrained(str(path))


def test_the_qwen2_lm_computes_what_the_llama_does(small_selm, loaded):
    _, llama, tokenizer = small_selm
    model, _ = loaded
    ids = tokenizer("Well, that went better than I expected!", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = llama(ids).logits
        got = model(input_ids=ids).logits
    assert got.shape[-1] == expected.shape[-1] + 3  # the three audio tokens
    assert torch.allclose(got[..., :expected.shape[-1]], expected, atol=1e-5)


def test_audio_tokens_are_added_and_the_original_rows_kept(small_selm, loaded):
    _, llama, tokenizer = small_selm
    model, processor = loaded
    n = len(tokenizer)
    ids = processor.tokenizer.convert_tokens_to_ids(list(AUDIO_TOKENS))
    assert ids == [n, n + 1, n + 2] and model.config.audio_token_id == n + 1
    embed = model.get_input_embeddings().weight
    original = llama.get_input_embeddings().weight
    assert torch.equal(embed[:n], original) and torch.equal(model.lm_head.weight[:n], original)
    assert torch.allclose(embed[n:], original.mean(0).expand(3, -1))
    text = model.config.text_config
    assert text.head_dim in VLLM_CPU_HEAD_DIMS and not text.tie_word_embeddings
    layer = model.model.language_model.layers[0].self_attn
    assert not layer.q_proj.bias.any() and not layer.k_proj.bias.any() and not layer.v_proj.bias.any()
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "audio"}, {"type": "text",
                                                                                             "text": "hi"}]}],
                                           add_generation_prompt=True, tokenize=False)
    assert "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n" in prompt and prompt.endswith("<|im_start|>assistant\n")


def test_projected_audio_has_the_scale_of_token_embeddings(loaded, speech_clips):
    from ray_ser.branches.speech_llm.cached_tower import tower_audio_tokens

    model, processor = loaded
    tokens = tower_audio_tokens(model.model.audio_tower, processor.feature_extractor, speech_clips[:2])
    with torch.no_grad():
        projected = model.model.multi_modal_projector(torch.cat(tokens))
        text_rms = model.get_input_embeddings().weight.pow(2).mean().sqrt()
    ratio = float(projected.pow(2).mean().sqrt() / text_rms)
    assert 0.5 < ratio < 2.0, ratio


def test_the_saved_checkpoint_has_the_layout_vllm_loads(small_selm):
    import json

    from safetensors import safe_open

    path, _, _ = small_selm
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    assert "language_model.lm_head.weight" in names and "language_model.model.embed_tokens.weight" in names
    assert "audio_tower.layers.5.self_attn.k_proj.weight" in names and "multi_modal_projector.linear.weight" in names
    assert not any(n.startswith("model.") or "language_model.model.model." in n for n in names)
    config = json.loads((path / "config.json").read_text())
    assert config["audio_config"]["max_source_positions"] == 1500  # vLLM's schema wants 3000 mel frames


def test_generates_a_label_through_the_transformers_engine(small_selm, speech_clips):
    from ray_ser.branches.speech_llm.settings import SpeechLLMConfig
    from ray_ser.branches.speech_llm.engines import SpeechLLMPredictor

    path, _, _ = small_selm
    branch = SpeechLLMPredictor.load(path, SpeechLLMConfig(engine="transformers"))
    items = [(speech_clips[0], "I can't believe you did that to me."), (speech_clips[1], None)]
    texts, probs = branch.answer_batch(items)
    assert all(t in EMOTIONS for t in texts) and probs.shape == (2, 8)
    assert np.allclose(probs.sum(1), 1, atol=1e-5) and texts == [EMOTIONS[i] for i in probs.argmax(1)]


def test_unknown_names_are_refused():
    from ray_ser.branches.speech_llm.assembly import SELM_BASE, resolve_pretrained_speech_llm

    with pytest.raises(KeyError, match=SELM_BASE):
        resolve_pretrained_speech_llm("offline:selm-huge")
