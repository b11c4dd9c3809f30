"""Speaker-level normalisation on a real tiny Whisper encoder and real espeak clips."""

import numpy as np
import pytest
import torch

from ray_ser.models.features.speaker_norm import add_statistics, profile_of, reference_profile
from ray_ser.branches.speech_encoder.model import SpeechEmotionModel, SpeechEncoderPredictor
from ray_ser.branches.speech_encoder.settings import SpeechEncoderTrain
from ray_ser.testing.tiny_models import tiny_encoder_checkpoint


@pytest.fixture(scope="module")
def whisper_encoder(tmp_path_factory):
    return tiny_encoder_checkpoint("whisper", tmp_path_factory.mktemp("enc") / "whisper")


def _model(encoder, normalize: bool) -> SpeechEmotionModel:
    return SpeechEmotionModel.from_settings(SpeechEncoderTrain(base_model=str(encoder), max_seconds=6, max_frequency_hz=4000, speaker_normalization=normalize, finetune="frozen")).eval()


def _valid(prepared, clips_frames):
    mel = prepared["inputs"]
    return [mel[i, :, :n] for i, n in enumerate(clips_frames)]


def _statistics(model, clips):
    return add_statistics(("s", row) for row in model.feature_sums(clips))["s"]


def test_a_speakers_loudness_and_colour_stop_mattering(whisper_encoder, corpus_clips):
    """The same voice 6 dB quieter gives the same normalised features, as long as every clip of it is."""
    model = _model(whisper_encoder, normalize=True)
    model.set_reference_profile(np.linspace(-0.5, 0.2, 80))
    clips = [audio for audio, _ in corpus_clips[:4]]
    quiet = [0.5 * audio for audio in clips]
    frames = [a.size // 160 for a in clips]
    loud_in = model.prepare(clips, speakers=[_statistics(model, clips)] * 4)
    quiet_in = model.prepare(quiet, speakers=[_statistics(model, quiet)] * 4)
    for a, b in zip(_valid(loud_in, frames), _valid(quiet_in, frames)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)

    plain = _model(whisper_encoder, normalize=False)
    gaps = [(a - b).abs().mean().item()
            for a, b in zip(_valid(plain.prepare(clips), frames), _valid(plain.prepare(quiet), frames))]
    assert min(gaps) > 0.1  # without it, 6 dB moves every frame (0.15 on Whisper's scale)


def test_the_speaker_profile_lands_on_the_reference(whisper_encoder, corpus_clips):
    model = _model(whisper_encoder, normalize=True)
    reference = np.linspace(-0.5, 0.2, 80).astype(np.float32)
    model.set_reference_profile(reference)
    clips = [audio for audio, _ in corpus_clips[:5]]
    normalised = model.prepare(clips, speakers=[_statistics(model, clips)] * 5)["inputs"]
    frames = torch.tensor([a.size // 160 for a in clips])
    from ray_ser.models.features.speaker_norm import sum_frames

    after = profile_of(sum_frames(normalised, frames).sum(axis=0))
    np.testing.assert_allclose(after, reference, atol=1e-4)


def test_a_clip_without_a_speaker_is_not_shifted(whisper_encoder, corpus_clips):
    model = _model(whisper_encoder, normalize=True)
    model.set_reference_profile(np.full(80, 0.3))
    plain = _model(whisper_encoder, normalize=False)
    clips = [corpus_clips[0][0], corpus_clips[1][0]]
    mixed = model.prepare(clips, speakers=[None, _statistics(model, clips[1:])])["inputs"]
    torch.testing.assert_close(mixed[0], plain.prepare(clips[:1])["inputs"][0])
    assert not torch.allclose(mixed[1], plain.prepare(clips[1:])["inputs"][0])


def test_checkpoint_keeps_the_reference_and_the_predictor_takes_statistics(whisper_encoder, corpus_clips, tmp_path):
    model = _model(whisper_encoder, normalize=True)
    clips = [audio for audio, _ in corpus_clips[:3]]
    stats = {"a": _statistics(model, clips[:2]), "b": _statistics(model, clips[2:])}
    model.set_reference_profile(reference_profile(stats))
    model.save(tmp_path / "branch")
    predictor = SpeechEncoderPredictor.load(tmp_path / "branch")
    assert predictor.speaker_profiles is not None
    torch.testing.assert_close(predictor.model.reference_profile, model.reference_profile)
    with_speakers = predictor.predict_batch(clips, [stats["a"], stats["a"], stats["b"]])
    without = predictor.predict_batch(clips)
    assert with_speakers.shape == without.shape == (3, 8)
    assert not np.allclose(with_speakers, without, atol=1e-6)


def test_waveform_encoders_refuse_speaker_normalisation(tmp_path):
    encoder = tiny_encoder_checkpoint("wavlm", tmp_path / "wavlm")
    with pytest.raises(ValueError, match="Whisper encoder"):
        SpeechEmotionModel.from_settings(SpeechEncoderTrain(base_model=str(encoder), speaker_normalization=True, finetune="frozen"))


def test_cropped_clip_inputs_rebuild_the_extractors_padded_log_mel(whisper_encoder, corpus_clips):
    """Training keeps each clip's log-mel without its padding; the batch must be what inference sees."""
    model = _model(whisper_encoder, normalize=False)
    clips = [audio for audio, _ in corpus_clips[:4]] + [np.zeros(80, np.float32), np.ones(16_000 * 7, np.float32)]
    padded, _ = model._log_mel(clips)
    kept = model.clip_inputs(clips)
    assert max(c.mel.shape[-1] for c in kept[:4]) < padded.shape[-1]  # the padding is not stored
    torch.testing.assert_close(model.collate(kept)["inputs"], padded, atol=0, rtol=0)
