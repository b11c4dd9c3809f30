"""Metrics: word error rate for ASR, and macro-F1, UAR, accuracy and confusion for emotions."""

from __future__ import annotations

import re

__all__ = ["normalize_text", "word_errors", "word_error_rate", "confusion_matrix", "emotion_metrics", "score_labels"]

_NUMBERS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five",
            "6": "six", "7": "seven", "8": "eight", "9": "nine", "10": "ten", "12": "twelve"}


def normalize_text(text: str) -> list[str]:
    """Lowercase words without punctuation; small digits spelled out (Whisper writes '3')."""
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    return [_NUMBERS.get(w, w) for w in words]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(Levenshtein distance over normalised words, reference length): a corpus WER sums both."""
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1], len(ref)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance over normalised words, divided by the reference length."""
    errors, words = word_errors(reference, hypothesis)
    if not words:
        return 0.0 if not errors else 1.0
    return errors / words


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


def score_labels(rows: list[dict], truth: dict[str, str], branches: tuple[str, ...]) -> dict[str, dict]:
    """Emotion metrics of the vote ("vote") and of each branch over labelled output rows.

    rows are output rows (dicts with input_id, label, <branch>_label); truth maps input_id
    to the reference emotion. A row a branch abstained on counts as wrong for that branch,
    so a branch is never flattered by skipping hard rows.
    """
    from ray_ser.labels import EMOTIONS, NUM_CLASSES

    scored = [r for r in rows if r["input_id"] in truth]
    reference = [EMOTIONS.index(truth[r["input_id"]]) for r in scored]
    out = {}
    for name, column in [("vote", "label"), *((b, f"{b}_label") for b in branches)]:
        # An abstention is scored as a wrong class: the one after the truth, cyclically.
        predicted = [EMOTIONS.index(r[column]) if r.get(column) else (t + 1) % NUM_CLASSES
                     for r, t in zip(scored, reference)]
        out[name] = {**emotion_metrics(reference, predicted, NUM_CLASSES), "rows": len(scored)}
    return out
