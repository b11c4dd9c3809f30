"""Branch and vote stages on real batches, real tiny checkpoints, real espeak audio."""

from __future__ import annotations

import pyarrow as pa
import pytest
import soundfile as sf

from ray_ser.io.audio import to_bytes
from ray_ser.labels import EMOTIONS
from ray_ser.stages.base import StageContractError
from ray_ser.stages.branch import BranchStage
from ray_ser.stages.vote import vote_batch
from tests.conftest import profile_with


def _batch(corpus_rows, n=3):
    audio = [to_bytes(sf.read(r["path"], dtype="float32")[0]) for r in corpus_rows[:n]]
    return pa.table({
        "utterance_id": [r["utterance_id"] for r in corpus_rows[:n]] + ["broken", "undecoded"],
        "audio": pa.array(audio + [b"\x01\x02\x03", None], pa.large_binary()),
        "transcript": [r["text"] for r in corpus_rows[:n]] + ["Some words.", None],
        "status": ["ok"] * n + ["ok", "error"],
        "error": [None] * n + [None, "decode: empty file"],
        "error_kind": pa.array([None] * n + [None, "permanent"], pa.string()),
    })


@pytest.fixture(scope="module")
def stages(branch_checkpoints, tmp_path_factory):
    cfg = profile_with({"speech": {"family": "speech_encoder", "checkpoint": branch_checkpoints["speech"]},
                        "text": {"family": "text_classifier", "checkpoint": branch_checkpoints["text"]}},
                       tmp_path_factory.mktemp("cache"))
    return BranchStage("speech", cfg), BranchStage("text", cfg)


def test_branch_stages_add_label_and_probs_and_isolate_a_bad_row(stages, corpus_rows):
    speech, text = stages
    out = text(speech(_batch(corpus_rows)))
    labels, probs = out.column("speech_label").to_pylist(), out.column("speech_probs").to_pylist()
    assert all(label in EMOTIONS for label in labels[:3]) and all(abs(sum(p) - 1) < 1e-4 for p in probs[:3])
    # The corrupt audio row fails alone; the undecoded row abstains; the text branch still votes on the first.
    assert labels[3:] == [None, None] and out.column("warnings").to_pylist()[3].startswith("speech: ")
    assert out.column("text_label").to_pylist()[3] in EMOTIONS
    assert out.column("text_label").to_pylist()[4] is None


def test_branch_stage_fails_on_the_first_batch_missing_its_input(stages):
    with pytest.raises(StageContractError, match="transcript"):
        stages[1](pa.table({"utterance_id": ["a"]}))


def test_vote_settles_status_asr_failure_still_gets_speech_votes(stages, corpus_rows):
    speech, text = stages
    batch = _batch(corpus_rows)
    # Row 0: ASR failed (no transcript), audio decoded.
    batch = batch.set_column(2, "transcript", pa.array([None] + batch.column("transcript").to_pylist()[1:]))
    batch = batch.set_column(3, "status", pa.array(["error", "ok", "ok", "ok", "error"]))
    batch = batch.set_column(4, "error", pa.array(["asr: RuntimeError: boom", None, None, None,
                                                   "decode: empty file"]))
    batch = batch.set_column(5, "error_kind", pa.array(["permanent", None, None, None, "permanent"]))
    out = vote_batch(text(speech(batch)), branches=("speech", "text"), weights={"speech": 1.0, "text": 0.5},
                     priority=("speech", "text")).to_pylist()
    assert out[0]["status"] == "ok" and out[0]["label"] == out[0]["speech_label"] and out[0]["agreement"] == 1.0
    assert "asr: RuntimeError: boom" in out[0]["warnings"] and out[0]["error"] is None
    assert out[3]["status"] == "ok" and out[3]["label"] == out[3]["text_label"]   # speech failed, text voted
    assert out[4]["status"] == "error" and out[4]["label"] is None and out[4]["error"] == "decode: empty file"
    assert out[4]["error_kind"] == "permanent" and out[0]["error_kind"] is None  # row 0 voted: no error left
    for row in out[:3]:
        assert row["label"] in EMOTIONS and 0 < row["confidence"] <= 1


def test_known_speakers_are_profiled_from_their_training_clips_too(corpus_clips, tmp_path):
    """With speakers.pool_known_speakers, a speaker the checkpoint was trained on is profiled from
    the manifest's clips plus its training clips (kept in the checkpoint); other speakers from the
    manifest's alone; a known speaker the statistics pass never saw from its training clips."""
    import numpy as np

    from ray_ser.branches.prosody.model import ProsodyEmotionModel, ProsodyPredictor
    from ray_ser.branches.prosody.settings import ProsodyTrain

    clips = [audio for audio, _ in corpus_clips[:6]]
    model = ProsodyEmotionModel(ProsodyTrain(speaker_normalization=True))
    model.set_reference_profile(model.functionals(clips).mean(axis=0))
    model.fit_standardization(model.clip_inputs(clips))
    sums = model.feature_sums(clips)
    model.known_speakers = {"known": sums[:4].sum(axis=0), "absent": sums[5]}
    model.save(tmp_path / "prosody")
    branches = {"prosody": {"family": "prosody", "checkpoint": str(tmp_path / "prosody")}}
    manifest_statistics = {"known": sums[4], "other": sums[5]}
    batch = pa.table({"utterance_id": ["a", "b", "c"], "speaker": ["known", "other", "absent"],
                      "audio": pa.array([to_bytes(clips[4])] * 3, pa.large_binary())})
    expected = ProsodyPredictor.load(tmp_path / "prosody").predict_batch(
        [clips[4]] * 5, [sums[4] + sums[:4].sum(axis=0), sums[5], sums[5], sums[4], None])

    pooling = profile_with(branches, tmp_path, speakers={"pool_known_speakers": True})
    pooled = BranchStage("prosody", pooling, manifest_statistics)(batch).column("prosody_probs").to_pylist()
    np.testing.assert_allclose(pooled, expected[:3], atol=1e-5)
    alone = BranchStage("prosody", profile_with(branches, tmp_path), manifest_statistics)(batch)
    alone = alone.column("prosody_probs").to_pylist()
    np.testing.assert_allclose(alone, expected[[3, 1, 4]], atol=1e-5)  # "absent": no statistics, unshifted
    assert not np.allclose(alone[0], pooled[0], atol=1e-4)
