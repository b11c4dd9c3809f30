import pyarrow as pa

from ray_ser.config import StorageConfig
from ray_ser.io.sink import part_name, read_output, scan_progress, write_part
from ray_ser.schema import conform, output_schema

LOCAL = StorageConfig()


def _table(ids, input_ids, counts):
    return conform(pa.table({"utterance_id": ids, "input_id": input_ids, "segment_count": counts,
                             "status": ["ok"] * len(ids)}), output_schema())


def test_part_names_are_content_addressed():
    assert part_name(["b", "a"]) == part_name(["a", "b"]) != part_name(["a", "c"])


def test_rewrite_of_the_same_batch_is_idempotent(tmp_path):
    out = str(tmp_path / "out")
    table = _table(["a", "b"], ["a", "b"], [1, 1])
    assert write_part(table, out, LOCAL) == write_part(table, out, LOCAL)
    assert read_output(out, LOCAL).num_rows == 2


def test_reader_ignores_a_crashed_temp_file(tmp_path):
    out = tmp_path / "out"
    write_part(_table(["a"], ["a"], [1]), str(out), LOCAL)
    (out / ".tmp-deadbeef-part-x.parquet").write_bytes(b"PAR1 truncated")
    assert read_output(str(out), LOCAL).column("utterance_id").to_pylist() == ["a"]


def test_progress_separates_complete_and_partial_inputs(tmp_path):
    out = str(tmp_path / "out")
    assert read_output(out, LOCAL) is None and scan_progress(out, LOCAL).complete_count == 0
    write_part(_table(["a", "long@0", "long@29000"], ["a", "long", "long"], [1, 3, 3]), out, LOCAL)
    write_part(_table(["b@0", "b@5000"], ["b", "b"], [2, 2]), out, LOCAL)
    progress = scan_progress(out, LOCAL)
    assert set(progress.complete_inputs.to_pylist()) == {"a", "b"}
    assert progress.partial_segment_ids == {"long@0", "long@29000"}
    assert progress.rows == 5


def test_schema_has_room_for_branches():
    names = output_schema(("speech", "text")).names
    assert names[:2] == ["utterance_id", "input_id"]
    assert {"label", "confidence", "agreement", "speech_label", "speech_probs", "text_probs"} <= set(names)
