"""The v1 API over real HTTP: Ray Serve on the local cluster, the real Whisper base and tiny real branches,
real espeak audio. Every input form, the probes, the docs, the CLI client, and the batch job's answer."""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
import sys
import uuid

import numpy as np
import pytest
import soundfile as sf

from ray_ser.labels import EMOTIONS
from tests.serve.conftest import TOKEN
from ray_ser.testing.http import call

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _multipart(fields: dict[str, tuple[str | None, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body as HTTP clients write it; fields: name -> (filename or None, bytes)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, (filename, value) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _annotate(url: str, body: bytes, content_type: str = "audio/wav"):
    reply = call(f"{url}/v1/annotate", body, content_type, token=TOKEN)
    assert reply.status == 200, reply.text
    return reply.json


def test_probes_docs_and_labels(endpoint):
    url, _ = endpoint
    assert call(f"{url}/healthz").json == {"status": "ok"}  # no token needed
    ready = call(f"{url}/readyz")
    assert ready.status == 200 and ready.json["ready"]
    assert set(ready.json["checkpoints"]) == {"asr", "speech", "text"}
    schema = call(f"{url}/openapi.json").json
    annotate = schema["paths"]["/v1/annotate"]["post"]
    assert {"audio/wav", "multipart/form-data", "application/json"} <= set(annotate["requestBody"]["content"])
    assert {"200", "401", "413", "415", "422"} <= set(annotate["responses"])
    assert {"/v1/labels", "/readyz"} <= set(schema["paths"])
    assert "swagger" in call(f"{url}/docs").text.lower()
    labels = call(f"{url}/v1/labels", token=TOKEN)
    assert labels.json == {"api_version": "v1", "labels": list(EMOTIONS), "branches": ["speech", "text"]}


def test_a_clip_gets_the_whole_answer(endpoint, corpus_rows):
    url, _ = endpoint
    body = _annotate(url, open(corpus_rows[0]["path"], "rb").read())
    assert body["label"] in EMOTIONS and 0 < body["agreement"] <= 1 and 0 < body["confidence"] <= 1
    assert body["transcript"] and body["language"] == "en"
    assert set(body["branches"]) == {"speech", "text"}
    for vote in body["branches"].values():
        assert set(vote["probs"]) == set(EMOTIONS) and sum(vote["probs"].values()) == pytest.approx(1, abs=1e-4)
        assert vote["label"] == max(vote["probs"], key=vote["probs"].get)
    assert body["checkpoints"]["asr"] == "faster-whisper:offline:whisper-base"
    assert body["checkpoints"]["speech"].startswith("sha256:") and body["checkpoints"]["text"].startswith("sha256:")
    assert body["checkpoints"]["speech"] != body["checkpoints"]["text"]
    assert body["duration_s"] == pytest.approx(sf.info(corpus_rows[0]["path"]).duration, abs=0.01)
    assert 0 < body["timing"]["asr_ms"] < body["timing"]["total_ms"] and body["warnings"] == []


def test_every_input_form_gives_the_same_answer(endpoint, corpus_rows):
    url, _ = endpoint
    wav = open(corpus_rows[1]["path"], "rb").read()
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    flac = io.BytesIO()
    sf.write(flac, samples, rate, format="FLAC")
    forms = {
        "raw wav": (wav, "audio/wav"),
        "octet-stream": (wav, "application/octet-stream"),
        "flac": (flac.getvalue(), "audio/flac"),
        "multipart": _multipart({"file": ("clip.wav", wav)}),
        "json": (json.dumps({"audio_base64": base64.b64encode(wav).decode()}).encode(), "application/json"),
    }
    answers = {name: _annotate(url, body, content_type) for name, (body, content_type) in forms.items()}
    first = answers.pop("raw wav")
    for name, answer in answers.items():
        assert answer["label"] == first["label"] and answer["transcript"] == first["transcript"], name
        for branch, vote in answer["branches"].items():
            assert vote["probs"] == pytest.approx(first["branches"][branch]["probs"], abs=1e-5), name


def test_a_given_transcript_skips_asr_in_json_and_multipart(endpoint, corpus_rows):
    url, _ = endpoint
    wav = open(corpus_rows[2]["path"], "rb").read()
    by_json = _annotate(url, json.dumps({"audio_base64": base64.b64encode(wav).decode(),
                                         "transcript": "I am so angry with you!", "speaker": "nobody"}).encode(),
                        "application/json")
    by_form = _annotate(url, *_multipart({"file": ("c.wav", wav), "transcript": (None, b"I am so angry with you!"),
                                          "speaker": (None, b"nobody")}))
    for body in (by_json, by_form):
        assert body["transcript"] == "I am so angry with you!" and body["language"] is None
        assert "asr" not in body["checkpoints"] and body["timing"]["asr_ms"] < 50
    assert by_json["branches"] == by_form["branches"]


@pytest.mark.slow
def test_the_answer_equals_what_the_labeling_job_writes(endpoint, corpus_rows, tmp_path):
    """Same clips, same checkpoints: the job's Parquet rows and the endpoint's answers agree."""
    from ray_ser.io.sink import read_output
    from ray_ser.pipeline import run_label_job

    url, cfg = endpoint
    rows = corpus_rows[3:6]
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utterance_id", "path"])
        writer.writerows([r["utterance_id"], r["path"]] for r in rows)
    run_label_job(cfg, str(manifest), str(tmp_path / "out"), run_id="serve-vs-job")
    written = {r["utterance_id"]: r for r in read_output(str(tmp_path / "out"), cfg.storage).to_pylist()}
    for row in rows:
        served, job = _annotate(url, open(row["path"], "rb").read()), written[row["utterance_id"]]
        assert served["transcript"] == job["transcript"] and served["label"] == job["label"]
        assert served["confidence"] == pytest.approx(job["confidence"], abs=1e-4)
        assert served["agreement"] == pytest.approx(job["agreement"], abs=1e-6)
        for branch in ("speech", "text"):
            assert served["branches"][branch]["label"] == job[f"{branch}_label"]
            probs = [served["branches"][branch]["probs"][e] for e in EMOTIONS]
            np.testing.assert_allclose(probs, job[f"{branch}_probs"], atol=1e-4)


def test_the_query_command_is_the_client(endpoint, corpus_rows):
    url, _ = endpoint
    command = [sys.executable, "-m", "ray_ser.cli", "query", corpus_rows[0]["path"], "--url", url]
    ok = subprocess.run([*command, "--token", TOKEN], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads(ok.stdout)["label"] in EMOTIONS
    refused = subprocess.run([*command, "--token", "wrong"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "bearer token" in json.loads(refused.stdout)["error"]
