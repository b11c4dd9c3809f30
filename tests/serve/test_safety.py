"""The endpoint against clients that are wrong or hostile, over real HTTP: tokens, limits while the body
streams, the 100 Hz WAV, every malformed body, and a burst during which the liveness probe still answers."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.serve.conftest import TOKEN
from ray_ser.testing.http import call, post_declared_length, post_endless_chunked
from tests.serve.test_api import _multipart

pytestmark = pytest.mark.usefixtures("ray_cluster")

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _assert_clean_error(reply, status: int, reason: str = "") -> None:
    """A refusal is exactly {"error": reason}: no trace, no internal path."""
    assert reply.status == status, (reply.status, reply.text)
    assert reply.headers["content-type"].startswith("application/json")
    assert list(reply.json) == ["error"] and reason in reply.json["error"], reply.json
    for leak in ("Traceback", "File \"", "/tmp/", "site-packages", "ray_ser/", ".py"):
        assert leak not in reply.text, reply.text


def _wav(rate: int, seconds: float) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((np.random.default_rng(0).standard_normal(int(rate * seconds)) * 3000).astype("<i2")
                           .tobytes())
    return buffer.getvalue()


def test_a_token_is_needed_and_checked_before_the_body(endpoint, corpus_rows):
    url, _ = endpoint
    clip = open(corpus_rows[0]["path"], "rb").read()
    missing = call(f"{url}/v1/annotate", clip)
    _assert_clean_error(missing, 401, "Authorization: Bearer")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    _assert_clean_error(call(f"{url}/v1/annotate", clip, token="not-the-token"), 401, "not valid")
    _assert_clean_error(call(f"{url}/v1/labels", token="not-the-token"), 401)
    assert TOKEN not in call(f"{url}/v1/annotate", clip, token="not-the-token").text
    # Headers promising 10 GB, and no body at all: the refusal cannot have waited for it.
    started = time.monotonic()
    _assert_clean_error(post_declared_length(f"{url}/v1/annotate", {"Content-Type": "audio/wav"}, 10**10), 401)
    assert time.monotonic() - started < 10
    # The probes and the docs need none.
    assert call(f"{url}/healthz").status == 200 and call(f"{url}/readyz").status == 200
    assert call(f"{url}/openapi.json").status == 200


def test_a_body_over_the_limit_is_refused_while_it_streams(endpoint):
    url, cfg = endpoint
    limit = int(cfg.serve.max_body_mb * 1024 * 1024)
    _assert_clean_error(post_declared_length(f"{url}/v1/annotate", {**AUTH, "Content-Type": "audio/wav"}, 10**10),
                        413, "limit")
    total = 512 * 1024 * 1024
    reply, sent = post_endless_chunked(f"{url}/v1/annotate", {**AUTH, "Content-Type": "audio/wav"}, total=total)
    _assert_clean_error(reply, 413, f"over the limit of {limit} bytes")
    assert sent < total / 4, f"the client had sent {sent} bytes before the answer"


def test_bodies_in_flight_share_one_budget_per_replica(endpoint, corpus_rows):
    """Two uploads that declare 1 MB and stall hold 2 MB of the 2.5 MiB: a third large one is refused at once
    (503, retry), a small one still passes, and the budget comes back when the stalled clients go."""
    import socket
    from urllib.parse import urlsplit

    url, _ = endpoint
    parts = urlsplit(url)
    stalled = []
    try:
        for _ in range(2):
            sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
            sock.sendall((f"POST /v1/annotate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                          "Content-Type: audio/wav\r\nContent-Length: 1000000\r\n\r\n").encode() + b"\x00" * 1000)
            stalled.append(sock)
        time.sleep(2)
        _assert_clean_error(call(f"{url}/v1/annotate", b"\x00" * 900_000, token=TOKEN), 503, "retry later")
        assert call(f"{url}/v1/annotate", open(corpus_rows[0]["path"], "rb").read(), token=TOKEN).status == 200
    finally:
        for sock in stalled:
            sock.close()
    deadline = time.monotonic() + 30
    while call(f"{url}/v1/annotate", b"\x00" * 900_000, token=TOKEN).status == 503:
        assert time.monotonic() < deadline, "the stalled uploads' budget was never given back"
        time.sleep(1)


def test_a_wav_declaring_100_hz_is_refused_from_its_header(endpoint):
    url, _ = endpoint
    data = _wav(100, 2000)  # 400 KB declaring 2,000 s
    started = time.monotonic()
    _assert_clean_error(call(f"{url}/v1/annotate", data, token=TOKEN), 413, "2000.0 s")
    assert time.monotonic() - started < 10
    _assert_clean_error(call(f"{url}/v1/annotate", _wav(100, 3), token=TOKEN), 422, "100 Hz")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def clip_b64(corpus_rows) -> str:
    return _b64(open(corpus_rows[0]["path"], "rb").read())


MISTAKES = [
    # (body, content type, status, reason); a callable body gets the clip's base64
    (b"", "audio/wav", 400, "empty body"),
    (b"RIFF\x00\x00not really a wav file at all", "audio/wav", 422, "could not be decoded"),
    (b"hello", "text/plain", 415, "unsupported Content-Type 'text/plain'"),
    (b"file=clip.wav", "application/x-www-form-urlencoded", 415, "multipart/form-data"),
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b"[" * 200_000, "application/json", 400, "not valid JSON"),
    (b'{"audio_base64": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001, "application/json", 400, "not valid JSON"),
    (b"[1, 2]", "application/json", 400, "must be an object"),
    (b'"just a string"', "application/json", 400, "must be an object"),
    (b'{"transcript": "x"}', "application/json", 400, '"audio_base64"'),
    (b'{"audio_base64": 5}', "application/json", 400, '"audio_base64": Input should be a valid string'),
    (b'{"audio_base64": ["x"]}', "application/json", 400, '"audio_base64"'),
    (b'{"audio_base64": "@@@"}', "application/json", 400, "not valid base64"),
    (lambda b64: {"audio_base64": b64, "audio": 1}, "application/json", 400, 'unknown field "audio"'),
    (lambda b64: {"audio_base64": b64, "speaker": 7}, "application/json", 400, '"speaker"'),
    (lambda b64: {"audio_base64": b64, "transcript": {"nested": True}}, "application/json", 400, '"transcript"'),
    (lambda b64: {"audio_base64": b64, "transcript": "x" * 201}, "application/json", 400,
     '"transcript" is 201 characters; the limit is 200'),
    (lambda b64: {"audio_base64": b64, "speaker": "s" * 500}, "application/json", 400, '"speaker" is 500'),
    (lambda b64: {"audio_base64": _b64(_wav(16_000, 0.05))}, "application/json", 422, "at least 100 ms"),
    (lambda b64: {"audio_base64": _b64(_wav(16_000, 21))}, "application/json", 413, "at most 20 s"),
    (lambda b64: (_wav(16_000, 25), "audio/wav"), None, 413, "25.0 s; this endpoint takes at most 20 s"),
    (lambda b64: _multipart({"transcript": (None, b"hi")}), None, 400, "a file part named `file`"),
    (lambda b64: _multipart({"file": ("a.wav", base64.b64decode(b64)), "transcript": (None, b"x" * 1000)}), None,
     400, "multipart body"),
    (lambda b64: _multipart({"file": ("a.wav", base64.b64decode(b64)), "other": (None, b"x")}), None, 400,
     "unknown form field"),
    (b"--x\r\nnot a multipart body", "multipart/form-data; boundary=x", 400, "multipart body"),
]


@pytest.mark.parametrize("body,content_type,status,reason", MISTAKES,
                         ids=[f"{m[2]}-{i}" for i, m in enumerate(MISTAKES)])
def test_every_client_mistake_is_a_4xx_with_a_json_reason(endpoint, clip_b64, body, content_type, status, reason):
    url, _ = endpoint
    if callable(body):
        built = body(clip_b64)
        body, content_type = (json.dumps(built).encode(), content_type) if isinstance(built, dict) else built
    _assert_clean_error(call(f"{url}/v1/annotate", body, content_type, token=TOKEN), status, reason)


def test_unknown_routes_and_methods(endpoint):
    url, _ = endpoint
    _assert_clean_error(call(f"{url}/v1/annotate", token=TOKEN, method="GET"), 405, "GET is not allowed")
    _assert_clean_error(call(f"{url}/annotate", b"x", token=TOKEN), 404, "no route /annotate")
    _assert_clean_error(call(f"{url}/healthz", b"x", method="POST"), 405)


def test_a_burst_gets_no_5xx_and_the_probe_answers_throughout(endpoint, corpus_rows):
    """64 requests, 8 in flight, within a fixed time; /healthz polled all the while."""
    url, _ = endpoint
    clips = [open(r["path"], "rb").read() for r in corpus_rows[:8]]
    probe_times: list[float] = []
    probe_codes: list[int] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            started = time.monotonic()
            probe_codes.append(call(f"{url}/healthz", timeout=10).status)
            probe_times.append(time.monotonic() - started)
            time.sleep(0.2)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda i: call(f"{url}/v1/annotate", clips[i % 8], token=TOKEN).status, range(64)))
    finally:
        done.set()
        prober.join(15)
    elapsed = time.monotonic() - started
    assert codes == [200] * 64, codes
    assert elapsed < 300, f"64 requests took {elapsed:.0f} s"
    assert len(probe_codes) >= 5 and set(probe_codes) == {200}
    assert max(probe_times) < 5, f"the probe took up to {max(probe_times):.1f} s under load"
