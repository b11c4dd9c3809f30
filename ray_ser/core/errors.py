"""Row-level errors: the reason text every stage and the Serve endpoint report, and batch isolation."""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

__all__ = ["error_reason", "predict_isolating_failures"]

T = TypeVar("T")


def error_reason(stage: str, exc: BaseException) -> str:
    """The row-level error text: '<stage>: <ExceptionType>: <message>' (bounded length)."""
    message = str(exc).strip().replace("\n", " ")
    kind = type(exc).__name__
    text = f"{stage}: {message}" if kind in ("AudioDecodeError",) else f"{stage}: {kind}: {message}"
    return text[:500]


def predict_isolating_failures(stage: str, predict_batch: Callable[[list], Sequence[T]],
                               items: list) -> tuple[list[T | None], list[str | None]]:
    """One batched call; if it raises, one call per item, so a bad item costs only itself.

    Returns (results, errors): errors[i] is None where results[i] is valid.
    """
    try:
        return list(predict_batch(items)), [None] * len(items)
    except Exception:
        results: list[T | None] = []
        errors: list[str | None] = []
        for item in items:
            try:
                results.append(predict_batch([item])[0])
                errors.append(None)
            except Exception as exc:
                results.append(None)
                errors.append(error_reason(stage, exc))
        return results, errors
