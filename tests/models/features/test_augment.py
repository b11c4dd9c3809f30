import numpy as np
import soundfile as sf
import torch

from ray_ser.branches.speech_encoder.model import SpeechEmotionModel, SpeechEncoderPredictor
from ray_ser.branches.speech_encoder.settings import SpeechAugmentConfig, SpeechEncoderTrain
from ray_ser.models.features.augment import augment_log_mel, augment_waveforms, band_limit
from ray_ser.testing.tiny_models import tiny_encoder_checkpoint

RATE = 16_000


def _tones(*hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return sum(np.sin(2 * np.pi * f * t) for f in hz).astype(np.float32)


def _energy_at(audio: np.ndarray, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(spectrum[np.argmin(np.abs(np.fft.rfftfreq(audio.size, 1 / RATE) - hz))])


def test_band_limit_removes_only_what_lies_above_the_limit():
    mixed = _tones(300, 5000)
    limited = band_limit(mixed, 3000)
    assert _energy_at(limited, 5000) < 1e-3 * _energy_at(mixed, 5000)
    assert np.isclose(_energy_at(limited, 300), _energy_at(mixed, 300), rtol=1e-3)
    assert limited.dtype == np.float32 and limited.size == mixed.size
    assert band_limit(mixed, None) is not None and np.array_equal(band_limit(mixed, None), mixed)


def test_a_band_limited_model_cannot_hear_above_its_limit(tmp_path, corpus_rows):
    """The voice-quality shortcut is gone: clips that differ only above the limit score the same."""
    encoder = tiny_encoder_checkpoint("whisper", tmp_path / "whisper")
    model = SpeechEmotionModel.from_settings(SpeechEncoderTrain(base_model=str(encoder), finetune="full", max_frequency_hz=3500))
    speech = sf.read(corpus_rows[0]["path"], dtype="float32")[0]
    hiss = 0.05 * band_limit(np.random.default_rng(0).standard_normal(speech.size).astype(np.float32), None)
    hiss = hiss - band_limit(hiss, 4500)  # breath-like noise, all of it above 4.5 kHz
    predictor = SpeechEncoderPredictor(model)
    clean, breathy = predictor.predict_batch([speech, speech + hiss])
    assert np.allclose(clean, breathy, atol=1e-5)
    model.save(tmp_path / "ckpt")
    reloaded = SpeechEncoderPredictor.load(tmp_path / "ckpt")
    assert reloaded.model.settings.max_frequency_hz == 3500
    assert np.allclose(reloaded.predict_batch([speech + hiss])[0], clean, atol=1e-5)
    # Without the limit the same hiss does change the answer, so the check above can fail.
    full_band = SpeechEncoderPredictor(SpeechEmotionModel.from_settings(SpeechEncoderTrain(base_model=str(encoder), finetune="full")))
    plain, noisy = full_band.predict_batch([speech, speech + hiss])
    assert not np.allclose(plain, noisy, atol=1e-5)


def test_log_mel_augmentation_masks_within_the_clip_and_shifts_gain_within_bounds():
    mel = torch.linspace(-1, 1, 80 * 600).reshape(1, 80, 600).repeat(4, 1, 1)
    lengths = torch.tensor([600, 400, 200, 100])
    gain_only = augment_log_mel(mel, lengths, SpeechAugmentConfig(gain_db=6), torch.Generator().manual_seed(0))
    shifts = (gain_only - mel).flatten(1)
    assert torch.allclose(shifts.min(1).values, shifts.max(1).values, atol=1e-6)  # one gain per clip
    assert shifts.abs().max() <= 6 / 40 + 1e-6 and shifts[:, 0].unique().numel() == 4

    options = SpeechAugmentConfig(freq_masks=2, freq_mask_bins=10, time_masks=2, time_mask_frames=40)
    out = augment_log_mel(mel, lengths, options, torch.Generator().manual_seed(1))
    assert torch.equal(mel, torch.linspace(-1, 1, 80 * 600).reshape(1, 80, 600).repeat(4, 1, 1))  # input kept
    for i, length in enumerate(lengths.tolist()):
        changed = out[i] != mel[i]
        padding = changed[:, length:]
        assert padding[padding.any(dim=1)].all(dim=1).all()  # in the padding, only whole frequency bands change
        masked_frames = changed.all(dim=0).nonzero().flatten()
        assert masked_frames.numel() == 0 or int(masked_frames.max()) < length
    again = augment_log_mel(mel, lengths, options, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_waveform_augmentation_scales_and_silences_only_real_samples():
    waves = torch.ones(2, 16_000)
    mask = torch.zeros(2, 16_000, dtype=torch.long)
    mask[0], mask[1, :8000] = 1, 1
    out = augment_waveforms(waves * mask, mask, SpeechAugmentConfig(gain_db=3, time_masks=1, time_mask_frames=20),
                            torch.Generator().manual_seed(0))
    assert out[1, 8000:].abs().sum() == 0
    nonzero = out[out != 0]
    assert ((nonzero > 10 ** (-3 / 20) - 1e-6) & (nonzero < 10 ** (3 / 20) + 1e-6)).all()
    assert (out[0] == 0).sum() <= 20 * 160
