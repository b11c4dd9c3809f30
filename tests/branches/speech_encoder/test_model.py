import numpy as np
import pytest
import soundfile as sf
import torch

from ray_ser.branches.speech_encoder.model import SpeechEmotionModel, SpeechEncoderPredictor, collate_waveforms
from ray_ser.branches.speech_encoder.settings import SpeechEncoderTrain
from ray_ser.testing.tiny_models import tiny_encoder_checkpoint


@pytest.mark.parametrize("family", ["wavlm", "hubert", "wav2vec2", "whisper"])
def test_families_load_through_automodel_and_predict_distributions(tmp_path, family, corpus_rows):
    encoder_dir = tiny_encoder_checkpoint(family, tmp_path / family)
    model = SpeechEmotionModel.from_settings(SpeechEncoderTrain(base_model=str(encoder_dir), finetune="frozen"))
    audios = [sf.read(r["path"], dtype="float32")[0] for r in corpus_rows[:3]]
    probs = SpeechEncoderPredictor(model).predict_batch(audios)
    assert probs.shape == (3, 8) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def _trainable_encoder_params(model):
    return [n for n, p in model.named_parameters() if p.requires_grad and n.startswith("encoder.")]


def test_finetune_modes_choose_what_trains(tmp_path):
    encoder_dir = tiny_encoder_checkpoint("wavlm", tmp_path / "enc")
    frozen = SpeechEmotionModel.from_settings(SpeechEncoderTrain(base_model=str(encoder_dir), finetune="frozen"))
    assert _trainable_encoder_params(frozen) == []
    lora = SpeechEmotionModel.from_settings(SpeechEncoderTrain(base_model=str(encoder_dir), finetune="lora", lora_rank=4))
    lora_names = _trainable_encoder_params(lora)
    assert lora_names and all("lora_" in n for n in lora_names)
    full = SpeechEmotionModel.from_settings(SpeechEncoderTrain(base_model=str(encoder_dir), finetune="full"))
    names = _trainable_encoder_params(full)
    assert any("encoder.layers" in n for n in names) and not any("feature_extractor" in n for n in names)


def test_padding_does_not_change_a_prediction(tmp_path, corpus_rows):
    model = SpeechEmotionModel.from_settings(SpeechEncoderTrain(base_model=str(tiny_encoder_checkpoint("wavlm", tmp_path / "e")), finetune="frozen"))
    predictor = SpeechEncoderPredictor(model)
    short, long = (sf.read(r["path"], dtype="float32")[0] for r in corpus_rows[:2])
    alone = predictor.predict_batch([short])[0]
    padded = predictor.predict_batch([short, long])[0]
    assert np.allclose(alone, padded, atol=1e-4)


def test_lora_checkpoint_roundtrip(tmp_path, corpus_rows):
    encoder_dir = tiny_encoder_checkpoint("hubert", tmp_path / "enc")
    model = SpeechEmotionModel.from_settings(SpeechEncoderTrain(base_model=str(encoder_dir), finetune="lora", lora_rank=4))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a trained adapter, so merging changes the encoder
    model.eval()
    audios = [sf.read(r["path"], dtype="float32")[0] for r in corpus_rows[:2]]
    before = SpeechEncoderPredictor(model).predict_batch(audios)
    model.save(tmp_path / "ckpt")
    after = SpeechEncoderPredictor.load(tmp_path / "ckpt").predict_batch(audios)
    assert np.allclose(before, after, atol=1e-4)


def test_collate_masks_and_normalises():
    waves, mask = collate_waveforms([np.ones(1000, np.float32) * 3, np.arange(500, dtype=np.float32)])
    assert waves.shape == (2, 1000) and mask[1].sum() == 500 and waves[1, 500:].abs().sum() == 0


def test_whisper_encoder_reads_log_mel_and_round_trips_through_a_checkpoint(tmp_path, corpus_rows):
    encoder_dir = tiny_encoder_checkpoint("whisper", tmp_path / "whisper")
    model = SpeechEmotionModel.from_settings(SpeechEncoderTrain(base_model=str(encoder_dir), finetune="full")).eval()
    audios = [sf.read(r["path"], dtype="float32")[0] for r in corpus_rows[:2]]
    inputs = model.prepare(audios)
    assert inputs["inputs"].shape[:2] == (2, 80) and inputs["mask"].shape == (2, inputs["inputs"].shape[2] // 2)
    model.save(tmp_path / "ckpt")
    with torch.inference_mode():
        before = torch.softmax(model(**inputs), -1).numpy()
    after = SpeechEncoderPredictor.load(tmp_path / "ckpt").predict_batch(audios)
    assert np.allclose(before, after, atol=1e-6)


def test_tiny_random_alias_builds_once_in_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_SER_CACHE", str(tmp_path))
    model = SpeechEmotionModel.from_settings(SpeechEncoderTrain(base_model="tiny-random:hubert", finetune="frozen"))
    assert (tmp_path / "tiny-random" / "hubert" / "config.json").exists()
    assert model.encoder.config.model_type == "hubert"
