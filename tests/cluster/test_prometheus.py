"""Dashboards checked against the real exporter: every series each Grafana panel queries is one
that Ray's Prometheus endpoint really serves after a labeling job, a training run and Serve
requests on a real cluster (the head of tests/cluster/conftest.py, metrics export on).

The head's exporter is scraped every second while the session runs, as Prometheus scrapes it: a
gauge (a branch's last epoch) is served only while the worker that set it lives."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ray_ser.testing.s3 import free_port
from tests.cluster.conftest import REPO, job_id, profile_overrides

DASHBOARD = REPO / "dashboards" / "ray_ser.json"
SELECTOR = re.compile(r"\b(ray_[a-zA-Z0-9_]+)\s*(\{[^}]*\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!=|!~|=)\s*"([^"]*)"')


def _post(url: str, body: bytes, content_type: str) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="session")
def serve_requests(head, branch_checkpoints, cache_dir, s3_endpoint, corpus_rows):
    """`ray-ser serve` as a job on the cluster, answering one good and one bad request."""
    port = free_port()
    submission = job_id("serve")
    head.submit(submission, ["python", "-m", "ray_ser.cli", "serve", "--config", "demo", "--set", "ray.address=auto",
                             "--set", f"serve.port={port}",
                             *profile_overrides(branch_checkpoints, cache_dir, s3_endpoint)])
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the Serve job was not ready (/readyz):\n{head.logs(submission)[-3000:]}")
            time.sleep(2)
        codes = (_post(f"{base}/v1/annotate", Path(corpus_rows[0]["path"]).read_bytes(), "audio/wav"),
                 _post(f"{base}/v1/annotate", b"not audio", "audio/wav"))
        yield codes
    finally:
        head.ray("job", "stop", "--address", head.dashboard, submission, check=False)


def panel_selectors(dashboard: dict) -> list[tuple[str, str, dict[str, tuple[str, str]]]]:
    """(panel title, series name, label matchers) of every query of every panel."""
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for name, matchers in SELECTOR.findall(target["expr"]):
                found.append((panel["title"], name, {k: (op, v) for k, op, v in MATCHER.findall(matchers or "")}))
    return found


def _matches(labels: dict[str, str], matchers: dict[str, tuple[str, str]]) -> bool:
    for key, (op, value) in matchers.items():
        actual = labels.get(key, "")
        if op == "=" and actual != value or op == "=~" and not re.fullmatch(value, actual):
            return False
        if op == "!=" and actual == value or op == "!~" and re.fullmatch(value, actual):
            return False
    return True


def test_every_series_a_panel_queries_is_exported(head, label_job, train_job, serve_requests):
    assert label_job["status"] == "SUCCEEDED" and train_job["status"] == "SUCCEEDED"
    assert serve_requests == (200, 400)
    selectors = panel_selectors(json.loads(DASHBOARD.read_text()))
    assert selectors
    deadline = time.monotonic() + 60  # the exporter publishes what workers report within seconds
    while True:
        head.scrape()
        samples = [(name, dict(labels)) for name, labels in head.scraped]
        missing = sorted({f"{title}: {name}{matchers or ''}" for title, name, matchers in selectors
                          if not any(n == name and _matches(labels, matchers) for n, labels in samples)})
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(3)
    names = sorted({n for n, _ in samples})
    assert not missing, "panels query series nobody exports:\n" + "\n".join(missing) + "\nexported:\n" + \
        "\n".join(names)
