import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ray_ser.config import StorageConfig
from ray_ser.io.manifest import ManifestError, read_inputs

LOCAL = StorageConfig()


def _rows(input_set):
    return input_set.table.to_pylist()


def test_csv_relative_paths_segments_and_bad_rows(tmp_path):
    (tmp_path / "m.csv").write_text(
        "utterance_id,path,start,end\n"
        "001,a.wav,,\n"          # numeric-looking ids stay strings
        "002,/abs/b.wav,1.5,3\n"
        ",c.wav,,\n"
        "004,,,\n"
        "005,e.wav,x,\n"
    )
    result = read_inputs(str(tmp_path / "m.csv"), LOCAL)
    rows = _rows(result)
    assert [r["input_id"] for r in rows] == ["001", "002", "@line4", "004", "005"]
    assert rows[0]["path"] == str(tmp_path / "a.wav") and rows[1]["path"] == "/abs/b.wav"
    assert (rows[1]["start"], rows[1]["end"]) == (1.5, 3.0)
    assert rows[2]["manifest_error"] == "manifest: missing utterance_id"
    assert rows[3]["manifest_error"] == "manifest: missing path"
    assert rows[4]["manifest_error"] == "manifest: start/end are not numbers"
    assert [r["line"] for r in rows] == [2, 3, 4, 5, 6]


def test_a_repeated_id_stops_before_any_work_or_every_copy_gets_its_own_row(tmp_path):
    (tmp_path / "m.csv").write_text("utterance_id,path\na,1.wav\nb,2.wav\na,3.wav\na,4.wav\n")
    with pytest.raises(ManifestError, match=r"m.csv: 2 rows repeat .*'a' on lines 2, 4, 5.*duplicate_ids=keep_each"):
        read_inputs(str(tmp_path / "m.csv"), LOCAL)
    kept = read_inputs(str(tmp_path / "m.csv"), LOCAL, duplicate_ids="keep_each")
    rows = _rows(kept)
    assert [r["input_id"] for r in rows] == ["a", "b", "a@copy2", "a@copy3"] and kept.duplicate_ids == 2
    assert rows[2]["manifest_warning"] == "manifest: utterance_id 'a' repeats line 2's; labelled as copy 2"
    assert rows[0]["manifest_warning"] is None


def test_ids_holding_the_derived_id_mark_are_refused(tmp_path):
    (tmp_path / "m.csv").write_text("utterance_id,path\nx,1.wav\nx@1000,2.wav\n")
    with pytest.raises(ManifestError, match=r"m.csv, line 3: utterance_id 'x@1000' contains '@'"):
        read_inputs(str(tmp_path / "m.csv"), LOCAL)


def test_jsonl_and_parquet(tmp_path):
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps({"utterance_id": f"u{i}", "path": f"{i}.wav"})
                                                for i in range(3)))
    assert len(_rows(read_inputs(str(tmp_path / "m.jsonl"), LOCAL))) == 3
    pq.write_table(pa.table({"utterance_id": ["a"], "path": ["a.flac"], "start": [0.5], "end": [1.0]}),
                   tmp_path / "m.parquet")
    assert _rows(read_inputs(str(tmp_path / "m.parquet"), LOCAL))[0]["start"] == 0.5


def test_directory_listing(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("x.wav", "x.flac", "sub/y.flac", "notes.txt", "a@b%.wav"):
        (tmp_path / name).write_bytes(b"0")
    ids = [r["input_id"] for r in _rows(read_inputs(str(tmp_path), LOCAL))]
    # Extensions kept (x.wav and x.flac are two inputs); the derived-id mark escaped.
    assert ids == ["a%40b%25.wav", "sub/y.flac", "x.flac", "x.wav"]


def test_unusable_manifests_fail_clearly(tmp_path):
    (tmp_path / "m.csv").write_text("id,file\n1,a.wav\n")
    with pytest.raises(ManifestError, match=r"lacks required column\(s\) \['utterance_id', 'path'\]"):
        read_inputs(str(tmp_path / "m.csv"), LOCAL)
    with pytest.raises(ManifestError, match="manifest not found"):
        read_inputs(str(tmp_path / "nope.csv"), LOCAL)
    with pytest.raises(ManifestError, match="no audio files"):
        read_inputs(str(tmp_path), LOCAL)
    with pytest.raises(ManifestError, match="input not found"):
        read_inputs(str(tmp_path / "missing_dir"), LOCAL)


def test_s3_prefix_listing(s3_endpoint):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="listing")
    for key in ("c/a.wav", "c/deep/b.mp3", "c/readme.md"):
        s3.put_object(Bucket="listing", Key=key, Body=b"x")
    rows = _rows(read_inputs("s3://listing/c", StorageConfig(s3_endpoint_url=s3_endpoint)))
    assert [(r["input_id"], r["path"]) for r in rows] == [("a.wav", "s3://listing/c/a.wav"),
                                                          ("deep/b.mp3", "s3://listing/c/deep/b.mp3")]
