"""Real human speech end to end, on a few speakers of EmoDB (German) and RAVDESS (English): `ray-ser train`'s
code trains the encoder_probe family (the real Whisper-base encoder, frozen) and a prosody branch under Ray
Train on the union of two manifests, holds speakers out and fits the fusion on them, trains the branches again
on every speaker (fusion.refit), then the labeling job labels other speakers' FLAC clips with the languages
detected per clip. Skips where the corpora are absent."""

from __future__ import annotations

import json

import pytest

from tests.conftest import profile_with, real_speech_rows, write_manifest

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _split(rows, test_speakers):
    return [r for r in rows if r["speaker"] not in test_speakers], [r for r in rows if r["speaker"] in test_speakers]


def test_train_the_real_speech_branches_and_fusion_then_label_real_flac(tmp_path, cache_dir):
    from ray_ser.io.sink import read_output
    from ray_ser.labels import map_label
    from ray_ser.pipeline import run_label_job
    from ray_ser.train.loop import train_branches

    emodb = real_speech_rows("emodb", speakers=4, per_speaker=8)       # boredom included: a rule drops it
    ravdess = real_speech_rows("ravdess", speakers=4, per_speaker=8)   # calm included: a rule maps it
    emodb_train, emodb_test = _split(emodb, {"emodb-11"})
    ravdess_train, ravdess_test = _split(ravdess, {"ravdess-04"})
    manifests = [str(write_manifest(emodb_train, tmp_path / "emodb.csv")),
                 str(write_manifest(ravdess_train, tmp_path / "ravdess.csv"))]
    small = {"epochs": 3, "batch_size": 8, "num_workers": 2, "cpus_per_worker": 0.5, "val_fraction": 0.2}
    cfg = profile_with({
        "whisper": {"family": "encoder_probe", "resources": {"num_cpus": 0.5},
                    "train": {"base_model": "asr", "encoder": {"layers": [2]}, "head": "linear", **small}},
        "prosody": {"family": "prosody", "resources": {"num_cpus": 0.5},
                    "train": {"speaker_normalization": True, **small}},
    }, cache_dir, asr={"language": None, "pad_to_30s": False},
        fusion={"method": "weights", "holdout_speakers": 0.3, "refit": True}, ray={"progress_bars": False})

    summary = train_branches(cfg, manifests, str(tmp_path / "ckpt"))
    assert set(summary.branches) == {"whisper", "prosody"}
    assert all(len(r.history) == 3 for r in summary.branches.values())
    fusion = summary.fusion
    assert fusion is not None and fusion.fusion.method == "weights" and len(fusion.fusion.weights) == 2
    saved = json.loads(open(fusion.path).read())  # the fusion's save/load round trip
    assert saved["branches"] == ["whisper", "prosody"] and saved["fitted_on"]["rows"] > 0
    # fusion.refit: the fusion was fitted on held-out speakers, then the branches trained again on every
    # speaker, held-out ones included (every training row the label rules keep).
    kept = sum(map_label(r["emotion"], r["corpus"], cfg.labels.rules, list(cfg.labels.classes)) is not None
               for r in emodb_train + ravdess_train)
    assert saved["fitted_on"]["rows"] < kept
    assert saved["fitted_on"]["refit"] == str(tmp_path / "ckpt" / "all-speakers")  # fusion.json says so
    for result in summary.branches.values():
        assert "/all-speakers/" in result.checkpoint
        assert result.best["train_rows"] + result.best["val_rows"] == kept
    assert {"fusion", "vote", "whisper", "prosody"} <= set(fusion.scores)
    overrides = summary.overrides()
    assert any(o.startswith("fusion.checkpoint=") for o in overrides)

    trained = profile_with({
        name: {**branch, "checkpoint": summary.branches[name].checkpoint}
        for name, branch in cfg.model_dump(mode="json")["branches"].items()},
        cache_dir, asr={"language": None, "pad_to_30s": False},
        fusion={"method": "weights", "checkpoint": fusion.path}, ray={"progress_bars": False})
    tests = emodb_test + ravdess_test
    run_label_job(trained, str(write_manifest(tests, tmp_path / "test.csv")), str(tmp_path / "labels"))
    rows = {r["input_id"]: r for r in read_output(str(tmp_path / "labels"), trained.storage).to_pylist()}
    assert sorted(rows) == sorted(r["utterance_id"] for r in tests)  # every clip exactly once
    for clip in tests:
        row = rows[clip["utterance_id"]]
        assert row["status"] == "ok", row["error"]
        assert row["language"] == {"emodb": "de", "ravdess": "en"}[clip["corpus"]]  # detected per clip
        assert row["label"] in trained.labels.classes and row["vote_label"] in trained.labels.classes
        assert abs(sum(row["probs"]) - 1) < 1e-4 and row["whisper_label"] and row["prosody_label"]
        assert row["speaker"] == clip["speaker"] and row["speaker_cluster"] is None
