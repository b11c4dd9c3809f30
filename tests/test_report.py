"""The labeling job's closing summary, read from real Parquet parts written through the sink."""

from __future__ import annotations

from ray_ser.config import StorageConfig
from ray_ser.pipeline import LabelSummary
from ray_ser.report import format_summary
from tests.evaluate.outputs import output_row, write_output


def test_a_branch_that_labels_no_row_is_named_with_its_reasons(tmp_path):
    """The other branches still vote, so the output looks complete: the summary must say that one
    branch gave nothing, and why."""
    rows = [output_row(f"u{i}", "happy", {"speech": "happy", "prosody": None},
                       warnings="prosody: ValueError: could not broadcast") for i in range(3)]
    rows.append(output_row("bad", None, {}, status="error", error="decode: not audio"))
    write_output(rows, str(tmp_path / "out"))
    summary = LabelSummary(run_id="r", output=str(tmp_path / "out"), inputs=4, already_complete=0, duplicate_ids=0,
                           rows_written=4, rows_ok=3, files_written=1, audio_seconds=8.0, wall_seconds=2.0,
                           branches=("speech", "prosody"))
    text = format_summary(summary, StorageConfig())
    lines = text.splitlines()
    assert "labelled by each branch (of 3 labelled rows):" in lines
    assert any(l.split() == ["speech", "3"] for l in lines)
    assert any(l.split()[:2] == ["prosody", "0"] and "gave no label on any row" in l for l in lines)
    assert any("prosody: ValueError: could not broadcast" in l and l.rstrip().endswith("3") for l in lines)
    assert any("decode: not audio" in l for l in lines)
