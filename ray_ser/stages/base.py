"""What every stage shares: declared columns, checked on each batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["StageContractError", "require_columns", "error_reason"]


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
