"""What the `ray job submit` entrypoints share: run a `ray-ser` command on the cluster that runs the job.

A job's driver runs on the cluster with RAY_ADDRESS set: unless the command names a ``ray.address``
itself, it connects there (``--set ray.address=auto``) rather than starting a local Ray from the
profile's ``ray`` section. The first line of the log says which copy of ray_ser runs: the working
directory ``ray job submit`` uploaded (jobs/runtime_env.yaml puts it first on PYTHONPATH, ahead of
any installed copy).
"""

from __future__ import annotations

import os
import sys


def run(command: str, argv: list[str]) -> int:
    import ray_ser
    from ray_ser.cli import main

    args = list(argv)
    if os.environ.get("RAY_ADDRESS") and not any(a.startswith("ray.address=") for a in args):
        args += ["--set", "ray.address=auto"]
    print(f"ray_ser {command}: code from {os.path.dirname(os.path.abspath(ray_ser.__file__))}", file=sys.stderr)
    return main([command, *args])
