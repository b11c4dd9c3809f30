"""Row-level errors: the reason text every stage and the Serve endpoint report, what kind of failure
it was, retries of transient ones, and batch isolation.

An error row records its kind (the output's ``error_kind`` column, ray_ser/schema.py):

- ``transient``: the input may well succeed next time: an I/O error, a timeout, a dropped
  connection, a worker process that died. Retried with backoff inside the job (``with_retries``);
  what still fails is written as an error row that the next run of the same command retries.
- ``permanent``: the input itself is at fault: undecodable, too short, a missing file, rejected
  by a model. The next run keeps the row; ``ray-ser label --retry-errors`` re-runs it anyway.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Sequence, TypeVar

__all__ = ["TRANSIENT", "PERMANENT", "ERROR_KINDS", "TransientError", "error_reason", "error_kind", "with_retries",
           "predict_isolating_failures", "isolate_failures"]

from ray_ser.schema import PERMANENT, TRANSIENT

T = TypeVar("T")

ERROR_KINDS = (TRANSIENT, PERMANENT)

# The input (or its address) is wrong: asking again gives the same answer.
_PERMANENT_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
# Object stores answer these for a bad request rather than a bad moment (pyarrow and botocore wording).
_PERMANENT_STORAGE_WORDS = ("ACCESS_DENIED", "AccessDenied", "NoSuchBucket", "NoSuchKey", "InvalidBucketName",
                            "INVALID_ARGUMENT")
# Ray's and botocore's exceptions, by name: the annotation core does not import either.
_TRANSIENT_NAMES = {
    "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError",
    "OwnerDiedError", "RaySystemError", "GetTimeoutError", "OutOfMemoryError",
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ResponseStreamingError", "IncompleteReadError",
}
_TRANSIENT_HTTP = {408, 429, 500, 502, 503, 504}


class TransientError(RuntimeError):
    """A failure that is worth trying again later (e.g. the input's worker died while processing it)."""


def error_reason(stage: str, exc: BaseException) -> str:
    """The row-level error text: '<stage>: <ExceptionType>: <message>' (bounded length)."""
    message = str(exc).strip().replace("\n", " ")
    kind = type(exc).__name__
    text = f"{stage}: {message}" if kind in ("AudioDecodeError",) else f"{stage}: {kind}: {message}"
    return text[:500]


def error_kind(exc: BaseException) -> str:
    """TRANSIENT for failures of the moment (I/O, timeouts, connections, lost workers), else PERMANENT."""
    if isinstance(exc, TransientError) or type(exc).__name__ in _TRANSIENT_NAMES:
        return TRANSIENT
    status = getattr(exc, "response", None)
    if isinstance(status, dict):  # botocore ClientError: the HTTP status says whose fault it was
        code = status.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return TRANSIENT if code in _TRANSIENT_HTTP else PERMANENT
    if isinstance(exc, _PERMANENT_OS_ERRORS):
        return PERMANENT
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return TRANSIENT
    if isinstance(exc, OSError):  # pyarrow's S3 and local I/O errors are OSErrors
        return PERMANENT if any(w in str(exc) for w in _PERMANENT_STORAGE_WORDS) else TRANSIENT
    return PERMANENT


def with_retries(call: Callable[[], T], attempts: int, backoff_s: float,
                 on_retry: Callable[[int, BaseException], None] | None = None) -> T:
    """call(), tried up to ``attempts`` times while it fails transiently; waits double from backoff_s
    (with jitter, so many workers hitting one fault do not retry in lockstep). A permanent failure,
    or the last transient one, is raised unchanged."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if attempt >= attempts or error_kind(exc) != TRANSIENT:
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
            time.sleep(backoff_s * 2 ** (attempt - 1) * random.uniform(0.75, 1.25))
    raise AssertionError("unreachable")


# An item's own call after its batch failed: a transient failure (a model server's timeout) is tried again.
_ITEM_ATTEMPTS = 3
_ITEM_BACKOFF_S = 0.2


def isolate_failures(stage: str, predict_batch: Callable[[list], Sequence[T]],
                     items: list) -> tuple[list[T | None], list[str | None], list[str | None]]:
    """One batched call; if it raises, one call per item, so a bad item costs only itself (an item's
    transient failure is tried again, twice, before it counts).

    Returns (results, errors, kinds): errors[i] is None where results[i] is valid, else its reason,
    and kinds[i] the reason's error kind.
    """
    try:
        return list(predict_batch(items)), [None] * len(items), [None] * len(items)
    except Exception:
        results: list[T | None] = []
        errors: list[str | None] = []
        kinds: list[str | None] = []
        for item in items:
            try:
                results.append(with_retries(lambda: predict_batch([item])[0], _ITEM_ATTEMPTS, _ITEM_BACKOFF_S))
                errors.append(None)
                kinds.append(None)
            except Exception as exc:
                results.append(None)
                errors.append(error_reason(stage, exc))
                kinds.append(error_kind(exc))
        return results, errors, kinds


def predict_isolating_failures(stage: str, predict_batch: Callable[[list], Sequence[T]],
                               items: list) -> tuple[list[T | None], list[str | None]]:
    """``isolate_failures`` without the kinds: (results, errors)."""
    results, errors, _ = isolate_failures(stage, predict_batch, items)
    return results, errors
