"""An embedded S3 (moto's server on 127.0.0.1) for the demo and the tests.

It runs as its own process, so it is a real HTTP endpoint that Ray workers,
pyarrow, s3fs and boto3 reach exactly as they would reach AWS or MinIO.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Iterator

__all__ = ["free_port", "embedded_s3", "use_test_credentials"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def use_test_credentials() -> None:
    """moto accepts any key; set dummy ones only where none are configured."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@contextlib.contextmanager
def embedded_s3(port: int | None = None, startup_timeout_s: float = 30.0) -> Iterator[str]:
    """Start moto_server, yield its endpoint URL, stop it on exit."""
    use_test_credentials()
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"moto server exited with code {proc.returncode}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not answer on {endpoint} within {startup_timeout_s}s")
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
