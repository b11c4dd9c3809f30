import numpy as np
import pytest
import torch

from ray_ser.branches.text_classifier.model import TextClassifierPredictor, TextEmotionModel, resolve_text_model
from ray_ser.branches.text_classifier.settings import TextClassifierTrain
from ray_ser.testing.tiny_models import tiny_decoder_checkpoint

TEXTS = ["I am so angry with you!", "The bus stops in front of the post office.", ""]


@pytest.fixture(scope="module")
def decoder_dir(tmp_path_factory):
    return tiny_decoder_checkpoint(tmp_path_factory.mktemp("llama"))


def test_lora_on_a_decoder_trains_only_adapters_and_the_head(decoder_dir):
    model = TextEmotionModel.from_settings(TextClassifierTrain(base_model=str(decoder_dir), finetune="lora", lora_rank=4, template="Classify the emotion of the speaker. Transcript: {text}\nEmotion:"))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "score" in n for n in trainable)


def test_checkpoint_round_trip_merges_lora_and_predicts_identically(decoder_dir, tmp_path):
    model = TextEmotionModel.from_settings(TextClassifierTrain(base_model=str(decoder_dir), finetune="lora", template="T: {text}"))
    with torch.no_grad():  # as if trained: adapters off their zero init, and the head's trained copy
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.3)
    before = TextClassifierPredictor(model).predict_batch(TEXTS)
    model.save(tmp_path / "ckpt")
    after = TextClassifierPredictor.load(tmp_path / "ckpt").predict_batch(TEXTS)
    assert after.shape == (3, 8) and np.allclose(before, after, atol=1e-5)
    assert np.allclose(after.sum(axis=1), 1, atol=1e-5)


def test_saving_mid_run_leaves_the_adapters_training(decoder_dir, tmp_path):
    """A per-epoch checkpoint must not fold the adapters away from the model still in training."""
    model = TextEmotionModel.from_settings(TextClassifierTrain(base_model=str(decoder_dir), finetune="lora", template="T: {text}"))
    trainable_before = {n for n, p in model.named_parameters() if p.requires_grad}
    model.save(tmp_path / "epoch0")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable_before
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    inputs = model.encode(TEXTS[:2])
    before = model(**inputs).detach()
    loss = torch.nn.functional.cross_entropy(model(**inputs), torch.tensor([3, 0]))
    loss.backward()
    optimizer.step()
    model.save(tmp_path / "epoch1")
    trained = TextClassifierPredictor.load(tmp_path / "epoch1").predict_batch(TEXTS[:2])
    assert not np.allclose(torch.softmax(before, -1).numpy(), trained, atol=1e-4)
    assert np.allclose(TextClassifierPredictor(model).predict_batch(TEXTS[:2]), trained, atol=1e-5)


def test_minilm_offline_and_unknown_finetune_mode(tmp_path):
    path, gguf = resolve_text_model("offline:minilm")
    assert gguf is None and path.endswith("model")
    model = TextEmotionModel.from_settings(TextClassifierTrain(base_model="offline:minilm", finetune="head", template="Classify the emotion of the speaker. Transcript: {text}\nEmotion:"))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("classifier" in n for n in trainable)
    with pytest.raises(ValueError, match="finetune"):
        TextEmotionModel.from_settings(TextClassifierTrain(base_model="offline:minilm", finetune="prefix", template="Classify the emotion of the speaker. Transcript: {text}\nEmotion:"))


@pytest.mark.slow
def test_smollm2_gguf_loads_dequantized_trains_and_saves(tmp_path):
    model = TextEmotionModel.from_settings(TextClassifierTrain(base_model="offline:smollm2", finetune="lora", template="Classify the emotion of the speaker. Transcript: {text}\nEmotion:"))
    loss = model(**model.encode(TEXTS[:2])).logsumexp(-1).sum()
    loss.backward()
    model.save(tmp_path / "ckpt")
    assert TextClassifierPredictor.load(tmp_path / "ckpt").predict_batch(TEXTS[:1]).shape == (1, 8)
