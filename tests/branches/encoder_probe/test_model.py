"""The encoder_probe family on real speech: the real Whisper-base encoder (CTranslate2), real EmoDB clips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from ray_ser.branches.encoder_probe.model import EncoderProbePredictor, FrozenEncoder, ProbeModel, znorm_statistics
from ray_ser.branches.encoder_probe.settings import EncoderProbeTrain
from ray_ser.config import AsrConfig
from ray_ser.models.base import EncoderFeatures
from tests.conftest import real_speech_rows


@pytest.fixture(scope="module")
def clips():
    rows = real_speech_rows("emodb", speakers=2, per_speaker=4, skip=("boredom",))
    return [sf.read(r["path"], dtype="float32")[0] for r in rows], [r["speaker"] for r in rows]


@pytest.fixture(scope="module")
def settings(cache_dir):
    from ray_ser.branches.encoder_probe.model import resolve_encoder

    return resolve_encoder(EncoderProbeTrain(head="mlp", hidden=16), AsrConfig(pad_to_30s=False))


def test_the_asr_pass_hands_over_exactly_the_features_the_probe_computes(cache_dir, clips, settings):
    """Sharing the ASR's encoder pass changes nothing: the pooled states of its pass are the probe's own."""
    from ray_ser.models.asr.whisper_ct2 import WhisperCT2

    audios, _ = clips
    encoder = FrozenEncoder(settings, cache_dir)
    assert encoder.shape == (1, 1024)
    own = encoder(audios)
    transcripts, pooled = WhisperCT2.load(AsrConfig(pad_to_30s=False, language=None), cache_dir).transcribe(
        audios[::-1], pooled_states=True)
    np.testing.assert_array_equal(own[:, 0], pooled[::-1])  # bit for bit, whatever the batch
    assert {t.language for t in transcripts} == {"de"}  # EmoDB is German: detected per clip


def test_checkpoint_round_trip_speaker_profiles_and_shared_features(tmp_path, cache_dir, clips, settings):
    audios, speakers = clips
    encoder = FrozenEncoder(settings, cache_dir)
    features = encoder(audios)
    model = ProbeModel(settings, *encoder.shape)
    model.fit_statistics(features)
    stats = {s: znorm_statistics(features[[i for i, x in enumerate(speakers) if x == s]]).sum(0) for s in set(speakers)}
    model.known_speakers = stats
    torch.manual_seed(0)
    for parameter in model.head.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    model.save(tmp_path / "probe")
    manifest = json.loads((tmp_path / "probe" / "branch.json").read_text())
    assert manifest["family"] == "encoder_probe" and manifest["settings"]["base_model"] == "offline:whisper-base"

    predictor = EncoderProbePredictor.load(tmp_path / "probe", cache_dir)
    assert predictor.speaker_profiles is not None and sorted(predictor.model.known_speakers) == sorted(stats)
    plain = predictor.predict_batch(audios)
    shared = predictor.predict_batch([EncoderFeatures(f[0]) for f in features])
    np.testing.assert_allclose(plain, shared, atol=1e-6)
    np.testing.assert_allclose(plain.sum(1), 1.0, atol=1e-5)
    moved = predictor.predict_batch(audios, [stats[s] for s in speakers])
    assert not np.allclose(moved, plain, atol=1e-3)  # each speaker's own spread, not the training clips'
    np.testing.assert_allclose(predictor.feature_sums(audios), znorm_statistics(features), rtol=1e-6)
    assert predictor.predict_batch([]).shape == (0, 8)


@pytest.mark.parametrize("layers, shared", [((), True), ((1, 2, 3), False)])
def test_only_a_last_layer_probe_takes_the_asr_pass_states(tmp_path, cache_dir, clips, settings, layers, shared):
    """The ASR pass hands over its last layer only: a probe of earlier blocks must run its own encoder
    (else its head gets a [n, 1, 2d] array where it reads [n, 3, 2d]), and it runs it on real clips."""
    from ray_ser.core.branch import shares_asr_encoder
    from tests.conftest import profile_with

    probe = settings.model_copy(update={"encoder": settings.encoder.model_copy(update={"layers": layers})})
    ProbeModel(probe, max(len(layers), 1), 1024).save(tmp_path / "probe")  # whisper-base: 2 x 512
    cfg = profile_with({"probe": {"family": "encoder_probe", "checkpoint": str(tmp_path / "probe")}}, cache_dir,
                       asr={"pad_to_30s": False})
    assert shares_asr_encoder(cfg.branches["probe"], cfg) is shared
    assert not shares_asr_encoder(cfg.branches["probe"], cfg.model_copy(
        update={"asr": cfg.asr.model_copy(update={"share_encoder": False})}))
    audios, _ = clips
    probs = EncoderProbePredictor.load(tmp_path / "probe", cache_dir).predict_batch(audios[:3])
    assert probs.shape == (3, 8) and np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_mean_pooling_side_by_side_layers_round_trip(tmp_path, cache_dir, clips, settings):
    """pooling 'mean' reads only the means of the cached [mean, std] features, on the encoder's own pass
    and on the ASR's shared one alike; layer_mix 'concat' gives the head every layer apart (no learned
    mix to train), so two clips whose layers sum alike are still told apart."""
    audios, speakers = clips
    probe = settings.model_copy(update={"pooling": "mean", "layer_mix": "concat", "head": "linear"})
    encoder = FrozenEncoder(probe, cache_dir)
    features = encoder(audios)  # the full [n, 1, 1024]: what the ASR pass hands over too
    model = ProbeModel(probe, 1, 512)
    assert "layer_weights" not in dict(model.named_parameters()) and model.head[-1].in_features == 512
    model.fit_statistics(features[..., :512])
    torch.manual_seed(0)
    torch.nn.init.normal_(model.head[-1].weight, std=0.5)
    model.save(tmp_path / "probe")
    predictor = EncoderProbePredictor.load(tmp_path / "probe", cache_dir)
    assert predictor.model.settings.pooling == "mean" and predictor.model.shape == (1, 512)
    plain = predictor.predict_batch(audios)
    stds_moved = features.copy()
    stds_moved[..., 512:] += 5.0
    np.testing.assert_allclose(plain, predictor.predict_batch([EncoderFeatures(f[0]) for f in stds_moved]), atol=1e-6)
    np.testing.assert_allclose(predictor.feature_sums(audios), znorm_statistics(features[..., :512]), rtol=1e-6)

    three = ProbeModel(probe.model_copy(update={"encoder": probe.encoder.model_copy(update={"layers": (1, 2, 3)})}),
                       3, 4)
    assert three.head[-1].in_features == 12
    torch.nn.init.normal_(three.head[-1].weight, std=1.0)
    one = torch.tensor([[[1.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]])
    other = torch.tensor([[[0.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 0]]])  # the same sum over layers
    assert not torch.allclose(three.eval()(one), three(other))
