"""A fusion that learns what each branch is worth, beside Abhinaya's majority vote.

Branches are not equally reliable: on acted corpora the sentence carries no emotion, so a text
branch's vote is noise there, while on conversational speech it may be the best voter. A
fusion is fitted on the branches' distributions for clips of speakers no branch trained on
(``ray-ser train`` holds them out, labels them with the job itself, and fits the fusion there),
saved beside the checkpoints, and applied by the job and by Serve alike.

- ``weights``: one non-negative weight per branch on its log-probabilities,
  p(c) ∝ exp(Σ_b w_b log p_b(c)), fitted by minimising the held-out log-loss. A weight also
  calibrates its branch (a weight below 1 softens an overconfident branch).
- ``stacking``: a class-balanced multinomial logistic regression over the branches'
  log-probabilities, which can also learn that one branch confuses two classes.

A branch that abstains on a clip (no transcript, say) leaves its term out (weights) or enters
as a uniform distribution (stacking). numpy and scikit-learn only; no Ray.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

__all__ = ["Fusion", "fit_fusion", "load_fusion", "FUSION_FILE"]

FUSION_FILE = "fusion.json"
_FLOOR = 1e-6  # a branch's probability floor, so one confident zero does not veto a class


def _log(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probs, _FLOOR, 1.0))


@dataclass(frozen=True)
class Fusion:
    method: str                      # "weights" or "stacking"
    branches: tuple[str, ...]
    classes: tuple[str, ...]
    weights: tuple[float, ...] = ()  # weights: one per branch
    coef: tuple[tuple[float, ...], ...] = ()   # stacking: [classes, branches * classes]
    intercept: tuple[float, ...] = ()          # stacking: [classes]
    fitted_on: dict = field(default_factory=dict)  # rows, held-out macro-F1 of the fusion and of the vote

    def _features(self, probs: Mapping[str, Sequence[float] | None], n_classes: int) -> np.ndarray:
        uniform = np.full(n_classes, 1.0 / n_classes)
        return np.concatenate([_log(np.asarray(probs.get(b) if probs.get(b) is not None else uniform, np.float64))
                               for b in self.branches])

    def predict(self, probs: Mapping[str, Sequence[float] | None]) -> np.ndarray | None:
        """The fused distribution over classes for one clip; None when no branch voted."""
        k = len(self.classes)
        present = [b for b in self.branches if probs.get(b) is not None]
        if not present:
            return None
        if self.method == "weights":
            logits = sum(w * _log(np.asarray(probs[b], np.float64))
                         for b, w in zip(self.branches, self.weights) if probs.get(b) is not None)
        else:
            logits = np.asarray(self.coef) @ self._features(probs, k) + np.asarray(self.intercept)
        logits = np.asarray(logits, np.float64)
        if not np.any(logits):  # every voting branch weighs 0: fall back to their mean
            logits = np.mean([_log(np.asarray(probs[b], np.float64)) for b in present], axis=0)
        shifted = np.exp(logits - logits.max())
        return (shifted / shifted.sum()).astype(np.float32)

    def to_json(self) -> str:
        return json.dumps({"method": self.method, "branches": list(self.branches), "classes": list(self.classes),
                           "weights": list(self.weights), "coef": [list(r) for r in self.coef],
                           "intercept": list(self.intercept), "fitted_on": self.fitted_on}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Fusion:
        body = json.loads(text)
        return cls(body["method"], tuple(body["branches"]), tuple(body["classes"]), tuple(body["weights"]),
                   tuple(tuple(r) for r in body["coef"]), tuple(body["intercept"]), body.get("fitted_on", {}))

    def check(self, branches: Sequence[str], classes: Sequence[str], where: str) -> None:
        """The profile votes with the branches and classes the fusion was fitted on; ValueError otherwise."""
        if tuple(classes) != self.classes:
            raise ValueError(f"{where} was fitted on classes {list(self.classes)}, not {list(classes)}")
        missing = [b for b in self.branches if b not in branches]
        if missing:
            raise ValueError(f"{where} was fitted on branches {list(self.branches)}; the profile lacks {missing}")


def _fit_weights(logs: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Non-negative per-branch weights minimising the class-balanced log-loss of the log-linear pool."""
    from scipy.optimize import minimize

    counts = np.bincount(truth, minlength=logs.shape[2]).astype(np.float64)
    row_weight = 1.0 / np.maximum(counts[truth], 1.0)

    def loss(raw: np.ndarray) -> float:
        w = np.log1p(np.exp(raw))  # softplus: weights stay non-negative
        logits = np.einsum("nbc,b->nc", logs * mask[:, :, None], w)
        logits -= logits.max(axis=1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return float(-(row_weight * logp[np.arange(len(truth)), truth]).sum() / row_weight.sum())

    start = np.full(logs.shape[1], np.log(np.e - 1.0))  # every weight 1
    result = minimize(loss, start, method="L-BFGS-B")
    return np.log1p(np.exp(result.x))


def fit_fusion(method: str, probs: Mapping[str, Sequence[Sequence[float] | None]], truth: Sequence[int],
               classes: Sequence[str], seed: int = 0) -> Fusion:
    """Fit a fusion on held-out clips: probs maps each branch to one distribution (or None) per clip."""
    branches = tuple(probs)
    k, n = len(classes), len(truth)
    if n == 0:
        raise ValueError("no held-out clips to fit the fusion on")
    truth_array = np.asarray(truth, dtype=np.int64)
    uniform = np.full(k, 1.0 / k)
    logs = np.stack([np.stack([_log(np.asarray(p if p is not None else uniform, np.float64)) for p in probs[b]])
                     for b in branches], axis=1)                      # [n, branches, classes]
    mask = np.asarray([[p is not None for p in probs[b]] for b in branches], np.float64).T  # [n, branches]
    if method == "weights":
        return Fusion("weights", branches, tuple(classes), tuple(float(w) for w in _fit_weights(logs, truth_array,
                                                                                                 mask)))
    if method == "stacking":
        from sklearn.linear_model import LogisticRegression

        present = sorted(set(truth_array.tolist()))
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000, random_state=seed)
        model.fit(logs.reshape(n, -1), truth_array)
        coef = np.full((k, logs.shape[1] * k), 0.0)
        intercept = np.full(k, -1e3)  # a class the held-out clips never showed is never chosen
        coef[present], intercept[present] = model.coef_ if len(present) > 2 else np.vstack(
            [-model.coef_[0], model.coef_[0]]), model.intercept_ if len(present) > 2 else np.array(
            [-model.intercept_[0], model.intercept_[0]])
        return Fusion("stacking", branches, tuple(classes), coef=tuple(tuple(r) for r in coef),
                      intercept=tuple(intercept.tolist()))
    raise ValueError(f"unknown fusion method {method!r}; expected weights or stacking")


def load_fusion(uri: str, storage) -> Fusion:
    """A fitted fusion from a fusion.json (or the directory holding one), local or s3://."""
    import posixpath

    from ray_ser.io.storage import FileReader

    path = uri if uri.endswith(".json") else posixpath.join(uri, FUSION_FILE)
    try:
        return Fusion.from_json(FileReader(storage).read(path).decode())
    except FileNotFoundError:
        raise FileNotFoundError(f"no fitted fusion at {path}") from None
