"""Models built on first use, on an empty cache, by Ray Train workers side by side (issue 15).

The demo's first command failed on a fresh machine: transformers 5 writes nothing from
``save_pretrained`` on a torch.distributed rank other than 0, and Ray Train sets the process
group up before the training function runs. When rank 1 won the build lock, the cache got an
empty directory, and rank 1 then failed to load it ("Should have a model_type key").
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import profile_with

def _rank_one_builds_first(config: dict) -> None:
    """Rank 1 builds the tiny model while rank 0 waits; then both load it through the production path."""
    import ray.train

    from ray_ser.branches.speech_encoder.model import load_encoder
    from ray_ser.models.weights import resolve_model_name

    rank = ray.train.get_context().get_world_rank()
    built = os.path.join(config["cache"], "rank1-built")
    if rank == 0:
        deadline = time.monotonic() + 120
        while not os.path.exists(built) and time.monotonic() < deadline:
            time.sleep(0.2)
    path = resolve_model_name(config["model"], config["cache"])
    if rank == 1:
        open(built, "w").close()
    assert "config.json" in os.listdir(path), os.listdir(path)
    load_encoder(config["model"], config["cache"])


@pytest.mark.usefixtures("ray_cluster")
def test_a_model_built_by_rank_one_is_complete_for_every_rank(tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cache = tmp_path / "empty-cache"
    cache.mkdir()
    TorchTrainer(_rank_one_builds_first, train_loop_config={"cache": str(cache), "model": "tiny-random:whisper"},
                 scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
                 run_config=RunConfig(storage_path=str(tmp_path / "runs"))).fit()
    built = cache / "tiny-random" / "whisper"
    assert {"config.json", "model.safetensors", ".complete"} <= set(os.listdir(built))


def test_an_empty_build_is_refused_and_a_poisoned_cache_heals(tmp_path):
    from ray_ser.models.weights import COMPLETE_MARKER, OfflineWeightsError, build_once, resolve_model_name

    with pytest.raises(OfflineWeightsError, match="building x left nothing"):
        build_once("x", lambda d: None, tmp_path, required=("config.json",))
    assert not (tmp_path / "x").exists()
    # What the previous build_once left after an empty build: a marker and nothing else.
    poisoned = tmp_path / "tiny-random" / "wavlm"
    poisoned.mkdir(parents=True)
    (poisoned / COMPLETE_MARKER).write_text("tiny-random/wavlm")
    assert "config.json" in os.listdir(resolve_model_name("tiny-random:wavlm", tmp_path))


def _branches(**extra):
    train = {"epochs": 1, "batch_size": 4, "val_fraction": 0.3, "num_workers": 2, "cpus_per_worker": 0.5}
    return {
        "speech": {"family": "speech_encoder", "train": {"base_model": "tiny-random:whisper", "finetune": "full",
                                                         "max_seconds": 6, **train}},
        "wave": {"family": "speech_encoder", "train": {"base_model": "tiny-random:wavlm", "finetune": "frozen",
                                                       "max_seconds": 4, **train}},
        "text": {"family": "text_classifier", "train": {"base_model": "tiny-random:llama", "finetune": "lora",
                                                        "lora_rank": 2, "max_length": 16, **train}},
        **extra,
    }


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_branches_building_models_on_first_use_train_side_by_side(tmp_path, corpus):
    from ray_ser.train.loop import fit_branches

    cfg = profile_with(_branches(), cache_dir=tmp_path / "empty-cache")
    results = fit_branches(cfg, ["speech", "wave", "text"], str(corpus), str(tmp_path / "runs"))
    assert sorted(results) == ["speech", "text", "wave"]
    assert all(len(r.history) == 1 for r in results.values())
    for kind in ("whisper", "wavlm", "llama"):
        assert "config.json" in os.listdir(tmp_path / "empty-cache" / "tiny-random" / kind)


@pytest.mark.slow
def test_a_branch_whose_build_fails_stops_the_train_command_with_its_error(tmp_path, corpus):
    """`ray-ser train` exits soon after the broken branch fails, though a long one is still training."""
    import json

    branches = _branches(bad={"family": "speech_encoder", "train": {
        "base_model": "tiny-random:nope", "epochs": 1, "num_workers": 2, "cpus_per_worker": 0.5}})
    branches["speech"]["train"]["epochs"] = 500  # hours, were it left to finish
    proc = subprocess.Popen(
        [sys.executable, "-m", "ray_ser.cli", "train", "--config", "demo", "--branch", "speech", "--branch", "bad",
         "--manifest", str(corpus), "--out", str(tmp_path / "runs"),
         "--set", f"branches={json.dumps(branches)}", "--set", "vote.priority=[]", "--set",
         f"cache_dir={tmp_path / 'empty-cache'}", "--set", "ray.num_cpus=4", "--set",
         f"ray.temp_dir=/tmp/rsb{os.getpid()}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Ray's worker logs stay in its log files (ray_ser/runtime.py): the failure's time is when the
    # broken branch's error first appears there, watched while the command runs.
    logs, failed_at, lines = [], [], []

    def watch() -> None:
        while proc.poll() is None and not failed_at:
            for path in (Path(logs[0]).rglob("*") if logs else ()):
                try:
                    if path.is_file() and "unknown tiny-random model 'nope'" in path.read_text(errors="replace"):
                        failed_at.append(time.monotonic())
                        return
                except OSError:
                    pass
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Ray's logs") and not logs:
            logs.append(line.rsplit(": ", 1)[1].strip())
    returncode = proc.wait(timeout=600)
    exited_at = time.monotonic()
    watcher.join(timeout=5)
    output = "".join(lines)
    assert returncode == 1, output[-3000:]
    assert "ray-ser: branch 'bad' failed to train" in output and "unknown tiny-random model 'nope'" in output
    assert failed_at, f"the error never reached Ray's logs under {logs}"
    # Ray and the trainers take a minute or two to start on a busy 2-core machine; the stop itself is quick.
    assert exited_at - failed_at[0] < 30, output[-3000:]
