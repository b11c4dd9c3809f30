"""prosody: pitch, energy, rate and spectrum functionals of the whole clip into a small MLP."""

from __future__ import annotations

from ray_ser.branches.base import BranchFamily
from ray_ser.branches.prosody.settings import ProsodyBranch


def _load_predictor(checkpoint, branch, context):
    from ray_ser.branches.prosody.model import ProsodyPredictor

    return ProsodyPredictor.load(checkpoint, branch.device)


def _training():
    from ray_ser.branches.prosody.training import ProsodyTraining

    return ProsodyTraining()


FAMILY = BranchFamily("prosody", ProsodyBranch, _load_predictor, _training, speaker_normalisable=True)
