"""ClipAnnotator without Serve: a speaker id at the endpoint, on a real prosody checkpoint and espeak audio."""

import io

import numpy as np
import soundfile as sf

from ray_ser.config import LabelConfig
from ray_ser.labels import EMOTIONS
from ray_ser.models.prosody import ProsodyEmotionModel, ProsodyOptions, ProsodyPredictor
from ray_ser.serve.annotator import ClipAnnotator


def _wav(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, 16_000, format="WAV")
    return buffer.getvalue()


def test_a_training_speakers_clip_is_moved_by_that_speakers_training_profile(corpus_clips, tmp_path, demo_config):
    clips = [audio for audio, _ in corpus_clips[:6]]
    model = ProsodyEmotionModel(ProsodyOptions(speaker_normalization=True))
    model.set_reference_profile(model.functionals(clips).mean(axis=0))
    model.fit_standardization(model.clip_inputs(clips))
    known = model.feature_sums(clips[:4]).sum(axis=0)
    model.known_speakers = {"en-us+f1": known}
    model.save(tmp_path / "prosody")
    tree = demo_config.model_dump()
    tree["branches"] = {"prosody": {"family": "prosody", "checkpoint": str(tmp_path / "prosody")}}
    tree["vote"] = {"priority": ["prosody"]}
    predictor = ProsodyPredictor.load(tmp_path / "prosody")
    annotator = ClipAnnotator(LabelConfig.model_validate(tree), None, {"prosody": predictor})

    payload = _wav(clips[4])
    shifted, plain = predictor.predict_batch([clips[4]] * 2, [known, None])
    assert not np.allclose(shifted, plain, atol=1e-4)
    for speaker, expected, warned in [("en-us+f1", shifted, False), (None, plain, False), ("someone", plain, True)]:
        body = annotator.annotate(payload, speaker=speaker)
        probs = body["branches"]["prosody"]["probs"]
        np.testing.assert_allclose([probs[e] for e in EMOTIONS], expected, atol=1e-5)
        assert any("not one the branch was trained on" in w for w in body["warnings"]) == warned
