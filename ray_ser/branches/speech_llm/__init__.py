"""speech_llm: an audio-conditioned LM that generates the emotion word (SELM; Abhinaya's speech-text branch)."""

from __future__ import annotations

from ray_ser.branches.base import BranchFamily
from ray_ser.branches.speech_llm.settings import SpeechLLMBranch


def _load_predictor(checkpoint, branch, context):
    from ray_ser.branches.speech_llm.engines import SpeechLLMPredictor
    from ray_ser.branches.speech_llm.shots import load_shots

    shots = (load_shots(branch.few_shot, context.storage, context.columns, context.labels)
             if branch.few_shot else ())
    return SpeechLLMPredictor.load(checkpoint, branch.llm, branch.device, shots, context.labels.classes)


def _training():
    from ray_ser.branches.speech_llm.training import SpeechLLMTraining

    return SpeechLLMTraining()


FAMILY = BranchFamily("speech_llm", SpeechLLMBranch, _load_predictor, _training)
