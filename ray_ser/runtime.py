"""The Ray connection every entrypoint shares (labeling job, training, Serve)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from ray_ser.config import RayConfig

__all__ = ["ray_session", "init_arguments"]


def init_arguments(cfg: RayConfig) -> dict:
    """``ray.init`` arguments: an existing cluster's address, or a local cluster's CPUs and temp dir."""
    kwargs: dict = {"include_dashboard": False, "log_to_driver": True}
    if cfg.address:
        return {"address": cfg.address, **kwargs}
    return {"num_cpus": cfg.num_cpus, "_temp_dir": cfg.temp_dir, **kwargs}


@contextlib.contextmanager
def ray_session(cfg: RayConfig) -> Iterator[None]:
    """Connect to cfg.address, or start a local cluster; reuse one the caller already started."""
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(**init_arguments(cfg))
    try:
        yield
    finally:
        ray.shutdown()
