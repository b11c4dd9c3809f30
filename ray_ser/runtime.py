"""The Ray connection every entrypoint shares (labeling job, training, Serve)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from ray_ser.config import RayConfig

__all__ = ["ray_session", "init_arguments"]


def init_arguments(cfg: RayConfig) -> dict:
    """``ray.init`` arguments: an existing cluster's address, or a local cluster's CPUs and temp dir.

    Workers' output (Ray Train's reports, Ray's own warnings, model loaders) stays in Ray's log
    directory: the driver prints its own progress (ray_ser/progress.py), and errors still reach it
    as exceptions."""
    kwargs: dict = {"include_dashboard": False, "log_to_driver": False}
    if cfg.address:
        return {"address": cfg.address, **kwargs}
    return {"num_cpus": cfg.num_cpus, "_temp_dir": cfg.temp_dir, **kwargs}


def _print_log_directory() -> None:
    import sys

    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    if node is not None:
        print(f"Ray's logs (workers, Ray Data, Ray Train): {node.get_logs_dir_path()}", file=sys.stderr)


@contextlib.contextmanager
def ray_session(cfg: RayConfig) -> Iterator[None]:
    """Connect to cfg.address, or start a local cluster; reuse one the caller already started."""
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(**init_arguments(cfg))
    _print_log_directory()
    try:
        yield
    finally:
        ray.shutdown()
