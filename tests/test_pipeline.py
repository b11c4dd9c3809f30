"""The labeling job on a real local Ray cluster, real moto S3 over HTTP, real Whisper, real Parquet."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest
import soundfile as sf

from ray_ser.evaluate import word_error_rate
from ray_ser.io.sink import read_output
from ray_ser.pipeline import run_label_job
from ray_ser.schema import output_schema
from tests.conftest import long_recording

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _mixed_corpus(root: Path, corpus_rows: list[dict], with_long: bool) -> tuple[Path, dict]:
    """Good espeak clips plus malformed inputs, in one directory with a relative-path manifest."""
    root.mkdir(parents=True, exist_ok=True)
    rows, texts = [], {}
    for r in corpus_rows:
        shutil.copy(r["path"], root / Path(r["path"]).name)
        rows.append((r["utterance_id"], Path(r["path"]).name))
        texts[r["utterance_id"]] = r["text"]
    (root / "truncated.wav").write_bytes(Path(corpus_rows[0]["path"]).read_bytes()[:30])
    (root / "text.mp3").write_text("this is not audio")
    (root / "empty.flac").write_bytes(b"")
    rows += [("truncated", "truncated.wav"), ("text", "text.mp3"), ("empty", "empty.flac"),
             ("missing", "missing.wav"), ("badslice", Path(corpus_rows[0]["path"]).name)]
    if with_long:
        sf.write(root / "long.wav", long_recording(root, 70), 16000)
        rows.append(("long", "long.wav"))
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["utterance_id", "path", "start", "end"])
        for uid, path in rows:
            writer.writerow([uid, path, "40" if uid == "badslice" else "", "41" if uid == "badslice" else ""])
    return root / "manifest.csv", texts


def _check_exactly_once(table, input_ids):
    ids = table.column("utterance_id").to_pylist()
    assert len(ids) == len(set(ids)), "duplicate utterance_id in output"
    assert set(table.column("input_id").to_pylist()) == set(input_ids)


def test_s3_to_s3_every_row_accounted_for(tmp_path, corpus_rows, demo_config, s3_endpoint):
    from ray_ser.io.storage import filesystem_for

    manifest, texts = _mixed_corpus(tmp_path / "mixed", corpus_rows, with_long=False)
    fs, _ = filesystem_for("s3://pipe/x", demo_config.storage)
    fs.create_dir("pipe")
    pafs.copy_files(str(manifest.parent), "pipe/in", destination_filesystem=fs)

    summary = run_label_job(demo_config, "s3://pipe/in/manifest.csv", "s3://pipe/out")
    table = read_output("s3://pipe/out", demo_config.storage)
    assert table.schema.equals(output_schema())
    expected = list(texts) + ["truncated", "text", "empty", "missing", "badslice"]
    _check_exactly_once(table, expected)
    assert table.num_rows == len(expected) == summary.rows_written
    rows = {r["utterance_id"]: r for r in table.to_pylist()}
    for uid in ("truncated", "text", "empty", "missing", "badslice"):
        assert rows[uid]["status"] == "error" and rows[uid]["error"].startswith("decode: "), rows[uid]
    assert "past the end" in rows["badslice"]["error"] and "empty file" in rows["empty"]["error"]
    wers = [word_error_rate(texts[u], rows[u]["transcript"]) for u in texts]
    assert np.mean(wers) < 0.25
    assert all(rows[u]["status"] == "ok" and rows[u]["source"].startswith("s3://pipe/in/") for u in texts)
    assert len(set(table.column("run_id").to_pylist())) == 1
    assert summary.rows_ok == len(texts) and summary.audio_seconds > 10


def test_branches_and_vote_on_every_decodable_row(tmp_path, corpus_rows, branch_config):
    from ray_ser.labels import EMOTIONS

    manifest, texts = _mixed_corpus(tmp_path / "mixed", corpus_rows, with_long=False)
    summary = run_label_job(branch_config, str(manifest), str(tmp_path / "out"))
    table = read_output(str(tmp_path / "out"), branch_config.storage)
    assert table.schema.equals(output_schema(("speech", "text")))
    _check_exactly_once(table, list(texts) + ["truncated", "text", "empty", "missing", "badslice"])
    assert summary.rows_written == table.num_rows and summary.rows_ok == len(texts)
    for row in table.to_pylist():
        if row["utterance_id"] in texts:
            assert row["status"] == "ok" and row["label"] in EMOTIONS and row["speech_label"] in EMOTIONS
            assert abs(sum(row["speech_probs"]) - 1) < 1e-4 and len(row["text_probs"]) == len(EMOTIONS)
            assert row["agreement"] in (0.5, 1.0) and 0 < row["confidence"] <= 1
        else:
            assert row["status"] == "error" and row["label"] is None and row["error"].startswith("decode: ")


def test_speaker_normalised_branches_get_each_speakers_statistics(tmp_path, corpus_rows, branch_config):
    """The job profiles every speaker before labeling, for each normalised branch (a speech encoder and
    a prosody network): each row's probabilities are the model's own answer given its speaker's
    statistics over all of that speaker's clips, bad rows included."""
    from ray_ser.models.features.functionals import FUNCTIONAL_DIMS
    from ray_ser.branches.prosody.model import ProsodyEmotionModel, ProsodyPredictor
    from ray_ser.branches.prosody.settings import ProsodyTrain
    from ray_ser.models.features.speaker_norm import add_statistics
    from ray_ser.branches.speech_encoder.model import SpeechEncoderPredictor

    predictor = SpeechEncoderPredictor.load(branch_config.branches["speech"].checkpoint)
    model = predictor.model.__class__(predictor.model.encoder, predictor.model.settings.model_copy(
        update={"speaker_normalization": True}))
    model.load_state_dict(predictor.model.state_dict(), strict=False)
    model.set_reference_profile(np.linspace(-0.6, 0.1, 80))
    model.save(tmp_path / "speech")
    clips = {r["utterance_id"]: sf.read(r["path"], dtype="float32")[0] for r in corpus_rows}
    prosody = ProsodyEmotionModel(ProsodyTrain(speaker_normalization=True))
    prosody.set_reference_profile(prosody.functionals(list(clips.values())).mean(0))
    prosody.fit_standardization(prosody.clip_inputs(list(clips.values())))
    prosody.save(tmp_path / "prosody")

    root = tmp_path / "in"
    root.mkdir()
    rows = [(r["utterance_id"], r["path"], r["speaker"]) for r in corpus_rows]
    (root / "broken.wav").write_bytes(b"RIFF....")
    rows += [("anonymous", corpus_rows[0]["path"], ""), ("broken", str(root / "broken.wav"), corpus_rows[1]["speaker"])]
    with open(root / "manifest.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("utterance_id", "path", "speaker"), *rows])
    resources = {"num_cpus": 0.5, "batch_size": 8}
    cfg = branch_config.model_validate({**branch_config.model_dump(), "asr": {"enabled": False},
                                        "branches": {"speech": {**branch_config.branches["speech"].model_dump(),
                                                                "checkpoint": str(tmp_path / "speech")},
                                                     "prosody": {"family": "prosody", "resources": resources,
                                                                 "checkpoint": str(tmp_path / "prosody")}},
                                        "vote": {"priority": ["speech", "prosody"]}})
    run_label_job(cfg, str(root / "manifest.csv"), str(tmp_path / "out"))
    table = read_output(str(tmp_path / "out"), cfg.storage)
    _check_exactly_once(table, [uid for uid, _, _ in rows])
    out = {r["utterance_id"]: r for r in table.to_pylist()}
    assert out["broken"]["status"] == "error" and out["anonymous"]["speaker"] is None
    assert out["anonymous"]["speaker_cluster"] and not any(out[u]["speaker_cluster"] for u in out if u != "anonymous")
    speaker_of = {r["utterance_id"]: r["speaker"] for r in corpus_rows}
    assert all(out[u]["speaker"] == speaker_of[u] for u in clips)

    for name, labelled, dims in [("speech", SpeechEncoderPredictor.load(tmp_path / "speech"), 80),
                                 ("prosody", ProsodyPredictor.load(tmp_path / "prosody"), FUNCTIONAL_DIMS)]:
        stats = add_statistics(zip(speaker_of.values(), labelled.feature_sums(list(clips.values()))))
        assert len(stats) > 1 and all(s.shape == (dims + 1,) for s in stats.values())
        expected = labelled.predict_batch(list(clips.values()), [stats[speaker_of[u]] for u in clips])
        unnormalised = labelled.predict_batch(list(clips.values()))
        got = np.array([out[u][f"{name}_probs"] for u in clips])
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=name)
        assert not np.allclose(got, unnormalised, atol=1e-4), name
        # No speaker: the speaker pass gives the clip a voice group (speakers.estimate), here a group of its
        # own, and the clip is normalised by that group's statistics.
        anonymous = clips[corpus_rows[0]["utterance_id"]]
        alone = add_statistics([("group", labelled.feature_sums([anonymous])[0])])["group"]
        np.testing.assert_allclose(out["anonymous"][f"{name}_probs"], labelled.predict_batch([anonymous], [alone])[0],
                                   atol=1e-4, err_msg=name)
        assert not np.allclose(out["anonymous"][f"{name}_probs"], unnormalised[0], atol=1e-4), name


def test_resume_after_interruption_no_duplicates_nothing_lost(tmp_path, corpus_rows, demo_config):
    manifest, texts = _mixed_corpus(tmp_path / "mixed", corpus_rows, with_long=True)
    cfg = demo_config.model_copy(update={"sink": demo_config.sink.model_copy(update={"rows_per_file": 2})})
    out = tmp_path / "out"
    first = run_label_job(cfg, str(manifest), str(out))
    complete = read_output(str(out), cfg.storage)
    segments = [r for r in complete.to_pylist() if r["input_id"] == "long"]
    assert len(segments) >= 3 and all(r["segment_count"] == len(segments) for r in segments)
    assert all(r["transcript"] for r in segments)

    # Crash damage: parts that never got written (including some of the long file's
    # segments) and a half-written temp file left behind by a killed writer.
    parts = sorted(out.glob("part-*.parquet"))
    lost = [p for p in parts[::2]]
    lost_ids = set(read_output(str(out), cfg.storage).column("utterance_id").to_pylist())
    for p in lost:
        p.unlink()
    lost_ids -= set(read_output(str(out), cfg.storage).column("utterance_id").to_pylist())
    (out / ".tmp-0123-part-crashed.parquet").write_bytes(b"PAR1\x00\x00")

    second = run_label_job(cfg, str(manifest), str(out))
    final = read_output(str(out), cfg.storage)
    _check_exactly_once(final, [r["input_id"] for r in complete.to_pylist()])
    assert final.num_rows == complete.num_rows
    assert second.rows_written == len(lost_ids) and second.already_complete > 0
    assert sorted(final.column("utterance_id").to_pylist()) == sorted(complete.column("utterance_id").to_pylist())

    third = run_label_job(cfg, str(manifest), str(out))
    assert third.rows_written == 0 and third.already_complete == first.inputs


@pytest.mark.vllm
def test_vllm_speech_llm_branches_vote_with_the_others(tmp_path, corpus_rows, branch_config, speech_llm_dir):
    """Two vLLM engines (speech-text and speech-only prompts of one checkpoint) as actor pools."""
    from ray_ser.config import LabelConfig
    from ray_ser.labels import EMOTIONS

    manifest, texts = _mixed_corpus(tmp_path / "mixed", corpus_rows[:6], with_long=False)
    sf.write(manifest.parent / "blip.wav", np.zeros(80, np.float32), 16000)  # 5 ms: no audio token fits
    with open(manifest, "a", newline="") as handle:
        csv.writer(handle).writerow(["blip", "blip.wav", "", ""])
    tree = branch_config.model_dump()
    engine = {"engine": "vllm", "dtype": "float32", "max_model_len": 1024, "max_num_seqs": 8}
    resources = {"num_cpus": 0.5, "batch_size": 4}
    tree["branches"] = {
        "speech": tree["branches"]["speech"],
        "selm": {"family": "speech_llm", "checkpoint": str(speech_llm_dir), "resources": resources, "llm": engine},
        "selm_audio": {"family": "speech_llm", "checkpoint": str(speech_llm_dir), "resources": resources,
                       "llm": {**engine, "use_transcript": False}},
    }
    tree["vote"] = {"priority": ["speech", "selm", "selm_audio"]}
    cfg = LabelConfig.model_validate(tree)
    run_label_job(cfg, str(manifest), str(tmp_path / "out"))
    table = read_output(str(tmp_path / "out"), cfg.storage)
    _check_exactly_once(table, list(texts) + ["truncated", "text", "empty", "missing", "badslice", "blip"])
    rows = {r["utterance_id"]: r for r in table.to_pylist()}
    for uid in texts:
        row = rows[uid]
        assert row["status"] == "ok" and row["label"] in EMOTIONS
        assert row["selm_label"] in EMOTIONS and row["selm_audio_label"] in EMOTIONS
        assert abs(sum(row["selm_probs"]) - 1) < 1e-4
        assert min(abs(row["agreement"] - share) for share in (1 / 3, 2 / 3, 1.0)) < 1e-6
    # The engine rejects the blip; that row keeps the speech encoder's vote and says why.
    blip = rows["blip"]
    assert blip["status"] == "ok" and blip["speech_label"] in EMOTIONS and blip["selm_label"] is None
    assert "selm: " in blip["warnings"] and "selm_audio: " in blip["warnings"]


def test_a_plan_the_cluster_can_never_hold_fails_at_once_naming_the_stages(tmp_path, corpus_rows, branch_config):
    """An ASR actor of 8 CPUs on the 4-CPU test cluster: Ray Data alone would wait forever for it."""
    import time

    from ray_ser.config import ConfigError, LabelConfig

    tree = branch_config.model_dump()
    tree["asr"]["resources"]["num_cpus"] = 8
    cfg = LabelConfig.model_validate(tree)
    manifest, _ = _mixed_corpus(tmp_path / "mixed", corpus_rows[:2], with_long=False)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"needs at least 10 CPU at once and the cluster has 4 CPU "
                                          r"\(.*asr 1 x 8 CPU, branch speech 1 x 0\.5 CPU"):
        run_label_job(cfg, str(manifest), str(tmp_path / "out"))
    assert time.monotonic() - started < 60
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("part-*"))


def test_work_holding_the_cpus_a_job_needs_is_reported_before_it_waits(branch_config, capfd):
    import time

    import ray

    from ray_ser.pipeline import check_cluster_fits, label_plan

    plans = label_plan(branch_config, "/unused", "run")  # decode 0.5 + ASR 1 + two branches 0.5 + a task 0.5
    free = ray.available_resources()["CPU"]

    @ray.remote(num_cpus=free - 1.0)
    class Holder:
        def ready(self) -> bool:
            return True

    holder = Holder.remote()
    try:
        ray.get(holder.ready.remote())
        check_cluster_fits(plans, can_grow=False)
        assert "holds what this job needs to start (3 CPU needed, 1 free): it waits" in capfd.readouterr().err
    finally:
        ray.kill(holder)
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < free and time.monotonic() < deadline:
        time.sleep(0.2)  # the killed actor's CPUs come back a moment later
    check_cluster_fits(plans, can_grow=False)
    assert "holds what" not in capfd.readouterr().err
