"""What an error's kind is, and which failures are tried again (ray_ser/core/errors.py)."""

from __future__ import annotations

import pytest

from ray_ser.core.errors import TransientError, error_kind, isolate_failures, with_retries
from ray_ser.io.audio import AudioDecodeError


@pytest.mark.parametrize("exc,kind", [
    (TimeoutError("read timed out"), "transient"),
    (ConnectionResetError("reset by peer"), "transient"),
    (OSError("When reading information for key 'a.wav': AWS Error NETWORK_CONNECTION"), "transient"),
    (OSError("AWS Error UNKNOWN (HTTP status 503) during GetObject operation: SlowDown"), "transient"),
    (TransientError("worker lost"), "transient"),
    (FileNotFoundError("a.wav"), "permanent"),
    (PermissionError("a.wav"), "permanent"),
    (OSError("AWS Error ACCESS_DENIED during HeadObject operation"), "permanent"),
    (AudioDecodeError("not decodable audio"), "permanent"),
    (ValueError("rejected by the model"), "permanent"),
])
def test_error_kinds(exc, kind):
    assert error_kind(exc) == kind


def test_ray_and_botocore_failures_by_name_and_status():
    class ActorDiedError(Exception):
        pass

    class ClientError(Exception):
        def __init__(self, status):
            self.response = {"ResponseMetadata": {"HTTPStatusCode": status}}

    assert error_kind(ActorDiedError()) == "transient"
    assert error_kind(ClientError(503)) == "transient" and error_kind(ClientError(404)) == "permanent"


def test_only_transient_failures_are_tried_again():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("slow")
        return "done"

    assert with_retries(flaky, attempts=3, backoff_s=0) == "done" and len(calls) == 3
    calls.clear()
    with pytest.raises(TimeoutError):
        with_retries(flaky, attempts=2, backoff_s=0)
    with pytest.raises(FileNotFoundError):
        with_retries(lambda: calls.append(1) or (_ for _ in ()).throw(FileNotFoundError("x")), 5, 0)
    assert len(calls) == 3  # two flaky tries, then one try of the permanent failure


def test_isolated_items_retry_a_transient_failure_and_report_kinds():
    attempts = {"flaky": 0}

    def predict(items):
        if len(items) > 1:
            raise ValueError("the batch as a whole failed")
        item = items[0]
        if item == "flaky":
            attempts["flaky"] += 1
            if attempts["flaky"] < 2:
                raise TimeoutError("model server timed out")
        if item == "bad":
            raise ValueError("rejected")
        return [item.upper()]

    results, errors, kinds = isolate_failures("asr", predict, ["a", "flaky", "bad"])
    assert results == ["A", "FLAKY", None] and errors == [None, None, "asr: ValueError: rejected"]
    assert kinds == [None, None, "permanent"]
