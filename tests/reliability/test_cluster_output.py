"""A local --output on a Ray cluster of several nodes is refused before any work: parts would land on
whichever node ran the sink, out of sight of the driver's resume scan."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

# A real two-node cluster (ray.cluster_utils: two raylets on this machine), its files and its address file
# under a temp dir of its own (RAY_TMPDIR), so no other Ray on the machine is disturbed.
_SCRIPT = textwrap.dedent("""
    import sys
    from ray.cluster_utils import Cluster
    from ray_ser.cli import main

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        code = main(["label", "--config", "demo", "--input", sys.argv[1], "--output", sys.argv[2],
                     "--set", "branches={}", "--set", f"ray.address={cluster.address}"])
    finally:
        cluster.shutdown()
    sys.exit(code)
""")


@pytest.mark.slow
def test_a_local_output_on_a_multi_node_cluster_is_refused(tmp_path, corpus):
    temp = f"/tmp/rsmn{os.getpid()}"
    env = {**os.environ, "RAY_TMPDIR": temp}
    try:
        run = subprocess.run([sys.executable, "-c", _SCRIPT, str(corpus), str(tmp_path / "out")], env=env,
                             capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert run.returncode == 2, run.stderr[-3000:]
    assert "is a local path, but this Ray cluster has 2 nodes" in run.stderr and "s3://" in run.stderr
    assert not list((tmp_path / "out").glob("part-*"))
