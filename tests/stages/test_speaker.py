"""The speaker-statistics stage on real batches, a real tiny checkpoint and real espeak audio."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from ray_ser.branches import parse_branch
from ray_ser.config import StorageConfig
from ray_ser.core.branch import uses_speaker_statistics
from ray_ser.io.audio import to_bytes
from ray_ser.stages.base import StageContractError
from ray_ser.stages.speaker import SpeakerStatisticsStage, add_batches
from tests.conftest import profile_with


def test_statistics_add_up_per_speaker_across_batches_and_skip_unusable_rows(branch_checkpoints, corpus_rows,
                                                                              tmp_path):
    from ray_ser.branches.speech_encoder.model import SpeechEmotionModel, SpeechEncoderPredictor

    # The pass runs for speaker-normalised checkpoints: the tiny speech branch, normalised.
    model = SpeechEncoderPredictor.load(branch_checkpoints["speech"]).model
    SpeechEmotionModel(model.encoder, model.settings.model_copy(update={"speaker_normalization": True})).save(
        tmp_path / "normalised")
    cfg = profile_with({"speech": {"family": "speech_encoder", "checkpoint": str(tmp_path / "normalised")}}, tmp_path,
                       speakers={"estimate": False})
    stage = SpeakerStatisticsStage(("speech",), cfg)
    clips = [sf.read(r["path"], dtype="float32")[0] for r in corpus_rows[:6]]
    speakers = ["a", "b", "a", "a", "b", "a"]

    def batch(lo, hi, extra_speakers=(), extra_audio=()):
        ids = [f"u{i}" for i in range(lo, hi)] + [f"x{i}" for i in range(len(extra_speakers))]
        return pa.table({"utterance_id": ids, "speaker": speakers[lo:hi] + list(extra_speakers),
                         "audio": pa.array([to_bytes(c) for c in clips[lo:hi]] + list(extra_audio), pa.large_binary())})

    first = stage(batch(0, 3, ["a", None, "b"], [b"\x01\x02", to_bytes(clips[0]), None]))
    totals = add_batches([first, stage(batch(3, 6))]).statistics
    sums = SpeechEncoderPredictor.load(tmp_path / "normalised").feature_sums(clips)
    for speaker in ("a", "b"):
        expected = sums[[i for i, s in enumerate(speakers) if s == speaker]].sum(axis=0)
        np.testing.assert_allclose(totals["speech"][speaker], expected, rtol=1e-6)
    assert set(first.column("speaker").to_pylist()) == {"a", "b"}  # one row per speaker in a batch

    with pytest.raises(StageContractError, match="speaker"):
        stage(pa.table({"utterance_id": ["u"], "audio": pa.array([to_bytes(clips[0])], pa.large_binary())}))


def test_clips_without_a_speaker_are_grouped_by_voice_and_profiled_per_group(tmp_path):
    """speakers.estimate: the pass returns each anonymous clip's voice and feature sums; the driver groups
    the clips (two actors of two corpora: two groups) and sums the statistics per group."""
    from ray_ser.branches.prosody.model import ProsodyEmotionModel
    from ray_ser.branches.prosody.settings import ProsodyTrain
    from tests.conftest import real_speech_rows

    rows = real_speech_rows("emodb", speakers=1, per_speaker=12) + real_speech_rows("ravdess", speakers=1,
                                                                                   per_speaker=12)
    clips = [sf.read(r["path"], dtype="float32")[0] for r in rows]
    model = ProsodyEmotionModel(ProsodyTrain(speaker_normalization=True))
    model.set_reference_profile(model.functionals(clips).mean(axis=0))
    model.fit_standardization(model.clip_inputs(clips))
    model.save(tmp_path / "prosody")
    cfg = profile_with({"prosody": {"family": "prosody", "checkpoint": str(tmp_path / "prosody")}}, tmp_path,
                       speakers={"max_groups": 4})
    stage = SpeakerStatisticsStage(("prosody",), cfg)
    named = ["emodb-known"] + [None] * (len(rows) - 1)
    batch = pa.table({"utterance_id": [r["utterance_id"] for r in rows], "speaker": named,
                      "audio": pa.array([to_bytes(c) for c in clips], pa.large_binary())})
    found = add_batches([stage(batch.slice(0, 10)), stage(batch.slice(10))], cfg.speakers)
    assert rows[0]["utterance_id"] not in found.clusters and len(found.clusters) == len(rows) - 1
    groups = {found.clusters[r["utterance_id"]] for r in rows[1:]}
    by_corpus = {c: {found.clusters[r["utterance_id"]] for r in rows[1:] if r["corpus"] == c} for c in ("emodb", "ravdess")}
    assert len(groups) == 2 and by_corpus["emodb"].isdisjoint(by_corpus["ravdess"])
    sums = model.feature_sums(clips)
    for group in groups:
        members = [i for i, r in enumerate(rows) if i and found.clusters[r["utterance_id"]] == group]
        np.testing.assert_allclose(found.statistics["prosody"][group], sums[members].sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(found.statistics["prosody"]["emodb-known"], sums[0], rtol=1e-6)


def test_only_a_speaker_normalised_checkpoint_asks_for_the_pass(branch_checkpoints, tmp_path):
    from ray_ser.branches.speech_encoder.model import SpeechEncoderPredictor

    model = SpeechEncoderPredictor.load(branch_checkpoints["speech"]).model
    normalised = model.__class__(model.encoder, model.settings.model_copy(update={"speaker_normalization": True}))
    normalised.save(tmp_path / "normalised")

    def branch(family, checkpoint):
        return parse_branch({"family": family, "checkpoint": checkpoint})

    assert not uses_speaker_statistics(branch("speech_encoder", branch_checkpoints["speech"]), StorageConfig())
    assert uses_speaker_statistics(branch("speech_encoder", str(tmp_path / "normalised")), StorageConfig())
    assert not uses_speaker_statistics(branch("text_classifier", branch_checkpoints["text"]), StorageConfig())
