"""Evaluation: word error rate for ASR; emotion metrics; ``ray-ser evaluate`` (metrics.json and report.html).

- ``evaluate_predictions(predictions, truth, out)``: a labeling job's output against a manifest's truth;
- ``emotion_metrics``, ``class_scores``, ``calibration``, ``agreement_accuracy``, ``score_labels``: the metrics;
- ``word_error_rate``, ``word_errors``, ``normalize_text``: ASR.

``ray_ser.evaluate`` is also the package's public function (``from ray_ser import evaluate``). Python
binds a package's submodule to the package's attribute of the same name once the submodule is
imported, so that attribute is this module or the function depending on import order. The module is
therefore callable too: calling it calls ``evaluate_predictions``, whichever of the two you hold.
"""

from __future__ import annotations

import sys
import types

from ray_ser.evaluate.join import EvaluationError
from ray_ser.evaluate.metrics import (
    ABSTAINED,
    agreement_accuracy,
    calibration,
    class_scores,
    confusion_matrix,
    emotion_metrics,
    score_labels,
    separation_auc,
)
from ray_ser.evaluate.run import Evaluation, evaluate_predictions, format_summary
from ray_ser.evaluate.text import normalize_text, word_error_rate, word_errors

__all__ = [
    "ABSTAINED", "Evaluation", "EvaluationError", "agreement_accuracy", "calibration", "class_scores",
    "confusion_matrix", "emotion_metrics", "evaluate_predictions", "format_summary", "normalize_text",
    "score_labels", "separation_auc", "word_error_rate", "word_errors",
]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs) -> Evaluation:
        return evaluate_predictions(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
