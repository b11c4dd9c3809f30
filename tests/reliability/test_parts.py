"""Unreadable parts are quarantined and their inputs labelled again, exactly once; parts are only ever
committed whole."""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from ray_ser.config import StorageConfig
from ray_ser.io.sink import QUARANTINE_DIR, list_parts, purge_inputs, read_output, scan_progress, write_part
from ray_ser.schema import conform, output_schema

LOCAL = StorageConfig()


def read_output_part(path) -> list[str]:
    return pq.read_table(path, columns=["utterance_id"]).column("utterance_id").to_pylist()


def _part(out: str, ids: list[str], status: str = "ok", kind: str | None = None) -> str:
    table = conform(pa.table({"utterance_id": ids, "input_id": ids, "segment_count": [1] * len(ids),
                              "status": [status] * len(ids), "error_kind": [kind] * len(ids)}), output_schema())
    return write_part(table, out, LOCAL)


def test_a_zero_byte_and_a_truncated_part_are_moved_aside_with_a_log_line(tmp_path, caplog):
    out = tmp_path / "out"
    _part(str(out), ["a", "b"])
    truncated = out / _part(str(out), ["c", "d"])
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (out / "part-0000000000.parquet").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="ray_ser.sink"):
        progress = scan_progress(str(out), LOCAL)
    assert sorted(progress.complete_inputs.to_pylist()) == ["a", "b"]  # c and d will be labelled again
    assert len(progress.quarantined) == 2 and sorted(p.name for p in (out / QUARANTINE_DIR).iterdir())
    assert sum("quarantined unreadable part" in r.message for r in caplog.records) == 2
    assert read_output(str(out), LOCAL).num_rows == 2  # readers see only good parts now
    assert scan_progress(str(out), LOCAL).quarantined == ()  # once


def test_rows_to_retry_are_removed_in_place(tmp_path):
    out = str(tmp_path / "out")
    mixed = _part(out, ["ok1", "flaky"], status="error", kind="transient")  # both rows marked transient
    _part(out, ["ok2"])
    lone = _part(out, ["broken"], status="error", kind="permanent")
    progress = scan_progress(out, LOCAL)
    assert progress.retry_inputs == {"ok1", "flaky"}
    assert purge_inputs(out, LOCAL, progress) == 2
    assert mixed not in [p.rsplit("/", 1)[-1] for p in list_parts(pafs.LocalFileSystem(), out)]
    assert sorted(read_output(out, LOCAL).column("utterance_id").to_pylist()) == ["broken", "ok2"]
    retry_all = scan_progress(out, LOCAL, retry_errors=True)
    assert retry_all.retry_inputs == {"broken"} and list(retry_all.purge) == [f"{out}/{lone}"]


def test_an_s3_part_is_committed_from_a_temporary_key(s3_endpoint):
    """The final key appears only once the temporary object read back whole; none is left behind."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="atomic-parts")
    storage = StorageConfig(s3_endpoint_url=s3_endpoint)
    table = conform(pa.table({"utterance_id": ["x"], "input_id": ["x"], "status": ["ok"]}), output_schema())
    name = write_part(table, "s3://atomic-parts/out", storage)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="atomic-parts")["Contents"]]
    assert f"out/{name}" in keys and not [k for k in keys if ".tmp-" in k]
    assert read_output("s3://atomic-parts/out", storage).column("utterance_id").to_pylist() == ["x"]


@pytest.mark.usefixtures("ray_cluster")
def test_the_inputs_of_quarantined_parts_are_labelled_again_once(tmp_path, corpus_rows, decode_only):
    from ray_ser.pipeline import run_label_job
    from tests.reliability.conftest import copy_corpus, write_manifest

    rows = copy_corpus(corpus_rows, tmp_path / "clips")
    manifest = write_manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    run_label_job(decode_only, str(manifest), str(out))
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) >= 3
    damaged = {uid for p in parts[:2] for uid in read_output_part(p)}
    parts[0].write_bytes(b"")
    parts[1].write_bytes(parts[1].read_bytes()[:-100])
    again = run_label_job(decode_only, str(manifest), str(out))
    assert again.quarantined_parts == 2
    ids = read_output(str(out), LOCAL).column("utterance_id").to_pylist()
    assert len(ids) == len(set(ids)) == len(rows)
    assert again.rows_written == len(damaged) == len(rows) - again.already_complete
    assert len(list((out / QUARANTINE_DIR).iterdir())) == 2
