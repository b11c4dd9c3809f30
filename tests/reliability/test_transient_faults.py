"""Transient storage faults on real moto S3 over HTTP: retried in the job (reads and part uploads), then by the
next run; permanent errors stay done until --retry-errors."""

from __future__ import annotations

import pytest

from ray_ser.io.sink import read_output
from ray_ser.pipeline import run_label_job
from tests.reliability.conftest import with_storage, write_manifest
from tests.reliability.faults import FaultyS3

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _upload(s3, bucket: str, corpus_rows: list[dict], n: int) -> list[tuple[str, str]]:
    rows = []
    for r in corpus_rows[:n]:
        key = f"in/{r['utterance_id']}.wav"
        s3.upload_file(r["path"], bucket, key)
        rows.append((r["utterance_id"], f"s3://{bucket}/{key}"))
    s3.put_object(Bucket=bucket, Key="in/broken.wav", Body=b"RIFF\x00\x00\x00\x00WAVEnot really")
    return rows + [("broken", f"s3://{bucket}/in/broken.wav")]


def test_a_transient_read_fault_ends_as_one_ok_row_and_a_permanent_error_is_kept(
        tmp_path, corpus_rows, decode_only, s3_endpoint):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="faults")
    rows = _upload(s3, "faults", corpus_rows, 6)
    manifest = write_manifest(tmp_path / "m.csv", rows)
    (flaky, _), (down, _) = rows[0], rows[1]
    out = "s3://faults/out"
    with FaultyS3(s3_endpoint) as proxy:
        cfg = with_storage(decode_only, s3_endpoint_url=proxy.endpoint, io_attempts=3)
        # More failures than the AWS SDK's own three tries: only the job's retry gets past them.
        proxy.fail("faults", f"in/{flaky}.wav", 4)
        proxy.fail("faults", f"in/{down}.wav", 10_000)  # unreadable for the whole first run
        proxy.fail_writes("faults", "out/.tmp-", 4)  # a part's upload fails past the SDK's tries too
        first = run_label_job(cfg, str(manifest), out)
        written = {r["utterance_id"]: r for r in read_output(out, cfg.storage).to_pylist()}
        assert proxy.failed[f"/faults/in/{flaky}.wav"] == 4 and proxy.failed["/faults/out/.tmp-"] == 4
        assert written[flaky]["status"] == "ok"
        assert (written[down]["status"], written[down]["error_kind"]) == ("error", "transient")
        assert "InternalError" in written[down]["error"] or "500" in written[down]["error"]
        assert (written["broken"]["status"], written["broken"]["error_kind"]) == ("error", "permanent")
        assert first.rows_written == len(rows)

        proxy.heal()  # the storage recovered: the same command again
        second = run_label_job(cfg, str(manifest), out)
        final = read_output(out, cfg.storage).to_pylist()
        ids = [r["utterance_id"] for r in final]
        assert len(ids) == len(set(ids)) == len(rows)
        by_id = {r["utterance_id"]: r for r in final}
        assert second.retried_inputs == 1 and second.rows_written == 1
        assert by_id[down]["status"] == "ok" and by_id[down]["run_id"] == second.run_id
        assert by_id["broken"]["run_id"] == first.run_id  # a permanent error is not re-run

        third = run_label_job(cfg, str(manifest), out, retry_errors=True)
        final = read_output(out, cfg.storage).to_pylist()
        assert third.retried_inputs == 1 and len(final) == len({r["utterance_id"] for r in final}) == len(rows)
        assert {r["utterance_id"]: r["run_id"] for r in final}["broken"] == third.run_id
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="faults", Prefix="out/")["Contents"]]
    # No temporary objects and no lease left ("out/" is the directory marker pyarrow creates).
    assert all(k.startswith("out/part-") for k in keys if k != "out/"), keys
