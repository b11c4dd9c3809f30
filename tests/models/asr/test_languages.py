"""A clip's language from the manifest: the real Whisper base (CTranslate2) on real EmoDB (German) and
RAVDESS (English) clips, through the ASR stage the job runs (manifest -> decode -> ASR, no Ray)."""

from __future__ import annotations

import csv

import pytest

from ray_ser.config import AsrConfig, DecodeConfig, StorageConfig
from ray_ser.io.manifest import read_inputs
from ray_ser.stages.asr import AsrStage
from ray_ser.stages.decode import DecodeStage
from tests.conftest import real_speech_rows


@pytest.fixture(scope="module")
def rows():
    return real_speech_rows("emodb", speakers=1, per_speaker=2) + real_speech_rows("ravdess", speakers=1,
                                                                                   per_speaker=2)


def _manifest(path, rows, languages):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utterance_id", "path", "speaker", "lang"])
        for row, language in zip(rows, languages):
            writer.writerow([row["utterance_id"], row["path"], row["speaker"], language])
    return str(path)


def test_the_manifests_language_column_steers_whisper_and_reaches_the_row(tmp_path, cache_dir, rows):
    """Given codes win over detection ("DE", "en-US" normalised); a clip with no code, or one Whisper
    does not know, is detected; the row's language says which language the transcript is in."""
    languages = ["DE", "", "en-US", "xx"]  # EmoDB, EmoDB, RAVDESS, RAVDESS
    inputs = read_inputs(_manifest(tmp_path / "m.csv", rows, languages), StorageConfig(),
                         language_column="lang").table
    assert inputs.column("language_hint").to_pylist() == ["de", None, "en", "xx"]
    decoded = DecodeStage(StorageConfig(), DecodeConfig())(inputs)
    asr = AsrStage(AsrConfig(language=None, pad_to_30s=False), str(cache_dir))
    labelled = asr(decoded).to_pylist()
    assert [r["status"] for r in labelled] == ["ok"] * 4
    assert [r["language"] for r in labelled] == ["de", "de", "en", "en"]

    # A code forces the language: German clips transcribed as English come out as English words.
    forced = asr(decoded.set_column(decoded.schema.get_field_index("language_hint"), "language_hint",
                                    _strings(["en"] * 4))).to_pylist()
    assert [r["language"] for r in forced] == ["en"] * 4
    assert forced[0]["transcript"] != labelled[0]["transcript"]
    assert forced[2]["transcript"] == labelled[2]["transcript"]  # RAVDESS was English already


def _strings(values):
    import pyarrow as pa

    return pa.array(values, pa.string())
