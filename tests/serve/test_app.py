"""The endpoint over real HTTP: Ray Serve on the local cluster, real models, real espeak audio."""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request

import pytest

from ray_ser.labels import EMOTIONS

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint(branch_config):
    from ray import serve

    from ray_ser.serve.app import build_app

    port = _free_port()
    cfg = branch_config.model_copy(update={"serve": branch_config.serve.model_copy(
        update={"port": port, "max_clip_seconds": 20.0, "num_cpus": 0.5})})
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(cfg), name="ray_ser", route_prefix="/")
    yield f"http://127.0.0.1:{port}", cfg
    serve.shutdown()


def _call(url, body=None, content_type="audio/wav", method=None):
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_health_lists_the_branches(endpoint):
    url, _ = endpoint
    assert _call(f"{url}/health", method="GET") == (200, {"status": "ok", "branches": ["speech", "text"]})


def test_a_clip_gets_a_label_every_branch_vote_and_a_transcript(endpoint, corpus_rows):
    from ray_ser.core.annotator import Annotator
    from ray_ser.core.branch import Clip
    from ray_ser.serve.app import decode_clip

    url, cfg = endpoint
    audio = open(corpus_rows[0]["path"], "rb").read()
    status, body = _call(f"{url}/annotate", audio)
    assert status == 200, body
    assert body["label"] in EMOTIONS and set(body["branches"]) == {"speech", "text"}
    for vote in body["branches"].values():
        assert set(vote["probs"]) == set(EMOTIONS) and sum(vote["probs"].values()) == pytest.approx(1, abs=1e-4)
    assert body["transcript"] and 0 < body["agreement"] <= 1
    # The endpoint is the same code as a direct call on the same checkpoints.
    direct = Annotator.load(cfg).annotate([Clip(decode_clip(audio, 20.0)[0])])[0]
    assert direct.label == body["label"] and direct.transcript == body["transcript"]


def test_json_body_with_a_given_transcript_skips_asr(endpoint, corpus_rows):
    url, _ = endpoint
    payload = {"audio_base64": base64.b64encode(open(corpus_rows[1]["path"], "rb").read()).decode(),
               "transcript": "I am so angry with you!"}
    status, body = _call(f"{url}/annotate", json.dumps(payload).encode(), "application/json")
    assert status == 200 and body["transcript"] == "I am so angry with you!"


@pytest.mark.parametrize("body,content_type,status,reason", [
    (b"", "audio/wav", 400, "empty body"),
    (b"RIFF\x00\x00not really a wav file at all", "audio/wav", 400, "could not be decoded"),
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b'{"audio": "x"}', "application/json", 400, "audio_base64"),
    (b'{"audio_base64": "@@@"}', "application/json", 400, "base64"),
    (b'{"audio_base64": "", "speaker": 7}', "application/json", 400, '"speaker" must be a string'),
])
def test_bad_requests_get_4xx_with_a_json_reason(endpoint, body, content_type, status, reason):
    url, _ = endpoint
    code, payload = _call(f"{url}/annotate", body, content_type)
    assert code == status and reason in payload["error"]


def test_too_long_clip_wrong_method_and_unknown_route(endpoint, tmp_path):
    import numpy as np
    import soundfile as sf

    url, _ = endpoint
    sf.write(tmp_path / "long.wav", np.zeros(16_000 * 25, dtype=np.float32), 16_000)
    code, payload = _call(f"{url}/annotate", (tmp_path / "long.wav").read_bytes())
    assert code == 413 and "at most 20 s" in payload["error"]
    assert _call(f"{url}/annotate", method="GET")[0] == 405
    assert _call(f"{url}/nope", method="GET")[0] == 404
