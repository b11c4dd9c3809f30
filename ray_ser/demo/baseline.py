"""The classical speech-only baseline: gradient boosting on log-mel and prosody statistics.

It is the yardstick the neural branches are measured against (issue 3's targets are
calibrated on it), so it lives in the package and runs in the same demo and bench runs.
numpy + scikit-learn only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ray_ser.models.features.functionals import prosody_features

__all__ = ["prosody_features", "ClassicalBaseline"]


class ClassicalBaseline:
    """sklearn's HistGradientBoostingClassifier over ``prosody_features``; class-balanced."""

    def __init__(self, seed: int = 0) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.06,
                                                    class_weight="balanced", random_state=seed)

    def fit(self, audios: Sequence[np.ndarray], labels: Sequence[int]) -> ClassicalBaseline:
        self.model.fit(np.stack([prosody_features(a) for a in audios]), np.asarray(labels))
        return self

    def predict(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.predict(np.stack([prosody_features(a) for a in audios]))
