"""Bounded work per input: the declared sample rate is checked before resampling, and a recording longer
than decode.max_input_s is read a window at a time (real espeak speech, the real decode stage and VAD)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from ray_ser.config import load_config
from ray_ser.stages.decode import DecodeStage, cut_segments
from tests.conftest import long_recording, traced_peak_in_fresh_process


def _inputs(rows):
    n = len(rows)
    return pa.table({"input_id": [r[0] for r in rows], "path": [r[1] for r in rows],
                     "start": pa.array([None] * n, pa.float64()), "end": pa.array([None] * n, pa.float64()),
                     "manifest_error": pa.array([None] * n, pa.string()),
                     "manifest_warning": pa.array([None] * n, pa.string())})


def test_a_very_low_declared_rate_is_an_error_before_any_resampling(tmp_path):
    # 2 MB of samples declared at 100 Hz: 2.8 hours, 645 MB once resampled to 16 kHz float32.
    sf.write(tmp_path / "slow.wav", np.zeros(1_000_000, dtype=np.int16), 100, subtype="PCM_16")
    peak, outcome = traced_peak_in_fresh_process(
        "from ray_ser.config import load_config\n"
        "from ray_ser.stages.decode import DecodeStage\n"
        "from tests.reliability.test_bounded_decode import _inputs\n"
        "cfg = load_config('demo')\n"
        "stage = DecodeStage(cfg.storage, cfg.decode)\n",
        f"stage(_inputs([('slow', {str(tmp_path / 'slow.wav')!r})])).to_pylist()[0]")
    assert "'error': 'decode: declared sample rate 100 Hz is below 4000 Hz (decode.min_sample_rate)'" in outcome
    assert "'error_kind': 'permanent'" in outcome, outcome
    assert peak < 50e6


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Five and twenty minutes of real espeak sentences and pauses at 44.1 kHz (a minute of speech, tiled)."""
    root = tmp_path_factory.mktemp("long")
    minute = long_recording(root, 60)
    out = {}
    for minutes in (5, 20):
        samples = minutes * 60 * 16000
        tiled = np.tile(minute, int(np.ceil(samples / minute.size)))[:samples]
        at_44k = np.interp(np.arange(int(samples * 44100 / 16000)) * 16000 / 44100, np.arange(samples), tiled)
        sf.write(root / f"{minutes}.wav", at_44k.astype(np.float32), 44100, subtype="PCM_16")
        out[minutes] = root / f"{minutes}.wav"
    return out


WINDOWED = ["decode.max_segment_s=20", "decode.max_input_s=60"]


def segment_rows(cfg, path) -> list[dict]:
    """Decode, then cut in batches of 16 rows as the job's tasks would; the rows, audio replaced by its length."""
    decoded = DecodeStage(cfg.storage, cfg.decode)(_inputs([("rec", str(path))]))  # segments, audio not read yet
    rows = []
    for offset in range(0, decoded.num_rows, 16):
        for row in cut_segments(decoded.slice(offset, 16), storage=cfg.storage, window_s=60).to_pylist():
            rows.append({**row, "audio": len(row["audio"])})  # keep the length, let the audio go
    return rows


def _peak_of_segmenting(path, warmup) -> int:
    """Peak bytes allocated segmenting `path`, in a fresh process after one call on `warmup` (one-time setup)."""
    peak, outcome = traced_peak_in_fresh_process(
        "from ray_ser.config import load_config\n"
        "from tests.reliability.test_bounded_decode import WINDOWED, segment_rows\n"
        "cfg = load_config('demo', WINDOWED)\n"
        f"segment_rows(cfg, {str(warmup)!r})\n",
        f"len(segment_rows(cfg, {str(path)!r}))")
    assert outcome.isdigit(), outcome
    return peak


def test_a_recording_longer_than_max_input_s_is_read_a_window_at_a_time(recordings):
    short_peak = _peak_of_segmenting(recordings[5], warmup=recordings[5])
    peak = _peak_of_segmenting(recordings[20], warmup=recordings[5])
    whole = 1200 * 16000 * 4  # twenty minutes as 16 kHz float32: 77 MB (106 MB of 16-bit 44.1 kHz on disk)
    # Four times as long, the same memory: a window at a time. Reading it whole would hold more than its
    # 77 MB of samples at once, and grow fourfold.
    assert peak < whole and peak < 1.3 * short_peak, (peak / 1e6, short_peak / 1e6)
    cfg = load_config("demo", WINDOWED)
    short, rows = segment_rows(cfg, recordings[5]), segment_rows(cfg, recordings[20])
    assert len(rows) > 200 and len(short) < len(rows) and all(r["status"] == "ok" for r in rows)
    assert all(r["segment_count"] == len(rows) and r["duration"] <= 20 for r in rows)
    assert [r["segment_index"] for r in rows] == list(range(len(rows)))
    starts = [r["start"] for r in rows]
    assert starts == sorted(starts) and all(a["end"] <= b["start"] + 1e-6 for a, b in zip(rows, rows[1:]))
    assert all(abs(r["audio"] / 4 / 16000 - (r["end"] - r["start"])) < 0.01 for r in rows)
    assert 0.5 * 1200 < sum(r["duration"] for r in rows) < 1200  # the segments hold the speech


def test_a_kept_duplicates_warning_reaches_the_row(corpus_rows):
    cfg = load_config("demo")
    inputs = _inputs([("a", corpus_rows[0]["path"]), ("a@copy2", corpus_rows[0]["path"])])
    inputs = inputs.set_column(inputs.schema.get_field_index("manifest_warning"), "manifest_warning",
                               pa.array([None, "manifest: utterance_id 'a' repeats line 2's; labelled as copy 2"]))
    rows = DecodeStage(cfg.storage, cfg.decode)(inputs).to_pylist()
    assert [(r["utterance_id"], r["status"]) for r in rows] == [("a", "ok"), ("a@copy2", "ok")]
    assert rows[0]["warnings"] is None and "repeats line 2's" in rows[1]["warnings"]
