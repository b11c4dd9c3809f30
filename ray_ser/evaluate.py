"""Metrics: word error rate for ASR, and macro-F1, UAR, accuracy and confusion for emotions."""

from __future__ import annotations

import re

__all__ = ["normalize_text", "word_error_rate", "confusion_matrix", "emotion_metrics"]

_NUMBERS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five",
            "6": "six", "7": "seven", "8": "eight", "9": "nine", "10": "ten", "12": "twelve"}


def normalize_text(text: str) -> list[str]:
    """Lowercase words without punctuation; small digits spelled out (Whisper writes '3')."""
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    return [_NUMBERS.get(w, w) for w in words]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance over normalised words, divided by the reference length."""
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1] / len(ref)


def confusion_matrix(y_true, y_pred, num_classes: int):
    """Counts[true, predicted] over class indices."""
    import numpy as np

    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        matrix[int(t), int(p)] += 1
    return matrix


def emotion_metrics(y_true, y_pred, num_classes: int) -> dict[str, float]:
    """macro-F1 (the challenge metric), UAR (macro recall) and accuracy.

    Classes absent from both truth and prediction are left out of the macro
    averages, as sklearn does with ``labels`` restricted to those present.
    """
    import numpy as np

    matrix = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(matrix).astype(float)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    present = (support + predicted) > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    total = matrix.sum()
    return {
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "uar": float(recall[support > 0].mean()) if (support > 0).any() else 0.0,
        "accuracy": float(tp.sum() / total) if total else 0.0,
    }
