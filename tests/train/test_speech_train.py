"""Ray Train with 2 CPU workers on a real local Ray cluster (DDP over gloo)."""

import pytest

from ray_ser.config import StorageConfig
from ray_ser.models.speech_encoder import SpeechEncoderPredictor, tiny_encoder_checkpoint
from ray_ser.train.speech import SpeechTrainSpec, train_speech_branch

pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_two_workers_train_report_and_keep_the_best_checkpoint(tmp_path, corpus, corpus_rows):
    import soundfile as sf

    encoder = tiny_encoder_checkpoint("wavlm", tmp_path / "enc")
    spec = SpeechTrainSpec(manifest=str(corpus), encoder=str(encoder), epochs=2, batch_size=4, val_fraction=0.3)
    path, best, history = train_speech_branch(spec, StorageConfig(), str(tmp_path / "runs"), "speech", num_workers=2)
    assert [h["epoch"] for h in history] == [0, 1]
    assert all({"train_loss", "val_macro_f1", "val_uar", "val_accuracy"} <= set(h) for h in history)
    assert best["val_macro_f1"] == max(h["val_macro_f1"] for h in history)
    probs = SpeechEncoderPredictor.load(path).predict_batch([sf.read(corpus_rows[0]["path"], dtype="float32")[0]])
    assert probs.shape == (1, 8)
