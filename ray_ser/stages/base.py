"""What every stage shares: declared columns, checked on each batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["StageContractError", "require_columns", "error_reason", "append_warning", "predict_isolating_failures"]


class StageContractError(RuntimeError):
    """A batch lacks columns the stage declares it needs: a wiring bug, so it is fatal."""


def require_columns(stage: str, batch: pa.Table, required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in batch.column_names]
    if missing:
        raise StageContractError(
            f"stage {stage!r} needs columns {list(required)}; the batch lacks {missing} "
            f"(has {batch.column_names}). Check the stage order in ray_ser.pipeline."
        )


def error_reason(stage: str, exc: BaseException) -> str:
    """The row-level error text: '<stage>: <ExceptionType>: <message>' (bounded length)."""
    message = str(exc).strip().replace("\n", " ")
    kind = type(exc).__name__
    text = f"{stage}: {message}" if kind in ("AudioDecodeError",) else f"{stage}: {kind}: {message}"
    return text[:500]


def append_warning(batch: pa.Table, new: list[str | None]) -> pa.Table:
    """Add per-row warnings to the ``warnings`` column ("; "-joined), creating it if absent."""
    import pyarrow as pa

    if "warnings" in batch.column_names:
        old = batch.column("warnings").to_pylist()
        merged = ["; ".join(w for w in (a, b) if w) or None for a, b in zip(old, new)]
        return batch.set_column(batch.schema.get_field_index("warnings"), "warnings", pa.array(merged, pa.string()))
    return batch.append_column("warnings", pa.array(new, pa.string()))


def predict_isolating_failures(stage: str, predict_batch, items: list) -> tuple[list, list[str | None]]:
    """One batched call; if it raises, one call per item, so a bad item costs only itself.

    Returns (results, errors): errors[i] is None where results[i] is valid.
    """
    try:
        return list(predict_batch(items)), [None] * len(items)
    except Exception:
        results, errors = [], []
        for item in items:
            try:
                results.append(predict_batch([item])[0])
                errors.append(None)
            except Exception as exc:
                results.append(None)
                errors.append(error_reason(stage, exc))
        return results, errors
