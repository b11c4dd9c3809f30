"""ray.serve.llm: the speech LLM as an OpenAI API over real HTTP, used by the service's endpoint."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from ray_ser.labels import EMOTIONS
from ray_ser.testing.http import call

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def llm_server(serve_url, branch_config, speech_llm_dir, endpoint_config):
    from ray import serve

    from ray_ser.config import LabelConfig
    from ray_ser.serve.app import APP_NAME, PROBE_APP_NAME, deploy
    from ray_ser.serve.llm_app import build_llm_app

    # The LLM server (2 CPUs) and its OpenAI ingress (1) fill the 4-CPU test cluster with the annotate app
    # below: the other modules' annotate app steps aside meanwhile, and comes back after.
    running = set(serve.status().applications)
    for name in (APP_NAME, PROBE_APP_NAME):
        if name in running:
            serve.delete(name)

    tree = branch_config.model_dump()
    tree["serve"].update(llm_allowed_media_domains=["127.0.0.1", "media.invalid"])
    tree["branches"]["selm"] = {"family": "speech_llm", "checkpoint": str(speech_llm_dir),
                                "llm": {"dtype": "float32", "max_model_len": 1024, "max_num_seqs": 8}}
    tree["vote"] = {"priority": ["speech", "text", "selm"]}
    tree["serve"].update(ingress={"num_cpus": 0.1}, asr={"num_cpus": 0.3})
    for branch in tree["branches"].values():
        branch["serve"] = {"num_cpus": 0.1}
    cfg = LabelConfig.model_validate(tree)
    serve.run(build_llm_app(cfg, "selm"), name="llm_selm", route_prefix="/llm")
    yield serve_url, cfg
    serve.delete("llm_selm")
    if APP_NAME in running:
        deploy(endpoint_config)


def test_openai_api_answers_a_label_with_the_same_distribution_as_transformers(llm_server, speech_llm_dir,
                                                                               corpus_clips):
    from ray_ser.branches.speech_llm.settings import SpeechLLMConfig
    from ray_ser.branches.speech_llm.engines import SpeechLLMPredictor

    url, _ = llm_server
    with urllib.request.urlopen(f"{url}/llm/v1/models", timeout=30) as response:
        assert [m["id"] for m in json.loads(response.read())["data"]] == ["selm"]
    remote = SpeechLLMPredictor.load(speech_llm_dir, SpeechLLMConfig(
        engine="openai", openai_url=f"{url}/llm", served_model="selm"))
    texts, probs = remote.answer_batch(corpus_clips[:3])
    assert all(t in EMOTIONS for t in texts) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    local = SpeechLLMPredictor.load(speech_llm_dir, SpeechLLMConfig(engine="transformers"))
    assert (local.predict_batch(corpus_clips[:3]).argmax(axis=1) == probs.argmax(axis=1)).all()


@pytest.mark.parametrize("audio_url", ["file:///etc/passwd", "http://127.0.0.1:8265/api/jobs/",
                                       "http://169.254.169.254/latest/meta-data/", "https://elsewhere.invalid/a.wav"])
def test_the_server_fetches_no_file_private_or_unlisted_url(llm_server, audio_url):
    url, _ = llm_server
    request = {"model": "selm", "max_tokens": 2, "messages": [{"role": "user", "content": [
        {"type": "audio_url", "audio_url": {"url": audio_url}}, {"type": "text", "text": "Emotion?"}]}]}
    reply = call(f"{url}/llm/v1/chat/completions", json.dumps(request).encode(), "application/json")
    assert reply.status == 400, reply.text
    assert "media URLs" in reply.text or "private" in reply.text
    assert "Traceback" not in reply.text and "root:" not in reply.text


def test_the_annotate_endpoint_votes_with_the_served_llm(llm_server, corpus_rows):
    from ray import serve

    from ray_ser.serve.app import build_app

    url, cfg = llm_server
    tree = cfg.model_dump()
    tree["branches"]["selm"]["llm"].update(engine="openai", openai_url=f"{url}/llm", served_model="selm")
    cfg = type(cfg).model_validate(tree)
    serve.run(build_app(cfg), name="ray_ser_with_llm", route_prefix="/with-llm")
    try:
        reply = call(f"{url}/with-llm/v1/annotate", open(corpus_rows[0]["path"], "rb").read())
        assert reply.status == 200, reply.text
        body = reply.json
        assert set(body["branches"]) == {"speech", "text", "selm"} and body["branches"]["selm"]["label"] in EMOTIONS
    finally:
        serve.delete("ray_ser_with_llm")
