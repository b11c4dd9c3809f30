"""Which speakers `ray-ser train` holds out of the branches' training to fit the fusion on."""

from __future__ import annotations

import csv

import pyarrow.parquet as pq
import pytest

from ray_ser.config import load_config
from ray_ser.io.manifest import ManifestError
from ray_ser.train.fusion import split_for_fusion


def _manifest(path, speakers: list[str | None], clips_each: int = 3):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utterance_id", "path", "speaker", "emotion"])
        for s, speaker in enumerate(speakers):
            for c in range(clips_each):
                writer.writerow([f"u{s}-{c}", f"audio/u{s}-{c}.wav", speaker or "", "happy"])
    return str(path)


def _speakers(path) -> set:
    return set(pq.read_table(path).column("speaker").to_pylist())


@pytest.mark.parametrize("count,share,held", [(2, 0.25, 1), (4, 0.25, 1), (4, 0.5, 2), (6, 0.25, 2), (10, 0.9, 9)])
def test_a_share_of_the_speakers_at_least_one_never_all(tmp_path, count, share, held):
    """Every split holds out round(share x speakers), at least one and never every speaker, whole
    speakers only, the same ones on every run (a per-speaker hash threshold held out none of four
    speakers in one fold of the real-speech bench)."""
    cfg = load_config("real-speech", [f"fusion.holdout_speakers={share}"])
    speakers = [f"spk{i}" for i in range(count)]
    manifest = _manifest(tmp_path / "m.csv", speakers)
    branches, holdout = split_for_fusion(cfg, manifest, str(tmp_path / "a"))
    trained, fused = _speakers(branches), _speakers(holdout)
    assert len(fused) == held and trained | fused == set(speakers) and not trained & fused
    assert pq.read_table(branches).num_rows + pq.read_table(holdout).num_rows == 3 * count
    again = split_for_fusion(cfg, manifest, str(tmp_path / "b"))[1]
    assert _speakers(again) == fused
    assert pq.read_table(holdout).column("path").to_pylist()[0].startswith(str(tmp_path / "audio"))


def test_clips_without_speakers_are_held_out_one_by_one_and_one_speaker_is_refused(tmp_path):
    cfg = load_config("real-speech", ["fusion.holdout_speakers=0.25"])
    branches, holdout = split_for_fusion(cfg, _manifest(tmp_path / "m.csv", [None], clips_each=8), str(tmp_path / "a"))
    assert (pq.read_table(branches).num_rows, pq.read_table(holdout).num_rows) == (6, 2)
    with pytest.raises(ManifestError, match="has only one"):
        split_for_fusion(cfg, _manifest(tmp_path / "one.csv", ["solo"]), str(tmp_path / "b"))
