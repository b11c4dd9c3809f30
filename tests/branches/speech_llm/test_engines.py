"""The speech-LLM branch on a tiny random Qwen2-Audio: prompts, transformers, and fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ray_ser.branches.speech_llm.settings import SpeechLLMConfig
from ray_ser.labels import EMOTIONS
from ray_ser.branches.speech_llm.engines import PromptBuilder, Shot, SpeechLLMPredictor, label_first_tokens
from ray_ser.branches.speech_llm.model import SpeechLLMEmotionModel
from ray_ser.branches.speech_llm.settings import SpeechLLMTrain


@pytest.fixture(scope="module")
def transformers_branch(speech_llm_dir):
    return SpeechLLMPredictor.load(speech_llm_dir, SpeechLLMConfig(engine="transformers"))


def test_prompt_carries_the_transcript_only_for_the_speech_text_branch(corpus_clips):
    audio, text = corpus_clips[0]
    with_text, speech_only = PromptBuilder(True).messages(text), PromptBuilder(False).messages(text)
    assert text in with_text[-1]["content"][1]["text"]
    assert text not in str(speech_only) and speech_only[-1]["content"][0] == {"type": "audio"}
    shots = [Shot(audio, "first words", "happy"), Shot(audio, None, "sad")]
    few = PromptBuilder(True, shots)
    roles = [m["role"] for m in few.messages(text)]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [m["content"] for m in few.messages(text) if m["role"] == "assistant"] == ["happy", "sad"]
    assert len(few.audios(audio)) == 3


def test_label_words_must_start_with_distinct_tokens(transformers_branch):
    tokenizer = transformers_branch.engine.processor.tokenizer
    assert len(set(label_first_tokens(tokenizer))) == len(EMOTIONS)
    with pytest.raises(ValueError, match="distinct tokens"):
        label_first_tokens(tokenizer, ["sad", "sadness"])


def test_transformers_generate_answers_a_label_and_a_distribution(transformers_branch, corpus_clips):
    items = corpus_clips[:3] + [(corpus_clips[3][0], None)]
    texts, probs = transformers_branch.answer_batch(items)
    assert all(t in EMOTIONS for t in texts) and probs.shape == (4, 8)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    # Constrained greedy decoding follows the first token, so the word is the distribution's argmax.
    assert texts == [EMOTIONS[i] for i in probs.argmax(axis=1)]
    alone = np.stack([transformers_branch.predict_batch([item])[0] for item in items])
    assert np.allclose(alone, probs, atol=1e-5)  # left padding in a batch changes nothing


def test_lora_trains_adapters_and_projector_and_saves_merged_for_vllm(speech_llm_dir, corpus_clips, corpus_rows,
                                                                       tmp_path):
    from safetensors import safe_open

    from ray_ser.labels import index_of

    torch.manual_seed(0)
    model = SpeechLLMEmotionModel.from_settings(SpeechLLMTrain(base_model=str(speech_llm_dir), finetune="lora", lora_rank=4, transcript_dropout=0.0))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "multi_modal_projector" in n for n in trainable)
    items, labels = corpus_clips[:4], [index_of(r["emotion"]) for r in corpus_rows[:4]]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    batch = model.prepare(items, answers=labels)
    first = -model(**batch).mean().item()
    for _ in range(5):
        loss = -model(**model.prepare(items, answers=labels)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first  # SELM's next-token loss on the label word goes down
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(**model.prepare(items)), -1).numpy()
    model.save(tmp_path / "branch")
    with safe_open(str(tmp_path / "branch" / "model" / "model.safetensors"), "pt") as f:
        names = list(f.keys())
    assert not any("lora_" in n or "base_layer" in n or n.startswith("model.") for n in names)
    reloaded = SpeechLLMPredictor.load(tmp_path / "branch", SpeechLLMConfig(engine="transformers"))
    assert np.allclose(reloaded.predict_batch(items), expected, atol=1e-4)


def test_finetune_modes_choose_what_trains(speech_llm_dir):
    audio = SpeechLLMEmotionModel.from_settings(SpeechLLMTrain(base_model=str(speech_llm_dir), finetune="lora_audio"))
    assert any("audio_tower" in n for n, p in audio.named_parameters() if p.requires_grad)
    full = SpeechLLMEmotionModel.from_settings(SpeechLLMTrain(base_model=str(speech_llm_dir), finetune="full"))
    assert all(p.requires_grad for p in full.parameters())
    with pytest.raises(ValueError, match="finetune"):
        SpeechLLMEmotionModel.from_settings(SpeechLLMTrain(base_model=str(speech_llm_dir), finetune="prefix"))
