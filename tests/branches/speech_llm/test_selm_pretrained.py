"""offline:selm-base with the real weights: SmolLM2-135M's logits, Whisper base's encoder states,
and an answer through the project's transformers engine.

Slow: the first run assembles the checkpoint into the cache (build_once, ~1-2 min, 0.7 GB; later
runs reuse it) and the LM comparison dequantizes the GGUF (~40 s).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ray_ser.labels import EMOTIONS

pytestmark = pytest.mark.slow

# Measured: the Qwen2 LM reproduces the Llama's logits bit for bit (max |diff| 0.0); the tower's
# frame states are within 2e-3 of CTranslate2's float32 encoder (values up to ~24).
LM_ATOL = 1e-4
ENCODER_ATOL = 5e-3


@pytest.fixture(scope="module")
def selm_dir():
    from ray_ser.branches.speech_llm.assembly import SELM_BASE, resolve_pretrained_speech_llm

    return resolve_pretrained_speech_llm(SELM_BASE)


@pytest.fixture(scope="module")
def selm_model(selm_dir):
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    model = Qwen2AudioForConditionalGeneration.from_pretrained(selm_dir, dtype=torch.float32).eval()
    return model, AutoProcessor.from_pretrained(selm_dir)


def test_the_lm_is_smollm2(selm_model):
    from ray_ser.branches.speech_llm.assembly import smollm2_causal_lm

    model, processor = selm_model
    llama, tokenizer = smollm2_causal_lm()
    text = tokenizer.apply_chat_template([{"role": "user", "content": "How do you feel today? Answer in one word."}],
                                         add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert torch.equal(processor.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"], ids)
    with torch.no_grad():
        expected = llama(ids).logits
        got = model(input_ids=ids).logits[..., :expected.shape[-1]]
    assert torch.allclose(got, expected, atol=LM_ATOL), (got - expected).abs().max()
    assert torch.equal(got[0, -1].argmax(), expected[0, -1].argmax())
    text_config = model.config.text_config
    assert (text_config.num_hidden_layers, text_config.hidden_size, text_config.head_dim,
            text_config.num_key_value_heads, text_config.vocab_size) == (30, 576, 64, 3, 49155)
    assert text_config.rope_parameters["rope_theta"] == 100000.0


def test_the_audio_tower_is_whisper_base(selm_model, whisper_dir, speech_clips):
    """Compared: the tower's last-layer states after its final norm, before Qwen2-Audio's 2x pool
    (tower_frame_states), unmasked over the 30 s window, against CTranslate2's encode output on the
    same faster-whisper log-mel."""
    import ctranslate2
    from faster_whisper.feature_extractor import FeatureExtractor

    from ray_ser.models.pretrained.ct2_whisper import tower_frame_states

    model, _ = selm_model
    ct2 = ctranslate2.models.Whisper(str(whisper_dir), compute_type="float32", intra_threads=2)
    mel = FeatureExtractor(feature_size=80)(speech_clips[-1], padding=0)
    x = np.ascontiguousarray(np.pad(mel, ((0, 0), (0, 3000 - mel.shape[-1])))[None], dtype=np.float32)
    expected = np.array(ct2.encode(ctranslate2.StorageView.from_array(x)).to_device(ctranslate2.Device.cpu))
    got = tower_frame_states(model.model.audio_tower, torch.from_numpy(x)).numpy()
    assert got.shape == expected.shape == (1, 1500, 512)
    assert np.abs(got - expected).max() < ENCODER_ATOL


def test_answers_a_label_through_the_transformers_engine(selm_dir, speech_clips):
    from ray_ser.branches.speech_llm.settings import SpeechLLMConfig
    from ray_ser.branches.speech_llm.engines import SpeechLLMPredictor

    branch = SpeechLLMPredictor.load(selm_dir, SpeechLLMConfig(engine="transformers", use_transcript=False))
    texts, probs = branch.answer_batch([(clip, None) for clip in speech_clips[:2]])
    assert all(t in EMOTIONS for t in texts) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert texts == [EMOTIONS[i] for i in probs.argmax(1)]
