"""ray.serve.llm: the speech LLM as an OpenAI API over real HTTP, used by the service's endpoint."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from ray_ser.labels import EMOTIONS
from tests.serve.test_app import _call, _free_port

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.vllm, pytest.mark.slow]


@pytest.fixture(scope="module")
def llm_server(branch_config, speech_llm_dir):
    from ray import serve

    from ray_ser.config import LabelConfig
    from ray_ser.serve.llm_app import build_llm_app

    port = _free_port()
    tree = branch_config.model_dump()
    tree["serve"].update(port=port, num_cpus=0.5)
    tree["branches"]["selm"] = {"family": "speech_llm", "checkpoint": str(speech_llm_dir),
                                "llm": {"dtype": "float32", "max_model_len": 1024, "max_num_seqs": 8}}
    tree["vote"] = {"priority": ["speech", "text", "selm"]}
    cfg = LabelConfig.model_validate(tree)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_llm_app(cfg, "selm"), name="llm_selm", route_prefix="/llm")
    yield f"http://127.0.0.1:{port}", cfg
    serve.shutdown()


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


def test_the_annotate_endpoint_votes_with_the_served_llm(llm_server, corpus_rows):
    from ray import serve

    from ray_ser.serve.app import build_app

    url, cfg = llm_server
    tree = cfg.model_dump()
    tree["branches"]["selm"]["llm"].update(engine="openai", openai_url=f"{url}/llm", served_model="selm")
    cfg = type(cfg).model_validate(tree)
    serve.run(build_app(cfg), name="ray_ser", route_prefix="/")
    status, body = _call(f"{url}/annotate", open(corpus_rows[0]["path"], "rb").read())
    assert status == 200, body
    assert set(body["branches"]) == {"speech", "text", "selm"} and body["branches"]["selm"]["label"] in EMOTIONS
