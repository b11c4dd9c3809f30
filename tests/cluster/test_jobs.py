"""`ray job submit`, end to end, as a user runs it: the labeling job, then training one branch.

The cluster is `ray start --head` (tests/cluster/conftest.py); jobs go through the real CLI with
jobs/runtime_env.yaml, so the working directory is uploaded and the uploaded copy of ray_ser is
what runs (the job's first log line says where its code came from).
"""

from __future__ import annotations

import re
from pathlib import Path



def test_the_jobs_api_answers_only_with_the_clusters_token(head):
    assert head.http("/api/jobs/", head.token)[0] == 200
    assert head.http("/api/jobs/")[0] in (401, 403)
    assert head.http("/api/jobs/", "not-the-token")[0] in (401, 403)


def test_label_job_submitted_with_the_cli_writes_every_row_once(label_job, head, corpus_rows, s3_endpoint):
    from ray_ser.config import StorageConfig
    from ray_ser.io.sink import read_output

    logs = label_job["logs"]
    assert label_job["status"] == "SUCCEEDED", logs[-4000:]
    # The uploaded working dir is what ran, not the copy installed in the environment.
    origin = re.search(r"ray_ser label: code from (\S+)", logs)
    assert origin and str(head.temp_dir) in origin.group(1) and "runtime_resources" in origin.group(1), logs[:2000]

    rows = read_output(label_job["output"], StorageConfig(s3_endpoint_url=s3_endpoint)).to_pylist()
    expected = sorted([r["utterance_id"] for r in corpus_rows] + ["not-audio"])
    assert sorted(r["utterance_id"] for r in rows) == expected  # every row, exactly once
    by_id = {r["utterance_id"]: r for r in rows}
    assert by_id.pop("not-audio")["status"] == "error"
    assert all(r["status"] == "ok" and r["label"] is not None for r in by_id.values())

    # What a person reads in `ray job logs`: the progress line, then the summary table; not Ray
    # Data's per-operator progress.
    n = len(expected)
    assert re.search(rf"labeling  {n}/{n} rows \(100%\) .* audio-h/h  1 error  done in", logs), logs[-3000:]
    assert re.search(rf"rows written\s+{n}\n\s+ok\s+{n - 1}\n\s+error\s+1", logs), logs[-3000:]
    assert "Running Dataset" not in logs and "Execution plan" not in logs, logs[-3000:]


def test_train_job_submitted_with_the_cli_prints_one_line_per_epoch(train_job):
    logs = train_job["logs"]
    assert train_job["status"] == "SUCCEEDED", logs[-4000:]
    epochs = re.findall(r"train prosody\s+epoch (\d)/2  loss \d+\.\d{3}  val macro-F1 \d\.\d{3}  UAR \d\.\d{3}", logs)
    assert epochs == ["1", "2"], logs[-3000:]
    assert re.search(r"branch prosody: 2 epochs in \d+ s; best epoch \d", logs), logs[-3000:]
    assert "TrainingReport(" not in logs and "PlacementGroupCleaner" not in logs
    checkpoint = re.search(r"--set branches\.prosody\.checkpoint=(\S+)", logs).group(1)
    assert (Path(checkpoint) / "branch.json").exists()
