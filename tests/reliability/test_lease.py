"""One writer per output: the lease on local disk and on real moto S3, and two runs of the CLI at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ray_ser.config import StorageConfig
from ray_ser.io.lease import LEASE_NAME, LeaseInfo, LeaseLostError, OutputBusyError, OutputLease, read_lease


@pytest.fixture(params=["local", "s3"])
def output(request, tmp_path, s3_endpoint):
    """(output URI, storage) on local disk or on the session's moto S3."""
    if request.param == "local":
        return str(tmp_path / "out"), StorageConfig()
    import boto3

    bucket = f"lease-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/out", StorageConfig(s3_endpoint_url=s3_endpoint)


def test_a_second_writer_fails_fast_naming_the_first(output):
    uri, storage = output
    with OutputLease(uri, storage, "run-A", ttl_s=60):
        started = time.monotonic()
        with pytest.raises(OutputBusyError, match=r"being written by run run-A \(pid \d+ on .*heartbeat"):
            OutputLease(uri, storage, "run-B", ttl_s=60).acquire()
        assert time.monotonic() - started < 5
        assert read_lease(uri, storage).run_id == "run-A"
    assert read_lease(uri, storage) is None  # released on exit
    with OutputLease(uri, storage, "run-B", ttl_s=60):
        assert read_lease(uri, storage).run_id == "run-B"


def _plant(uri: str, storage: StorageConfig, **fields) -> None:
    """A lease as a killed run left it."""
    now = time.time()
    info = {"run_id": "killed", "host": "elsewhere", "pid": 1, "nonce": "x", "started_at": now - 600,
            "renewed_at": now, "ttl_s": 30.0, **fields}
    lease = OutputLease(uri, storage, "planter", ttl_s=30)
    lease.acquire()
    lease._store.replace(json.dumps(info).encode(), lease._token)


def test_a_stale_lease_expires_and_a_dead_holder_on_this_host_frees_it_at_once(output):
    import socket

    uri, storage = output
    _plant(uri, storage, renewed_at=time.time() - 31)  # heartbeat older than its TTL
    with OutputLease(uri, storage, "successor", ttl_s=30) as lease:
        assert lease.took_over.run_id == "killed"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _plant(uri, storage, host=socket.gethostname(), pid=int(dead.stdout))  # fresh heartbeat, process gone
    with OutputLease(uri, storage, "successor", ttl_s=30) as lease:
        assert lease.took_over.pid == int(dead.stdout)
    _plant(uri, storage)  # fresh heartbeat on another host: live
    with pytest.raises(OutputBusyError, match="run killed"):
        OutputLease(uri, storage, "successor", ttl_s=30).acquire()


def test_a_run_whose_lease_was_taken_over_knows_it(output):
    uri, storage = output
    first = OutputLease(uri, storage, "slow", ttl_s=5)
    first.acquire()
    current = first._store.read()
    info = LeaseInfo.from_json(current[0])
    expired = json.dumps({**info.__dict__, "renewed_at": time.time() - 60}).encode()
    first._store.replace(expired, current[1])  # as if its heartbeat had stopped for a minute
    first._token = first._store.read()[1]
    with OutputLease(uri, storage, "successor", ttl_s=5):
        first.renew()
        with pytest.raises(LeaseLostError, match="this run \\(slow\\) lost its lease to run successor"):
            first.check()


def test_the_lease_file_is_invisible_to_readers(tmp_path):
    from ray_ser.io.sink import list_parts

    import pyarrow.fs as pafs

    with OutputLease(str(tmp_path / "out"), StorageConfig(), "r", ttl_s=60):
        assert (tmp_path / "out" / LEASE_NAME).exists()
        assert list_parts(pafs.LocalFileSystem(), str(tmp_path / "out")) == []


@pytest.mark.slow
def test_two_concurrent_runs_the_second_fails_fast_the_first_finishes_exactly_once(tmp_path, corpus_rows, cache_dir):
    from ray_ser.io.sink import read_output
    from tests.reliability.conftest import copy_corpus, write_manifest

    rows = copy_corpus(corpus_rows, tmp_path / "clips")
    manifest = write_manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ray_ser.cli", "label", "--config", "demo", "--input", str(manifest),
           "--output", str(out), "--set", f"cache_dir={cache_dir}", "--set", "ray.progress_bars=false",
           "--set", "branches={}", "--set", "sink.rows_per_file=2", "--set", "asr.resources.batch_size=2"]
    first = subprocess.Popen([*cmd, "--run-id", "first", "--set", f"ray.temp_dir=/tmp/rsl{os.getpid()}"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (out / LEASE_NAME).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    started = time.monotonic()
    second = subprocess.run([*cmd, "--run-id", "second"], capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 30  # Python start-up and the manifest; no Ray, no model
    assert second.returncode == 2, second.stderr[-2000:]
    assert "being written by run first" in second.stderr
    output, _ = first.communicate(timeout=900)
    assert first.returncode == 0, output[-3000:]
    ids = read_output(str(out), StorageConfig()).column("utterance_id").to_pylist()
    assert len(ids) == len(set(ids)) == len(rows)
    assert not (out / LEASE_NAME).exists()
