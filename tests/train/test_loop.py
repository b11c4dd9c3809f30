"""Ray Train with 2 CPU workers on a real local Ray cluster (DDP over gloo), for each family."""

import numpy as np
import pytest

from ray_ser.config import StorageConfig
from ray_ser.core.branch import load_predictor
from ray_ser.train.loop import fit_branch
from tests.conftest import profile_with

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _branch(family, base_model, **train):
    return {"family": family, "train": {
        "base_model": base_model, "epochs": 2, "batch_size": 4, "val_fraction": 0.3, "num_workers": 2, **train}}


def _fit(name, branch, manifest, output, storage=None, cache_dir=None):
    """fit_branch on a profile holding just this branch; (profile, result)."""
    cfg = profile_with({name: branch}, cache_dir, **({"storage": storage.model_dump()} if storage else {}))
    return cfg, fit_branch(cfg, name, str(manifest), str(output))


def _trained(cfg, name, result):
    """The predictor of the checkpoint a run produced, loaded the way labeling loads it."""
    return load_predictor(cfg.branch(name).model_copy(update={"checkpoint": result.checkpoint}), cfg)


def test_speech_branch_two_workers_report_and_keep_the_best_checkpoint(tmp_path, corpus, corpus_rows):
    import soundfile as sf

    from ray_ser.testing.tiny_models import tiny_encoder_checkpoint

    encoder = tiny_encoder_checkpoint("wavlm", tmp_path / "enc")
    # Augmented and band-limited like the demo's branch; only improving epochs (and the last) are written.
    branch = _branch("speech_encoder", str(encoder), finetune="full", epochs=3, max_frequency_hz=4000,
                     augment={"gain_db": 3, "freq_masks": 2, "time_masks": 2})
    cfg, result = _fit("speech", branch, corpus, tmp_path / "runs")
    assert [h["epoch"] for h in result.history] == [0, 1, 2]
    assert all({"train_loss", "val_macro_f1", "val_uar", "val_accuracy"} <= set(h) for h in result.history)
    assert result.best["val_macro_f1"] == max(h["val_macro_f1"] for h in result.history)
    predictor = _trained(cfg, "speech", result)
    assert predictor.model.settings.max_frequency_hz == 4000  # inference hears the band training heard
    assert predictor.predict_batch([sf.read(corpus_rows[0]["path"], dtype="float32")[0]]).shape == (1, 8)


def test_speaker_normalised_branch_keeps_the_training_speakers_reference(tmp_path, corpus):
    from ray_ser.models.features.speaker_norm import add_statistics, reference_profile
    from ray_ser.testing.tiny_models import tiny_encoder_checkpoint
    from ray_ser.io.labelled import load_audio, read_labelled_manifest
    from ray_ser.train.data import split_rows

    encoder = tiny_encoder_checkpoint("whisper", tmp_path / "enc")
    branch = _branch("speech_encoder", str(encoder), finetune="full", epochs=1, max_seconds=6,
                     max_frequency_hz=4000, speaker_normalization=True)
    cfg, result = _fit("speech", branch, corpus, tmp_path / "runs")
    predictor = _trained(cfg, "speech", result)
    assert predictor.speaker_profiles is not None

    # The reference is the mean profile of the training split's speakers, every worker agreeing.
    train_rows, _ = split_rows(read_labelled_manifest(str(corpus), StorageConfig(), cfg.columns, cfg.labels), 0.3)
    sums = predictor.feature_sums(load_audio(train_rows, StorageConfig()))
    expected = reference_profile(add_statistics(zip([r.speaker for r in train_rows], sums)))
    assert len({r.speaker for r in train_rows}) > 1
    np.testing.assert_allclose(predictor.model.reference_profile.numpy(), expected, atol=1e-4)
    known = predictor.model.known_speakers  # kept for speakers.pool_known_speakers
    assert sorted(known) == sorted({r.speaker for r in train_rows})
    np.testing.assert_allclose(np.sum(list(known.values()), axis=0), sums.sum(axis=0), rtol=1e-5)


def test_speaker_normalisation_without_speakers_is_a_clear_error(tmp_path, corpus):
    import csv

    from ray_ser.testing.tiny_models import tiny_encoder_checkpoint

    rows = list(csv.DictReader(open(corpus)))
    manifest = tmp_path / "no_speakers.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["utterance_id", "path", "emotion"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    encoder = tiny_encoder_checkpoint("whisper", tmp_path / "enc")
    branch = _branch("speech_encoder", str(encoder), finetune="full", epochs=1, speaker_normalization=True)
    with pytest.raises(Exception, match="speaker normalisation needs speakers"):
        _fit("speech", branch, manifest, tmp_path / "runs")


def test_text_branch_with_lora_on_a_decoder_lm_checkpoints_to_s3(tmp_path, corpus, demo_config):
    from ray_ser.io.storage import localize_directory
    from ray_ser.testing.tiny_models import tiny_decoder_checkpoint

    decoder = tiny_decoder_checkpoint(tmp_path / "llm")
    branch = _branch("text_classifier", str(decoder), finetune="lora", template="Text: {text}\nEmotion:")
    cfg, result = _fit("text", branch, corpus, "s3://train-ckpt/runs", demo_config.storage, tmp_path / "cache")
    assert result.checkpoint.startswith("s3://train-ckpt/runs/text/") and result.checkpoint.endswith("/branch")
    local = localize_directory(result.checkpoint, demo_config.storage, tmp_path / "cache")
    assert (local / "branch.json").exists()
    probs = _trained(cfg, "text", result).predict_batch(["I am furious!", "Hello"])
    assert probs.shape == (2, 8) and abs(probs.sum(axis=1) - 1).max() < 1e-5


def test_speech_llm_lora_under_ray_train_then_few_shot_adaptation(tmp_path, corpus, corpus_clips, demo_config,
                                                                  speech_llm_dir):
    """SELM's objective with 2 DDP workers, then `ray-ser adapt`'s quick LoRA run on k shots."""
    import numpy as np

    from ray_ser.branches.speech_llm.engines import SpeechLLMPredictor
    from ray_ser.branches.speech_llm.settings import SpeechLLMConfig
    from ray_ser.config import LabelConfig
    from ray_ser.train.loop import adapt_branch

    branch = _branch("speech_llm", str(speech_llm_dir), finetune="lora", lora_rank=4, learning_rate=5e-3)
    _, result = _fit("selm", branch, corpus, tmp_path / "runs")
    assert [h["epoch"] for h in result.history] == [0, 1] and np.isfinite(result.history[-1]["train_loss"])
    settings = SpeechLLMConfig(engine="transformers")
    base = SpeechLLMPredictor.load(result.checkpoint, settings).predict_batch(corpus_clips[:3])
    assert base.shape == (3, 8) and np.allclose(base.sum(axis=1), 1, atol=1e-5)

    tree = demo_config.model_dump()
    tree["branches"] = {"selm": {**branch, "checkpoint": result.checkpoint,
                                 "few_shot": {"manifest": str(corpus), "k": 4, "epochs": 2}}}
    tree["vote"] = {"priority": ["selm"]}
    adapted = adapt_branch(LabelConfig.model_validate(tree), "selm", str(tmp_path / "adapted"))
    assert len(adapted.history) == 2 and adapted.checkpoint.startswith(str(tmp_path / "adapted"))
    after = SpeechLLMPredictor.load(adapted.checkpoint, settings).predict_batch(corpus_clips[:3])
    assert not np.allclose(after, base, atol=1e-4)  # the adapter moved the merged weights


def test_prosody_branch_workers_agree_on_the_reference_and_standardisation(tmp_path, corpus):
    """Every rank computes the functionals of the whole training split, so the reference profile
    and the input standardisation in the checkpoint are the training split's, whoever wrote it."""
    from ray_ser.io.labelled import load_audio, read_labelled_manifest
    from ray_ser.models.features.speaker_norm import add_statistics, reference_profile
    from ray_ser.train.data import split_rows

    branch = {"family": "prosody", "train": {
        "epochs": 3, "batch_size": 4, "val_fraction": 0.3, "num_workers": 2, "speaker_normalization": True}}
    cfg, result = _fit("prosody", branch, corpus, tmp_path / "runs")
    assert [h["epoch"] for h in result.history] == [0, 1, 2]
    predictor = _trained(cfg, "prosody", result)
    assert predictor.speaker_profiles is not None

    train_rows, _ = split_rows(read_labelled_manifest(str(corpus), StorageConfig(), cfg.columns, cfg.labels), 0.3)
    audios = load_audio(train_rows, StorageConfig())
    model = predictor.model
    stats = add_statistics(zip([r.speaker for r in train_rows], model.feature_sums(audios)))
    np.testing.assert_allclose(model.reference_profile.numpy(), reference_profile(stats), rtol=1e-5, atol=1e-4)
    assert sorted(model.known_speakers) == sorted(stats)
    for speaker, expected in stats.items():
        np.testing.assert_allclose(model.known_speakers[speaker], expected, rtol=1e-5, atol=1e-4)
    inputs = np.stack(model.clip_inputs(audios, [stats[r.speaker] for r in train_rows]))
    np.testing.assert_allclose(model.input_mean.numpy(), inputs.mean(0), rtol=1e-4, atol=1e-3)
    assert predictor.predict_batch(audios[:2], [stats[r.speaker] for r in train_rows[:2]]).shape == (2, 8)


def test_branches_train_side_by_side_as_far_as_the_cpus_allow(tmp_path, corpus):
    """fit_branches starts each trainer when the cluster's free CPUs hold its workers: two 2-worker
    branches that each take half the free CPUs overlap, a third waits for one to end. (Sized from
    the CPUs free now: actors of earlier tests in the session may still hold some.)"""
    import ray

    from ray_ser.train.loop import fit_branches

    per_worker = float(ray.available_resources().get("CPU", 0.0)) / 4
    assert per_worker > 0.1, ray.available_resources()

    def prosody(seed):
        return {"family": "prosody", "train": {
            "epochs": 2, "batch_size": 4, "val_fraction": 0.3, "num_workers": 2, "seed": seed,
            "cpus_per_worker": per_worker}}

    cfg = profile_with({"a": prosody(0), "b": prosody(1), "c": prosody(2)})
    results = fit_branches(cfg, ["a", "b", "c"], str(corpus), str(tmp_path / "runs"))
    assert list(results) == ["a", "b", "c"]
    spans = {n: (r.started_at, r.started_at + r.wall_seconds) for n, r in results.items()}
    assert spans["a"][0] < spans["b"][1] and spans["b"][0] < spans["a"][1]  # a and b overlapped
    assert spans["c"][0] >= min(spans["a"][1], spans["b"][1]) - 1.0  # c waited for a free pair of CPUs
    for name, result in results.items():
        assert len(result.history) == 2 and f"/runs/{name}/" in result.checkpoint
        assert _trained(cfg, name, result).predict_batch([np.zeros(16000, dtype=np.float32)]).shape == (1, 8)
