"""SELM training with the frozen tower cached per clip: the same tokens, logits and saved model as the
full Qwen2-Audio path, at a fraction of the cost (real Whisper-base tower, small random LM)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ray_ser.branches.speech_llm.cached_tower import (CachedTowerSELM, audio_token_count, expand_audio_placeholders,
                                                   tower_audio_tokens)
from ray_ser.branches.speech_llm.model import SpeechLLMEmotionModel
from ray_ser.branches.speech_llm.settings import SpeechLLMTrain


@pytest.fixture()
def selm(small_selm):
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    path, _, _ = small_selm
    model = Qwen2AudioForConditionalGeneration.from_pretrained(str(path), dtype=torch.float32)
    torch.manual_seed(0)
    return CachedTowerSELM(model, AutoProcessor.from_pretrained(str(path)),
                           SpeechLLMTrain(base_model=str(path), finetune="lora", lora_rank=4, transcript_dropout=0.0))


_TEXTS = ["I can't believe you did that to me.", "The meeting moved to Thursday afternoon.",
          "Kids are talking by the door.", "Dogs are sitting by the door."]


def _items(speech_clips, speech_only=(1,)):
    """(audio, transcript) pairs; the rows in speech_only go without a transcript."""
    return [(c, None if i in speech_only else t) for i, (c, t) in enumerate(zip(speech_clips, _TEXTS))]


# The same tokens up to float32 rounding: the masked padding adds exact zeros, but a longer window can
# change the order in which the CPU's matmul kernels sum (bit for bit on some CPUs, ~1e-5 relative on
# others). Padding that leaked into the tokens would move them by whole units.
_ROUNDING = dict(rtol=1e-4, atol=1e-3)


def test_a_short_window_gives_the_tokens_of_the_30s_window(selm, speech_clips):
    """Inside Qwen2-Audio the tower masks padding frames, so the window does not matter."""
    tower, features = selm._qwen.model.audio_tower, selm.processor.feature_extractor
    short = tower_audio_tokens(tower, features, speech_clips)
    full = tower_audio_tokens(tower, features, speech_clips, window_frames=3000)
    for s, f, clip in zip(short, full, speech_clips):
        assert s.shape == (audio_token_count(len(clip)), 512)
        torch.testing.assert_close(s, f, **_ROUNDING)
    # ... and the 30 s window here is the one Qwen2-Audio's own forward runs (read at its projector).
    seen = []
    hook = selm._qwen.model.multi_modal_projector.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad():
        SpeechLLMEmotionModel.forward(selm, **SpeechLLMEmotionModel.prepare(selm, _items(speech_clips)))
    hook.remove()
    for i, s in enumerate(short[:4]):
        torch.testing.assert_close(seen[0][i, :s.shape[0]], s, **_ROUNDING)


def test_cached_prompts_and_logits_match_the_full_model(selm, speech_clips):
    items = _items(speech_clips)
    full = SpeechLLMEmotionModel.prepare(selm, items, answers=[0, 3, 5, 7])
    cached = selm.prepare(items, answers=[0, 3, 5, 7])
    assert torch.equal(cached["input_ids"], full["input_ids"])
    assert torch.equal(cached["attention_mask"], full["attention_mask"])
    selm.eval()
    with torch.no_grad():
        assert torch.allclose(selm(**cached), SpeechLLMEmotionModel.forward(selm, **full), atol=1e-4)
        assert torch.allclose(selm(**selm.prepare(items)),
                              SpeechLLMEmotionModel.forward(selm, **SpeechLLMEmotionModel.prepare(selm, items)),
                              atol=1e-4)
    assert selm.cached_clips == len(items)


def test_training_steps_reuse_the_cache_and_save_a_servable_model(selm, speech_clips, tmp_path):
    from ray_ser.branches.speech_llm.settings import SpeechLLMConfig
    from ray_ser.branches.speech_llm.engines import SpeechLLMPredictor

    trainable = {n for n, p in selm.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "multi_modal_projector" in n for n in trainable)
    items = _items(speech_clips, speech_only=())  # the engine's prompt carries a transcript (use_transcript)
    labels = [1, 3, 2, 3][:len(items)]
    optimizer = torch.optim.AdamW([p for p in selm.parameters() if p.requires_grad], lr=5e-3)
    first = None
    for _ in range(4):
        loss = -selm(**selm.prepare(items, answers=labels)).mean()
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first and selm.cached_clips == len(items)  # the tower ran once per clip
    selm.eval()
    with torch.no_grad():
        expected = torch.softmax(selm(**selm.prepare(items)), -1).numpy()
    selm.save(tmp_path / "branch")
    reloaded = SpeechLLMPredictor.load(tmp_path / "branch", SpeechLLMConfig(engine="transformers"))
    assert np.allclose(reloaded.predict_batch(items), expected, atol=1e-4)


def test_placeholders_expand_like_the_processor():
    text = "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\nx Audio 2: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    assert expand_audio_placeholders(text, [2, 3]).count("<|AUDIO|>") == 5
    with pytest.raises(ValueError, match="2 audio placeholders"):
        expand_audio_placeholders(text, [1])
    assert audio_token_count(16_000 * 3) == 75 and audio_token_count(16_000 * 40) == 750


def test_a_tower_that_trains_cannot_be_cached(small_selm):
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    path, _, _ = small_selm
    with pytest.raises(ValueError, match="frozen"):
        CachedTowerSELM(Qwen2AudioForConditionalGeneration.from_pretrained(str(path)),
                        AutoProcessor.from_pretrained(str(path)), SpeechLLMTrain(base_model=str(path), finetune="lora_audio"))
