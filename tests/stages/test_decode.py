import pyarrow as pa
import pytest
import soundfile as sf

from ray_ser.config import load_config
from ray_ser.stages.base import StageContractError
from ray_ser.stages.decode import DecodeStage
from tests.conftest import long_recording


def _inputs(rows):
    return pa.table({
        "input_id": [r[0] for r in rows], "path": [r[1] for r in rows],
        "start": pa.array([r[2] for r in rows], pa.float64()), "end": pa.array([r[3] for r in rows], pa.float64()),
        "manifest_error": pa.array([r[4] if len(r) > 4 else None for r in rows], pa.string()),
        "manifest_warning": pa.array([None] * len(rows), pa.string()),
    })


@pytest.fixture(scope="module")
def stage():
    cfg = load_config("demo", ["decode.max_segment_s=20"])
    return DecodeStage(cfg.storage, cfg.decode)


def test_good_bad_and_sliced_rows_all_come_out(stage, corpus_rows, tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    good = corpus_rows[0]["path"]
    out = stage(_inputs([("g", good, None, None), ("s", good, 0.5, 1.5), ("b", str(tmp_path / "bad.wav"), None, None),
                         ("m", str(tmp_path / "missing.wav"), None, None), ("e", "", None, None, "manifest: x")]))
    rows = {r["utterance_id"]: r for r in out.to_pylist()}
    assert set(rows) == {"g", "s", "b", "m", "e"}
    assert rows["g"]["status"] == "ok" and rows["g"]["audio"] and rows["g"]["error"] is None
    assert abs(rows["s"]["duration"] - 1.0) < 1e-3 and rows["s"]["start"] == 0.5
    assert rows["b"]["status"] == "error" and rows["b"]["error"].startswith("decode: not decodable audio")
    assert "FileNotFoundError" in rows["m"]["error"]
    assert rows["e"]["error"] == "manifest: x" and rows["e"]["audio"] is None
    # The file, not the moment, is at fault: the next run keeps these rows.
    assert {rows[k]["error_kind"] for k in "bme"} == {"permanent"} and rows["g"]["error_kind"] is None


def test_long_recording_becomes_segment_rows(stage, tmp_path):
    sf.write(tmp_path / "long.wav", long_recording(tmp_path, 50), 16000)
    out = stage(_inputs([("long", str(tmp_path / "long.wav"), None, None)])).to_pylist()
    assert len(out) >= 3
    assert all(r["input_id"] == "long" and r["segment_count"] == len(out) for r in out)
    assert [r["segment_index"] for r in out] == list(range(len(out)))
    assert all(r["utterance_id"] == f"long@{round(r['start'] * 1000)}" and r["duration"] <= 20 for r in out)


def test_skip_ids_drop_already_written_segments(tmp_path):
    cfg = load_config("demo", ["decode.max_segment_s=20"])
    sf.write(tmp_path / "long.wav", long_recording(tmp_path, 50), 16000)
    batch = _inputs([("long", str(tmp_path / "long.wav"), None, None)])
    first = DecodeStage(cfg.storage, cfg.decode)(batch).column("utterance_id").to_pylist()
    rest = DecodeStage(cfg.storage, cfg.decode, skip_ids=frozenset(first[:2]))(batch)
    assert rest.column("utterance_id").to_pylist() == first[2:]


def test_contract_violation_is_a_clear_error(stage):
    with pytest.raises(StageContractError, match=r"stage 'decode' needs columns .* lacks \['path'"):
        stage(pa.table({"input_id": ["a"]}))
