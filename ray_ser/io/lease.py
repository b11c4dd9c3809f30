"""One writer per output: a lease file in the output location, on local disk or S3.

A labeling run takes the lease (``_lease.json`` beside the parts) before it reads anything, renews
it from a heartbeat thread every quarter of its time-to-live, and deletes it when it ends. A second
run on the same output finds a live lease and fails at once, naming the run that holds it. A lease
whose heartbeat is older than its time-to-live belongs to a run that was killed: the next run takes
it over (so does a run on the same host whose holder process is gone, without waiting).

Taking and renewing are compare-and-swap operations, so two runs racing for one output cannot both
win: on S3 conditional writes (``If-None-Match: *`` to create, ``If-Match: <etag>`` to renew or
take over; AWS, MinIO and moto implement them), on local disk a file lock around read-and-replace.
Timestamps are the holders' wall clocks: hosts sharing an output need clocks within the TTL.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ray_ser.core.errors import with_retries
from ray_ser.io.storage import filesystem_for, is_s3, path_in_filesystem

if TYPE_CHECKING:
    from ray_ser.config import StorageConfig

__all__ = ["LEASE_NAME", "OutputBusyError", "LeaseLostError", "LeaseInfo", "OutputLease", "read_lease"]

LEASE_NAME = "_lease.json"
log = logging.getLogger("ray_ser.lease")


class OutputBusyError(RuntimeError):
    """Another run holds the output's lease; the message names it."""


class LeaseLostError(RuntimeError):
    """This run's lease was taken over (its heartbeat stopped for longer than the TTL)."""


@dataclass(frozen=True)
class LeaseInfo:
    run_id: str
    host: str
    pid: int
    nonce: str          # unique per acquisition: tells this holder's lease from a successor's
    started_at: float
    renewed_at: float
    ttl_s: float

    def age_s(self, now: float | None = None) -> float:
        return (now or time.time()) - self.renewed_at

    def holder_is_gone(self) -> bool:
        """Expired, or held by a process of this host that no longer exists."""
        if self.age_s() > self.ttl_s:
            return True
        if self.host == socket.gethostname():
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return False

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started_at))
        return (f"run {self.run_id} (pid {self.pid} on {self.host}, started {started}, heartbeat "
                f"{self.age_s():.0f} s ago, expires after {self.ttl_s:.0f} s without one)")

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LeaseInfo | None:
        try:
            return cls(**json.loads(data))
        except (ValueError, TypeError):
            return None  # unreadable (a torn write by a killed holder): treated as expired


class _LocalStore:
    """The lease as a local file; read-compare-write under an flock on a sidecar lock file."""

    def __init__(self, root: str) -> None:
        os.makedirs(root, exist_ok=True)
        self.path = os.path.join(root, LEASE_NAME)
        self.lock_path = os.path.join(root, ".lease.lock")

    def _locked(self):
        import contextlib
        import fcntl

        @contextlib.contextmanager
        def held():
            with open(self.lock_path, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                yield

        return held()

    def read(self) -> tuple[bytes, str] | None:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        return data, data.decode(errors="replace")

    def _write(self, data: bytes) -> str:
        temp = f"{self.path}.{uuid.uuid4().hex}"
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.path)
        return data.decode()

    def create(self, data: bytes) -> str | None:
        with self._locked():
            return None if os.path.exists(self.path) else self._write(data)

    def replace(self, data: bytes, token: str) -> str | None:
        with self._locked():
            current = self.read()
            return self._write(data) if current is not None and current[1] == token else None

    def delete(self, token: str) -> None:
        with self._locked():
            current = self.read()
            if current is not None and current[1] == token:
                os.unlink(self.path)


class _S3Store:
    """The lease as an S3 object; create and replace are conditional writes (the ETag is the token)."""

    def __init__(self, output_uri: str, storage: StorageConfig) -> None:
        import boto3

        bucket, _, prefix = path_in_filesystem(output_uri).partition("/")
        fs, root = filesystem_for(output_uri, storage)
        fs.create_dir(root, recursive=True)  # creates the bucket where allowed, as the parts' writer does
        self.bucket, self.key = bucket, f"{prefix}/{LEASE_NAME}" if prefix else LEASE_NAME
        self.client = boto3.client("s3", endpoint_url=storage.s3_endpoint_url, region_name=storage.s3_region)

    @staticmethod
    def _precondition_failed(exc: Exception) -> bool:
        response = getattr(exc, "response", None) or {}
        return response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict") or \
            response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412)

    def read(self) -> tuple[bytes, str] | None:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self.client.exceptions.NoSuchKey:
            return None
        return answer["Body"].read(), answer["ETag"]

    def _put(self, data: bytes, **condition) -> str | None:
        try:
            return self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)["ETag"]
        except Exception as exc:
            if self._precondition_failed(exc):
                return None
            raise

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def replace(self, data: bytes, token: str) -> str | None:
        return self._put(data, IfMatch=token)

    def delete(self, token: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=token)
        except Exception as exc:
            if not self._precondition_failed(exc):
                raise


def _store(output_uri: str, storage: StorageConfig):
    return _S3Store(output_uri, storage) if is_s3(output_uri) else _LocalStore(path_in_filesystem(output_uri))


def read_lease(output_uri: str, storage: StorageConfig) -> LeaseInfo | None:
    """The lease on output_uri as it stands (None when no run holds one)."""
    current = _store(output_uri, storage).read()
    return LeaseInfo.from_json(current[0]) if current else None


class OutputLease:
    """``with OutputLease(output, storage, run_id, ttl_s):`` holds the output for this run.

    Entering fails with OutputBusyError while another run's lease is live. ``check()`` raises
    LeaseLostError once a renewal found the lease taken over.
    """

    def __init__(self, output_uri: str, storage: StorageConfig, run_id: str, ttl_s: float) -> None:
        self.output_uri, self.storage, self.run_id, self.ttl_s = output_uri, storage, run_id, ttl_s
        self._store = None
        self._token: str | None = None
        self._info: LeaseInfo | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False
        self.took_over: LeaseInfo | None = None  # the stale lease this run replaced, if any

    def _retrying(self, call):
        return with_retries(call, self.storage.io_attempts, self.storage.io_backoff_s)

    def acquire(self) -> None:
        self._store = self._retrying(lambda: _store(self.output_uri, self.storage))
        now = time.time()
        self._info = LeaseInfo(self.run_id, socket.gethostname(), os.getpid(), uuid.uuid4().hex, now, now,
                               self.ttl_s)
        for _ in range(5):  # a holder releasing or renewing between our read and write: look again
            self._token = self._retrying(lambda: self._store.create(self._info.to_json()))
            if self._token is not None:
                return
            current = self._retrying(self._store.read)
            if current is None:
                continue
            holder = LeaseInfo.from_json(current[0])
            if holder is not None and not holder.holder_is_gone():
                raise OutputBusyError(f"{self.output_uri} is being written by {holder.describe()}; wait for it to "
                                      f"finish, or stop it (its lease then expires) and run this command again")
            self._token = self._retrying(lambda: self._store.replace(self._info.to_json(), current[1]))
            if self._token is not None:
                self.took_over = holder
                log.warning("%s: took over the lease of %s", self.output_uri,
                            holder.describe() if holder else "an unreadable lease")
                return
        raise OutputBusyError(f"{self.output_uri}: could not take the output's lease (other runs keep taking it)")

    def renew(self) -> None:
        info = LeaseInfo(**{**asdict(self._info), "renewed_at": time.time()})
        token = self._retrying(lambda: self._store.replace(info.to_json(), self._token))
        if token is None:
            self.lost = True
            log.error("%s: run %s lost its lease to another run", self.output_uri, self.run_id)
        else:
            self._token, self._info = token, info

    def check(self) -> None:
        if self.lost:
            current = read_lease(self.output_uri, self.storage)
            raise LeaseLostError(f"{self.output_uri}: this run ({self.run_id}) lost its lease"
                                 + (f" to {current.describe()}" if current else ""))

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                self.renew()
            except Exception as exc:  # storage down for longer than the retries: try again next beat
                log.warning("%s: lease renewal failed: %s", self.output_uri, exc)
            if self.lost:
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._token is not None and not self.lost:
            try:
                self._retrying(lambda: self._store.delete(self._token))
            except Exception as exc:  # it expires by itself
                log.warning("%s: could not delete the lease (%s); it expires after %.0f s", self.output_uri, exc,
                            self.ttl_s)
        self._token = None

    def __enter__(self) -> OutputLease:
        self.acquire()
        self._thread = threading.Thread(target=self._heartbeat, name="ray_ser-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
