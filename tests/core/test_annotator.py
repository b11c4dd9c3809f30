"""The annotation core without Serve: a speaker id at the endpoint, on a real prosody checkpoint and espeak audio."""

import io

import numpy as np
import soundfile as sf

from ray_ser.config import LabelConfig
from ray_ser.labels import EMOTIONS
from ray_ser.branches.prosody.model import ProsodyEmotionModel, ProsodyPredictor
from ray_ser.branches.prosody.settings import ProsodyTrain
from ray_ser.core.annotator import Annotator
from ray_ser.core.branch import BranchRunner, Clip


def _wav(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, 16_000, format="WAV")
    return buffer.getvalue()


def test_a_training_speakers_clip_is_moved_by_that_speakers_training_profile(corpus_clips, tmp_path, demo_config):
    clips = [audio for audio, _ in corpus_clips[:6]]
    model = ProsodyEmotionModel(ProsodyTrain(speaker_normalization=True))
    model.set_reference_profile(model.functionals(clips).mean(axis=0))
    model.fit_standardization(model.clip_inputs(clips))
    known = model.feature_sums(clips[:4]).sum(axis=0)
    model.known_speakers = {"en-us+f1": known}
    model.save(tmp_path / "prosody")
    tree = demo_config.model_dump()
    tree["branches"] = {"prosody": {"family": "prosody", "checkpoint": str(tmp_path / "prosody")}}
    tree["vote"] = {"priority": ["prosody"]}
    cfg = LabelConfig.model_validate(tree)
    annotator = Annotator.load(cfg.model_copy(update={"asr": cfg.asr.model_copy(update={"enabled": False})}))
    predictor = ProsodyPredictor.load(tmp_path / "prosody")

    audio = sf.read(io.BytesIO(_wav(clips[4])), dtype="float32")[0]  # as a client would send it
    shifted, plain = predictor.predict_batch([audio] * 2, [known, None])
    assert not np.allclose(shifted, plain, atol=1e-4)
    for speaker, expected, warned in [("en-us+f1", shifted, False), (None, plain, False), ("someone", plain, True)]:
        result = annotator.annotate([Clip(audio, speaker=speaker)])[0]
        probs = result.branch_body()["prosody"]["probs"]
        np.testing.assert_allclose([probs[e] for e in EMOTIONS], expected, atol=1e-5)
        assert any("not one the branch was trained on" in w for w in result.warnings) == warned
    assert isinstance(annotator.runners["prosody"], BranchRunner)
