"""A real Ray cluster started the way a user starts one (`ray start --head`), and jobs submitted to it
with the real `ray job` CLI.

The head listens on 127.0.0.1 only, on ports of its own, with its own temp dir, and with Ray's token
authentication on (RAY_AUTH_MODE=token and a token of its own, so a token in ~/.ray is never used
or touched). It runs in a process group of its own (`ray start --block`), so the teardown stops
exactly the processes this fixture started, never another cluster on the machine (`ray stop`
would stop them all).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ray_ser.testing.s3 import free_port

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
_PER_PROCESS = {"WorkerId", "SessionName", "Component", "NodeAddress", "Version", "otel_scope_name",
                "otel_scope_version"}


@dataclass
class Head:
    dashboard: str               # http://127.0.0.1:PORT: the Jobs API
    gcs: str                     # 127.0.0.1:PORT
    metrics_port: int            # Ray's Prometheus endpoint (the node's metrics agent)
    temp_dir: Path
    env: dict[str, str]          # what a user's shell holds to talk to it (the token among it)
    token: str
    jobs: dict[str, dict] = field(default_factory=dict)   # submission id -> {"status", "logs"}
    # Every ray_ser/ray_serve sample the exporter served while the session ran, scraped each second
    # as Prometheus would (a gauge leaves the exporter with the worker that set it).
    scraped: set[tuple[str, tuple[tuple[str, str], ...]]] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)

    def scrape(self) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=30) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.startswith(("ray_ser_", "ray_serve_")):
                    labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in _PER_PROCESS))
                    self.scraped.add((sample.name, labels))

    def _scrape_every_second(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.scrape()
            except Exception:  # the exporter may be starting or busy; the next scrape catches up
                pass

    def ray(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Run the `ray` CLI against this cluster, from the repository root (the job's working dir)."""
        return subprocess.run([RAY, *args], cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=check)

    def submit(self, submission_id: str, entrypoint: list[str]) -> None:
        """`ray job submit` with jobs/runtime_env.yaml, returning once the job is accepted."""
        done = self.ray("job", "submit", "--address", self.dashboard, "--submission-id", submission_id,
                        "--runtime-env", "jobs/runtime_env.yaml", "--no-wait", "--", *entrypoint, check=False)
        assert done.returncode == 0, f"ray job submit failed:\n{done.stdout}\n{done.stderr}"

    def wait(self, submission_id: str, timeout_s: float) -> str:
        """Poll the Jobs API until the job ends; its final status."""
        deadline = time.monotonic() + timeout_s
        while True:
            code, body = self.http(f"/api/jobs/{submission_id}", self.token)
            status = json.loads(body).get("status") if code == 200 else None
            if status in TERMINAL:
                return status
            if time.monotonic() > deadline:
                return f"TIMEOUT after {timeout_s:.0f} s (status {status})"
            time.sleep(2)

    def logs(self, submission_id: str) -> str:
        return self.ray("job", "logs", "--address", self.dashboard, submission_id).stdout

    def run_job(self, submission_id: str, entrypoint: list[str], timeout_s: float = 480) -> dict:
        """Submit, wait, keep the logs: what a user sees of the job."""
        self.submit(submission_id, entrypoint)
        status = self.wait(submission_id, timeout_s)
        self.jobs[submission_id] = {"status": status, "logs": self.logs(submission_id)}
        return self.jobs[submission_id]

    def http(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.dashboard + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


def _wait_ready(head: Head, proc: subprocess.Popen, log: Path, timeout_s: float = 300) -> None:
    # A quiet 2-core machine answers in ~15 s; under other work the dashboard alone has taken over 120 s.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            status, body = head.http("/api/jobs/", head.token)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"the head did not answer within {timeout_s} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def head(s3_endpoint) -> Head:
    """`ray start --head` on 127.0.0.1 with token auth and metrics export; stopped at the end."""
    temp = Path(tempfile.mkdtemp(prefix="rsh", dir="/tmp"))  # Ray's socket paths must stay short
    token = uuid.uuid4().hex + uuid.uuid4().hex
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
           # As in an activated environment: the job's `python` is the one Ray runs under.
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           # Metrics reach the exporter within a second, so short jobs' series are there to scrape.
           "RAY_metrics_report_interval_ms": "1000", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    ports = {name: free_port() for name in ("gcs", "dashboard", "client", "agent", "agent_grpc", "metrics",
                                            "runtime_env", "node_manager", "object_manager")}
    command = [RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
               "--port", str(ports["gcs"]), "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
               "--dashboard-port", str(ports["dashboard"]), "--ray-client-server-port", str(ports["client"]),
               "--dashboard-agent-listen-port", str(ports["agent"]),
               "--dashboard-agent-grpc-port", str(ports["agent_grpc"]),
               "--metrics-export-port", str(ports["metrics"]), "--runtime-env-agent-port", str(ports["runtime_env"]),
               "--node-manager-port", str(ports["node_manager"]),
               "--object-manager-port", str(ports["object_manager"]),
               "--num-cpus", "4", "--temp-dir", str(temp), "--disable-usage-stats"]
    log = temp / "ray-start.log"
    handle = log.open("w")
    proc = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    head = Head(dashboard=f"http://127.0.0.1:{ports['dashboard']}", gcs=f"127.0.0.1:{ports['gcs']}",
                metrics_port=ports["metrics"], temp_dir=temp, env=env, token=token)
    try:
        _wait_ready(head, proc, log)
        scraper = threading.Thread(target=head._scrape_every_second, name="scrape-metrics", daemon=True)
        scraper.start()
        yield head
    finally:
        head._stop.set()
        # SIGTERM to `ray start --block` stops the Ray processes it started; then whatever of the
        # group is left (workers), by the group this fixture created.
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        handle.close()
        shutil.rmtree(temp, ignore_errors=True)


def job_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


BUCKET = "cluster-jobs"


def tiny_branches(branch_checkpoints) -> dict:
    return {
        "speech": {"family": "speech_encoder", "checkpoint": branch_checkpoints["speech"],
                   "resources": {"num_cpus": 0.5, "batch_size": 8}},
        "text": {"family": "text_classifier", "checkpoint": branch_checkpoints["text"], "weight": 0.5,
                 "resources": {"num_cpus": 0.5, "batch_size": 8}},
    }


def profile_overrides(branch_checkpoints, cache_dir, s3_endpoint) -> list[str]:
    """`--set` arguments shared by the labeling job and the Serve endpoint: tiny real branches."""
    sets = [f"cache_dir={cache_dir}", f"storage.s3_endpoint_url={s3_endpoint}",
            f"branches={json.dumps(tiny_branches(branch_checkpoints))}", "vote.priority=[speech, text]"]
    return [arg for value in sets for arg in ("--set", value)]


def with_a_bad_file(corpus_rows, directory: Path) -> Path:
    """The corpus's manifest plus one file that is not audio: it must come out as one error row."""
    bad = directory / "not-audio.wav"
    bad.write_bytes(b"this is not a wav file")
    manifest = directory / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["utterance_id", "path"])
        writer.writeheader()
        writer.writerows([{"utterance_id": r["utterance_id"], "path": r["path"]} for r in corpus_rows])
        writer.writerow({"utterance_id": "not-audio", "path": str(bad)})
    return manifest


@pytest.fixture(scope="session")
def label_job(head, corpus_rows, branch_checkpoints, cache_dir, s3_endpoint, tmp_path_factory):
    """The labeling job, submitted once per session (the metrics scrape reads what it exported)."""
    from ray_ser.config import StorageConfig
    from ray_ser.io.storage import filesystem_for

    fs, _ = filesystem_for(f"s3://{BUCKET}", StorageConfig(s3_endpoint_url=s3_endpoint))
    fs.create_dir(BUCKET)
    output = f"s3://{BUCKET}/labels/{job_id('run')}"
    submission = job_id("label")
    manifest = with_a_bad_file(corpus_rows, tmp_path_factory.mktemp("cluster-input"))
    job = head.run_job(submission, ["python", "jobs/label.py", "--config", "demo", "--input", str(manifest),
                                    "--output", output, "--set", "sink.rows_per_file=5",
                                    *profile_overrides(branch_checkpoints, cache_dir, s3_endpoint)])
    return {**job, "output": output, "id": submission}


@pytest.fixture(scope="session")
def train_job(head, corpus, cache_dir, tmp_path_factory):
    """Training one small branch (prosody, two epochs), submitted once per session."""
    out = tmp_path_factory.mktemp("cluster-checkpoints")
    submission = job_id("train")
    job = head.run_job(submission, ["python", "jobs/train.py", "--config", "demo", "--branch", "prosody",
                                    "--manifest", str(corpus), "--out", str(out),
                                    "--set", f"cache_dir={cache_dir}",
                                    "--set", "branches.prosody.train.epochs=2"])
    return {**job, "out": out, "id": submission}
