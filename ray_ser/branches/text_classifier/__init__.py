"""text_classifier: an LM reading the Whisper transcript with a sequence-classification head."""

from __future__ import annotations

from ray_ser.branches.base import BranchFamily
from ray_ser.branches.text_classifier.settings import TextClassifierBranch


def _load_predictor(checkpoint, branch, context):
    from ray_ser.branches.text_classifier.model import TextClassifierPredictor

    return TextClassifierPredictor.load(checkpoint, branch.device)


def _training():
    from ray_ser.branches.text_classifier.training import TextClassifierTraining

    return TextClassifierTraining()


FAMILY = BranchFamily("text_classifier", TextClassifierBranch, _load_predictor, _training)
