"""speech_encoder: a pretrained (or random) audio encoder, a learned layer mix and attentive statistics pooling."""

from __future__ import annotations

from ray_ser.branches.base import BranchFamily
from ray_ser.branches.speech_encoder.settings import SpeechEncoderBranch


def _load_predictor(checkpoint, branch, context):
    from ray_ser.branches.speech_encoder.model import SpeechEncoderPredictor

    return SpeechEncoderPredictor.load(checkpoint, branch.device)


def _training():
    from ray_ser.branches.speech_encoder.training import SpeechEncoderTraining

    return SpeechEncoderTraining()


FAMILY = BranchFamily("speech_encoder", SpeechEncoderBranch, _load_predictor, _training, speaker_normalisable=True)
