from collections import Counter

import numpy as np
import soundfile as sf

from ray_ser.labels import EMOTIONS
from ray_ser.demo.synth import CLASS_PRIOR, PROSODY, plan_corpus
from ray_ser.demo.synth_text import EMOTION_SENTENCES, HELDOUT_SPEAKERS, NEUTRAL_SENTENCES, TRAIN_SPEAKERS


def test_spec_tables():
    assert list(PROSODY) == list(EMOTIONS)
    assert PROSODY["angry"] == (42, 205, 185) and PROSODY["fear"] == (80, 225, 80)
    assert abs(sum(CLASS_PRIOR.values()) - 1.0) < 1e-9
    assert all(len(pool) >= 8 for pool in EMOTION_SENTENCES.values()) and len(NEUTRAL_SENTENCES) >= 8
    assert len(set(TRAIN_SPEAKERS) | set(HELDOUT_SPEAKERS)) >= 8


def test_plan_is_deterministic_and_follows_the_prior():
    a, b = plan_corpus(3000, seed=11), plan_corpus(3000, seed=11)
    assert a == b and a != plan_corpus(3000, seed=12)
    counts = Counter(u.emotion for u in a)
    for emotion, prior in CLASS_PRIOR.items():
        assert abs(counts[emotion] / 3000 - prior) < 0.03, emotion
    assert abs(sum(u.intensity == "weak" for u in a) / 3000 - 0.30) < 0.03
    assert len({u.speaker for u in a}) >= 8


def test_prosody_jitter_weakening_and_clamps():
    plan = plan_corpus(4000, seed=5)
    for u in plan:
        assert 0 <= u.pitch <= 99 and 80 <= u.speed <= 450 and 0 <= u.amplitude <= 200
        base, neutral = PROSODY[u.emotion], PROSODY["neutral"]
        pull = 0.5 if u.intensity == "weak" else 1.0
        for value, b, n, jitter in zip((u.pitch, u.speed, u.amplitude), base, neutral, (5, 10, 10)):
            assert abs(value - (n + pull * (b - n))) <= jitter + 0.5
    angry_normal = [u.amplitude for u in plan if u.emotion == "angry" and u.intensity == "normal"]
    angry_weak = [u.amplitude for u in plan if u.emotion == "angry" and u.intensity == "weak"]
    assert np.mean(angry_normal) > np.mean(angry_weak) + 30


def test_emotional_text_probability():
    plan = [u for u in plan_corpus(4000, seed=2) if u.emotion != "neutral"]
    emotional = sum(u.text in EMOTION_SENTENCES[u.emotion] for u in plan) / len(plan)
    assert abs(emotional - 0.6) < 0.04
    assert all(u.text in NEUTRAL_SENTENCES for u in plan_corpus(500, seed=2) if u.emotion == "neutral")


def test_splits_share_no_speaker_or_sentence():
    train, held = plan_corpus(800, 1, "train"), plan_corpus(800, 1, "heldout")
    assert not {u.speaker for u in train} & {u.speaker for u in held}
    assert not {u.text for u in train} & {u.text for u in held}


def test_rendered_audio_format(corpus, corpus_rows):
    assert [r for r in corpus_rows][0].keys() >= {"utterance_id", "path", "emotion", "intensity", "speaker", "text"}
    for row in corpus_rows[:4]:
        info = sf.info(row["path"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        audio, _ = sf.read(row["path"])
        assert 0.5 < len(audio) / 16000 < 10 and np.abs(audio).max() > 0.01


def test_a_seed_renders_the_same_audio_bytes(tmp_path):
    """The demo's figures are compared across runs, so its corpus must be bit-identical."""
    from ray_ser.demo.synth import synthesize_corpus

    first = synthesize_corpus(tmp_path / "a", n=4, seed=11)
    second = synthesize_corpus(tmp_path / "b", n=4, seed=11)
    for a, b in zip(sorted((first.parent / "wav").iterdir()), sorted((second.parent / "wav").iterdir())):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
