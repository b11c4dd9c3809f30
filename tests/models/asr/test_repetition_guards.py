"""Whisper's repetition loops on real acted speech, and the guards that end them.

Greedy decoding of a short window (the demo's clip + 2 s) repeats these clips' sentence until the
token limit ("Kids are talking by the door. Kids are talking by the door. ..."); the length bound,
the compression-ratio check and the repetition-penalty fallback (asr.* in the profile) must give the
sentence once. The clips are real RAVDESS and EmoDB recordings from the shared corpora.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import soundfile as sf

from ray_ser.evaluate import word_errors

# ../shared/data/real-speech next to the checkout (its README), or $RAY_SER_REAL_SPEECH.
REAL_SPEECH = Path(os.environ.get("RAY_SER_REAL_SPEECH",
                                  Path(__file__).resolve().parents[4] / "shared" / "data" / "real-speech"))
RAVDESS_SENTENCES = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
EMODB_SENTENCES = {"a02": "Das will sie am Mittwoch abgeben.", "a07": "In sieben Stunden wird es soweit sein.",
                   "a01": "Der Lappen liegt auf dem Eisschrank."}
# Clips that looped with the language detected per clip, before the guards (greedy, clip + 2 s window).
LOOPING = ["ravdess-03-01-01-01-01-01-01", "ravdess-03-01-01-01-02-01-09", "ravdess-03-01-08-01-01-01-09",
           "emodb-03a07Nc", "emodb-10a02Wa", "emodb-11a01Ab"]
# Every guard off: what the batched path did before them.
UNGUARDED = {"compression_ratio_threshold": None, "log_prob_threshold": None, "fallback_repetition_penalty": 1.0,
             "fallback_temperatures": (), "max_tokens_per_second": 100.0}

pytestmark = pytest.mark.skipif(not REAL_SPEECH.is_dir(),
                                reason=f"the real acted corpora are not here ({REAL_SPEECH}); see its README")


def reference(utterance_id: str) -> str:
    """RAVDESS names its statement in the file name (field 5); EmoDB its sentence code (a01 ... b10)."""
    if utterance_id.startswith("ravdess-"):
        return RAVDESS_SENTENCES[utterance_id.split("-")[5]]
    return EMODB_SENTENCES[utterance_id[-5:-2]]


@pytest.fixture(scope="module")
def looping_clips():
    rows = {}
    for corpus in ("ravdess", "emodb"):
        for row in csv.DictReader(open(REAL_SPEECH / corpus / "manifest.csv")):
            rows[row["utterance_id"]] = REAL_SPEECH / corpus / row["path"]
    return [(uid, sf.read(rows[uid], dtype="float32")[0], reference(uid)) for uid in LOOPING]


def _model(cache_dir, **options):
    from ray_ser.config import AsrConfig
    from ray_ser.models.asr.whisper_ct2 import WhisperCT2

    return WhisperCT2.load(AsrConfig(language=None, pad_to_30s=False, cpu_threads=2, **options), cache_dir)


def _loops(text: str, ref: str) -> bool:
    return len(text.split()) > 1.5 * len(ref.split())


def test_clips_that_looped_are_transcribed_once(cache_dir, looping_clips):
    audios = [audio for _, audio, _ in looping_clips]
    before = _model(cache_dir, **UNGUARDED).predict_batch(audios)
    looped = [uid for (uid, _, ref), t in zip(looping_clips, before) if _loops(t.text, ref)]
    # The clips are the ones the guards exist for: without them, (nearly) all of them loop.
    assert len(looped) >= len(LOOPING) - 1, [t.text for t in before]

    guarded = _model(cache_dir).predict_batch(audios)
    texts = {uid: t.text for (uid, _, _), t in zip(looping_clips, guarded)}
    assert not [uid for uid, _, ref in looping_clips if _loops(texts[uid], ref)], texts
    errors = [word_errors(ref, texts[uid]) for uid, _, ref in looping_clips]
    assert sum(e for e, _ in errors) / sum(n for _, n in errors) <= 0.2, texts


def test_the_length_bound_follows_the_clip(cache_dir, looping_clips):
    from ray_ser.models.asr.whisper_ct2 import _max_length

    model = _model(cache_dir, **{**UNGUARDED, "max_tokens_per_second": 3.0})
    assert model.token_budget(0.0) == 10 and model.token_budget(4.0) == 22
    assert _model(cache_dir, max_new_tokens=16).token_budget(30.0) == 16
    # CTranslate2 decodes at most min(max_length / 2, max_length - prompt) tokens.
    assert _max_length(4, 22) == 44 and _max_length(4, 224) == 448
    _, audio, _ = looping_clips[0]
    budget = model.token_budget(audio.size / 16_000)
    bounded = model.predict_batch([audio])[0].text
    unbounded = _model(cache_dir, **UNGUARDED).predict_batch([audio])[0].text
    # Every word takes at least one token: the loop stopped at the clip's budget, not at max_new_tokens.
    assert 0 < len(bounded.split()) <= budget < len(unbounded.split()), (bounded, unbounded)
    assert unbounded.startswith(bounded.rstrip(".")[:20])


def test_compression_ratio_sees_repetition():
    from ray_ser.models.asr.whisper_ct2 import compression_ratio

    once = "Kids are talking by the door."
    assert compression_ratio(once) < 2.4 < compression_ratio(" ".join([once] * 8))
    assert compression_ratio("") == 0.0


def test_the_shared_encoder_pass_decodes_under_the_guards(cache_dir, looping_clips):
    """transcribe(..., pooled_states=True), the pass the encoder_probe branch reads, runs the encoder
    once per window for both: its transcripts are the guarded ones and its states the probe's own."""
    import numpy as np

    model = _model(cache_dir)
    audios = [audio for _, audio, _ in looping_clips[:3]]
    transcripts, pooled = model.transcribe(audios, pooled_states=True)
    assert [t.text for t in transcripts] == [t.text for t in model.predict_batch(audios)]
    assert not [t.text for t, (_, _, ref) in zip(transcripts, looping_clips) if _loops(t.text, ref)]
    assert pooled.shape == (3, 2 * model.d_model)
    np.testing.assert_allclose(pooled, model.encode_pooled(audios), rtol=1e-5, atol=1e-5)
