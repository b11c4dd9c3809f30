"""The prosody branch on real espeak speech: functionals, speaker shift, checkpoint, learning."""

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch


from ray_ser.evaluate import emotion_metrics
from ray_ser.labels import NUM_CLASSES, index_of
from ray_ser.models.features.functionals import FUNCTIONAL_DIMS, N_MELS
from ray_ser.branches.prosody.model import ProsodyEmotionModel, ProsodyPredictor
from ray_ser.branches.prosody.settings import ProsodyTrain
from ray_ser.models.features.speaker_norm import add_statistics
from ray_ser.demo.synth import synthesize_corpus
from ray_ser.branches import FAMILIES, parse_branch
from ray_ser.branches.training import Example, TrainingContext
from ray_ser.config import ColumnsConfig, StorageConfig

# log-mel means and standard deviations per band, then the five energy statistics (dB): a gain
# moves these by a constant, which the speaker shift takes out; pitch and rate it leaves alone.
GAIN_SHIFTED = slice(0, 2 * N_MELS + 5)


def _statistics(model, clips):
    return add_statistics(("s", row) for row in model.feature_sums(clips))["s"]


def test_functionals_have_one_length_and_stay_finite(corpus_clips):
    clips = [audio for audio, _ in corpus_clips[:3]]
    odd = [np.zeros(0, dtype=np.float32), np.zeros(16000, dtype=np.float32), np.ones(7, dtype=np.float32)]
    model = ProsodyEmotionModel(ProsodyTrain())
    values = model.functionals(clips + odd)
    assert values.shape == (6, FUNCTIONAL_DIMS) and np.isfinite(values).all()
    assert model.functionals([]).shape == (0, FUNCTIONAL_DIMS)
    # openSMILE's eGeMAPSv02: the standard 88, finite on odd clips too.
    egemaps = ProsodyEmotionModel(ProsodyTrain(features="egemaps", speaker_normalization=True))
    values = egemaps.functionals(clips + odd[1:])
    assert values.shape == (5, 88) and np.isfinite(values).all()
    assert egemaps.clip_inputs(clips)[0].shape == (176,)  # moved and raw


def test_a_speakers_loudness_stops_mattering_in_the_moved_half(corpus_clips):
    model = ProsodyEmotionModel(ProsodyTrain(speaker_normalization=True))
    model.set_reference_profile(np.linspace(-3, 3, FUNCTIONAL_DIMS))
    clips = [audio for audio, _ in corpus_clips[:4]]
    quiet = [0.5 * audio for audio in clips]
    loud_in = model.clip_inputs(clips, [_statistics(model, clips)] * 4)
    quiet_in = model.clip_inputs(quiet, [_statistics(model, quiet)] * 4)
    for loud, soft in zip(loud_in, quiet_in):
        assert loud.shape == (2 * FUNCTIONAL_DIMS,)
        torch.testing.assert_close(loud[GAIN_SHIFTED], soft[GAIN_SHIFTED], atol=1e-3, rtol=0)
        raw = slice(FUNCTIONAL_DIMS, FUNCTIONAL_DIMS + GAIN_SHIFTED.stop)
        assert (loud[raw] - soft[raw]).abs().max() > 1.0  # 6 dB in the raw half: the speaker's level stays


def test_checkpoint_round_trip_and_speaker_statistics_change_the_answer(corpus_clips, tmp_path):
    clips = [audio for audio, _ in corpus_clips[:4]]
    model = ProsodyEmotionModel(ProsodyTrain(speaker_normalization=True))
    model.set_reference_profile(np.linspace(-3, 3, FUNCTIONAL_DIMS))
    model.fit_standardization(model.clip_inputs(clips))
    model.save(tmp_path / "plain")
    assert ProsodyPredictor.load(tmp_path / "plain").model.known_speakers == {}
    model.known_speakers = {"en-us+f1": _statistics(model, clips[:2]), "en-us+m3": _statistics(model, clips[2:])}
    model.save(tmp_path / "branch")
    predictor = ProsodyPredictor.load(tmp_path / "branch")
    assert predictor.speaker_profiles is not None
    assert sorted(predictor.model.known_speakers) == ["en-us+f1", "en-us+m3"]
    for name, stats in model.known_speakers.items():
        np.testing.assert_array_equal(predictor.model.known_speakers[name], stats)
    torch.testing.assert_close(predictor.model.input_scale, model.input_scale)
    with torch.inference_mode():
        expected = torch.softmax(model.eval()(**model.prepare(clips)), -1).numpy()
    plain = predictor.predict_batch(clips)
    np.testing.assert_allclose(plain, expected, atol=1e-6)
    np.testing.assert_allclose(plain.sum(1), 1.0, atol=1e-5)
    shifted = predictor.predict_batch(clips, [_statistics(model, clips)] * 4)
    assert not np.allclose(shifted, plain, atol=1e-4)
    assert predictor.predict_batch([]).shape == (0, NUM_CLASSES)
    (tmp_path / "branch" / "branch.json").write_text('{"family": "speech_encoder", "format_version": 1, "settings": {}}')
    with pytest.raises(ValueError, match="'speech_encoder' checkpoint, not 'prosody'"):
        ProsodyPredictor.load(tmp_path / "branch")


def test_prosody_config_defaults_and_speaker_normalisation_elsewhere_is_refused():
    branch = parse_branch({"family": "prosody", "train": {"speaker_normalization": True}})
    assert branch.train.base_model is None and "finetune" not in branch.train.model_fields
    with pytest.raises(ValueError, match="base_model is required"):
        parse_branch({"family": "text_classifier", "train": {}})
    with pytest.raises(ValueError, match=r"text_classifier\.train\.speaker_normalization"):
        parse_branch({"family": "text_classifier", "train": {"base_model": "x", "speaker_normalization": True}})


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory):
    """Training speakers, and unseen speakers saying unseen sentences."""
    def load(n, seed, split):
        manifest = synthesize_corpus(tmp_path_factory.mktemp(f"pros{seed}"), n=n, seed=seed, split=split)
        return [Example((sf.read(r["path"], dtype="float32")[0], r["speaker"]), index_of(r["emotion"]))
                for r in csv.DictReader(open(manifest))]

    return load(320, 41, "train"), load(160, 42, "heldout")


def _fit(train_examples, normalise: bool, epochs: int = 40):
    """The family's own preparation and batches, in one process: what each Ray Train worker runs."""
    family = FAMILIES.get("prosody").training()
    train = parse_branch({"family": "prosody", "train": {
        "speaker_normalization": normalise, "epochs": epochs}}).train
    torch.manual_seed(0)
    model = family.build(train, TrainingContext(StorageConfig(), Path("."), ColumnsConfig()))
    shard, _ = family.prepare_examples(model, train_examples, train_examples, [], train)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        model.train()
        for batch in np.array_split(rng.permutation(len(shard)), len(shard) // 32):
            inputs = family.inputs(model, [shard[i].input for i in batch])
            loss = torch.nn.functional.cross_entropy(model(**inputs), torch.tensor([shard[i].label for i in batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def _macro_f1(model, examples, normalise):
    audios = [e.input[0] for e in examples]
    stats = add_statistics(zip([e.input[1] for e in examples], model.feature_sums(audios))) if normalise else {}
    probs = ProsodyPredictor(model).predict_batch(audios, [stats.get(e.input[1]) for e in examples])
    return emotion_metrics([e.label for e in examples], probs.argmax(1).tolist(), NUM_CLASSES)["macro_f1"]


def test_it_learns_prosody_that_carries_over_to_unseen_speakers(two_corpora):
    # 0.64-0.69 over three seeds (chance is 0.125). At this size speaker normalisation is within
    # seed noise of the raw features (0.65-0.68); its gain shows at the demo's size (issue 3's note).
    train_examples, unseen = two_corpora
    assert _macro_f1(_fit(train_examples, True), unseen, True) > 0.45
