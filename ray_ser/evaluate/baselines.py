"""The field's standard classical baseline for speech emotion: openSMILE's eGeMAPSv02 functionals (88 per
clip), z-normalised per speaker, into a class-balanced logistic regression.

bench/real_speech.py fits it in the same run and on the same folds as the branches, so every
figure has its yardstick beside it. Needs the ``opensmile`` package (scripts/requirements-cpu.lock).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["egemaps_functionals", "speaker_znorm", "EgemapsBaseline"]


def egemaps_functionals(audios: Sequence[np.ndarray], sample_rate: int = 16_000) -> np.ndarray:
    """[n, 88] eGeMAPSv02 functionals of 16 kHz clips."""
    try:
        import opensmile
    except ImportError:
        raise ImportError("the eGeMAPS baseline needs the opensmile package (pip install opensmile; "
                          "scripts/setup.sh installs it from the lock)") from None
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    return np.stack([smile.process_signal(np.asarray(a, np.float32), sample_rate).to_numpy()[0]
                     for a in audios]).astype(np.float64)


def speaker_znorm(features: np.ndarray, speakers: Sequence[str | None]) -> np.ndarray:
    """Each speaker's clips z-normalised by that speaker's mean and spread (clips without a speaker by
    all such clips together)."""
    out = np.array(features, dtype=np.float64)
    keys = [s if s is not None else "\0none" for s in speakers]
    for key in set(keys):
        rows = [i for i, k in enumerate(keys) if k == key]
        block = out[rows]
        out[rows] = (block - block.mean(0)) / np.maximum(block.std(0), 1e-8)
    return out


class EgemapsBaseline:
    """eGeMAPSv02 + per-speaker z-normalisation + class-balanced logistic regression."""

    def __init__(self, c: float = 0.1, seed: int = 0) -> None:
        from sklearn.linear_model import LogisticRegression

        self.model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed)

    def fit(self, features: np.ndarray, speakers: Sequence[str | None], labels: Sequence[int]) -> EgemapsBaseline:
        self.model.fit(speaker_znorm(features, speakers), np.asarray(labels))
        return self

    def predict(self, features: np.ndarray, speakers: Sequence[str | None]) -> np.ndarray:
        return self.model.predict(speaker_znorm(features, speakers))
