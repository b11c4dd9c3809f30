"""The console script as a user runs it: a separate process with its own local Ray."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ray_ser.config import StorageConfig
from ray_ser.io.sink import read_output

RAY_SER = [sys.executable, "-m", "ray_ser.cli"]


def _id_path_manifest(corpus_rows, path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utterance_id", "path"])
        for r in corpus_rows:
            writer.writerow([r["utterance_id"], r["path"]])
    return path


@pytest.fixture(scope="module", autouse=True)
def _ray_temp_cleanup():
    yield
    shutil.rmtree(f"/tmp/rsc{os.getpid()}", ignore_errors=True)


def _label_cmd(manifest, out, cache_dir, tmp_path, *extra):
    return [*RAY_SER, "label", "--config", "configs/demo.yaml", "--input", str(manifest), "--output", str(out),
            "--set", f"cache_dir={cache_dir}", "--set", f"ray.temp_dir=/tmp/rsc{os.getpid()}",
            "--set", "ray.progress_bars=false", "--set", "branches={}", *extra]


def test_label_command_writes_one_row_per_input_row(tmp_path, corpus_rows, cache_dir):
    manifest = _id_path_manifest(corpus_rows, tmp_path / "m.csv")
    out = tmp_path / "out"
    run = subprocess.run(_label_cmd(manifest, out, cache_dir, tmp_path), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    table = read_output(str(out), StorageConfig())
    assert sorted(table.column("utterance_id").to_pylist()) == sorted(r["utterance_id"] for r in corpus_rows)
    assert "rows written" in run.stdout and "audio-s per s" in run.stdout


def test_bad_config_exits_2_naming_the_field(tmp_path):
    run = subprocess.run([*RAY_SER, "label", "--input", "x.csv", "--output", str(tmp_path),
                          "--set", "asr.resources.batch_size=0"], capture_output=True, text=True)
    assert run.returncode == 2 and "asr.resources.batch_size" in run.stderr


def test_label_without_trained_checkpoints_exits_2_saying_how_to_fix_it(tmp_path):
    run = subprocess.run([*RAY_SER, "label", "--input", "x.csv", "--output", str(tmp_path)],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "no checkpoint" in run.stderr and "ray-ser train" in run.stderr


def test_train_takes_several_branches_and_names_an_unknown_one(tmp_path):
    run = subprocess.run([*RAY_SER, "train", "--branch", "nope", "--branch", "speech", "--manifest", "x.csv",
                          "--out", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 2 and "no branch 'nope'" in run.stderr  # the first of two --branch


def test_missing_manifest_exits_2(tmp_path):
    run = subprocess.run([*RAY_SER, "label", "--input", str(tmp_path / "none.csv"), "--output", str(tmp_path),
                          "--set", "branches={}"], capture_output=True, text=True)
    assert run.returncode == 2 and "manifest not found" in run.stderr


def test_synth_command(tmp_path):
    run = subprocess.run([*RAY_SER, "synth", "--out", str(tmp_path), "--n", "3", "--seed", "1"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert len(list((tmp_path / "wav").glob("*.wav"))) == 3


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(tmp_path, cache_dir):
    """Kill the job for real once its first part lands; the re-run completes exactly once."""
    from ray_ser.demo.synth import synthesize_corpus

    manifest = synthesize_corpus(tmp_path / "c", n=40, seed=9)
    out = tmp_path / "out"
    cmd = _label_cmd(manifest, out, cache_dir, tmp_path, "--set", "sink.rows_per_file=4",
                     "--set", "asr.resources.batch_size=4")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local cluster it started
    proc.wait()
    partial = read_output(str(out), StorageConfig())
    assert partial is not None and 0 < partial.num_rows < 40

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    final = read_output(str(out), StorageConfig()).column("utterance_id").to_pylist()
    assert len(final) == len(set(final)) == 40
