"""Emotion metrics over class indices: confusion, per-class precision/recall/F1, macro-F1, UAR,
accuracy, calibration (expected calibration error, reliability curve) and agreement against accuracy.

A prediction is a class index, or an abstention (``None`` or ``ABSTAINED``) when a system gave no
label. An abstention is scored as wrong: a miss for the true class (recall, accuracy) that counts as
a prediction of no class (so it lowers no class's precision), as sklearn does for a predicted label
outside ``labels``. A system is never flattered by skipping the rows it finds hard.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

__all__ = ["ABSTAINED", "confusion_matrix", "class_scores", "emotion_metrics", "calibration",
           "separation_auc", "agreement_accuracy", "score_labels"]

ABSTAINED = -1
# Agreement is a fraction k/n of a few branches, so its distinct values are natural bins; past this
# many (e.g. means over segments) it falls back to bins of width 0.1.
_MAX_AGREEMENT_LEVELS = 12


def _indices(values) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    return np.array([ABSTAINED if v is None else int(v) for v in values], dtype=np.int64)


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts[true, predicted] over class indices; abstentions are left out (see class_scores)."""
    true, pred = _indices(y_true), _indices(y_pred)
    keep = pred != ABSTAINED
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true[keep], pred[keep]), 1)
    return matrix


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = numerator.astype(float)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def class_scores(y_true, y_pred, num_classes: int) -> dict:
    """Everything the confusion of one system says, as plain values (JSON-ready).

    ``confusion`` is num_classes x (num_classes + 1): the last column counts abstentions.
    Per class: precision, recall, F1, support (true rows) and predicted (rows predicted as it).
    macro_f1 averages F1 over the classes present in truth or prediction (absent classes would
    add a meaningless 0); uar averages recall over the classes present in truth.
    """
    true, pred = _indices(y_true), _indices(y_pred)
    abstained = pred == ABSTAINED
    matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    np.add.at(matrix, (true, np.where(abstained, num_classes, pred)), 1)
    tp = np.diag(matrix[:, :num_classes])
    support, predicted = matrix.sum(axis=1), matrix[:, :num_classes].sum(axis=0)
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present, truthful = (support + predicted) > 0, support > 0
    rows = int(true.size)
    return {
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "uar": float(recall[truthful].mean()) if truthful.any() else 0.0,
        "accuracy": float(tp.sum() / rows) if rows else 0.0,
        "rows": rows,
        "abstained": int(abstained.sum()),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.tolist(),
        "predicted": predicted.tolist(),
        "confusion": matrix.tolist(),
    }


def emotion_metrics(y_true, y_pred, num_classes: int) -> dict[str, float]:
    """macro-F1 (the challenge metric), UAR (macro recall) and accuracy; see class_scores."""
    scores = class_scores(y_true, y_pred, num_classes)
    return {key: scores[key] for key in ("macro_f1", "uar", "accuracy")}


def calibration(correct, confidence, bins: int = 10) -> dict:
    """Expected calibration error and the reliability curve of one system.

    Rows are binned by confidence into ``bins`` equal-width bins over [0, 1] (1.0 falls in the
    last). ECE = sum over bins of (rows in bin / rows) * |accuracy in bin - mean confidence in bin|.
    Rows without a confidence (abstentions, missing probabilities) are left out and counted.
    """
    correct = np.asarray(correct, dtype=bool)
    confidence = np.asarray(confidence, dtype=float)
    known = ~np.isnan(confidence)
    ok, conf = correct[known], np.clip(confidence[known], 0.0, 1.0)
    # Confidences are float32 in the output: 0.7 is stored as 0.69999999, which belongs in 0.7-0.8.
    which = np.minimum((np.round(conf, 6) * bins).astype(np.int64), bins - 1)
    curve, gap = [], 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        mean_conf = float(conf[members].mean()) if count else None
        accuracy = float(ok[members].mean()) if count else None
        if count:
            gap += count * abs(accuracy - mean_conf)
        curve.append({"lower": b / bins, "upper": (b + 1) / bins, "rows": count,
                      "confidence": mean_conf, "accuracy": accuracy})
    rows = int(known.sum())
    return {
        "ece": gap / rows if rows else None,
        "rows": rows,
        "without_confidence": int((~known).sum()),
        "mean_confidence": float(conf.mean()) if rows else None,
        "accuracy": float(ok.mean()) if rows else None,
        "auc": separation_auc(conf, ok),
        "bins": curve,
    }


def separation_auc(score, correct) -> float | None:
    """P(score of a right row > score of a wrong row), ties counting half (ROC AUC, Mann-Whitney).

    0.5: the score says nothing about which rows are wrong; 1.0: every wrong row scores lower.
    None when all rows are right or all wrong.
    """
    score = np.asarray(score, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    known = ~np.isnan(score)
    right, wrong = score[known & correct], np.sort(score[known & ~correct])
    if not right.size or not wrong.size:
        return None
    below = np.searchsorted(wrong, right, side="left")
    tied = np.searchsorted(wrong, right, side="right") - below
    return float((below + 0.5 * tied).sum() / (right.size * wrong.size))


def _agreement_groups(agreement: np.ndarray) -> tuple[np.ndarray, list[tuple[str, float | None]]]:
    """A group index per row and each group's (label, value); the last group holds rows without one."""
    known = ~np.isnan(agreement)
    levels = np.unique(np.round(agreement[known], 3))
    if levels.size <= _MAX_AGREEMENT_LEVELS:
        group = np.searchsorted(levels, np.round(np.nan_to_num(agreement), 3))
        names = [(f"{v:.2f}", float(v)) for v in levels]
    else:
        group = np.minimum((np.nan_to_num(agreement) * 10).astype(np.int64), 9)
        names = [(f"{b / 10:.1f}-{(b + 1) / 10:.1f}", (b + 0.5) / 10) for b in range(10)]
    group = np.where(known, group, len(names))
    return group, names + [("none", None)]


def agreement_accuracy(agreement, correct: Mapping[str, Sequence[bool]]) -> dict:
    """Are the low-agreement rows the wrong ones? Accuracy of each system per agreement level.

    ``agreement`` is the share of voting branches that chose the vote's winner (NaN: none voted).
    Also: unanimous (agreement 1) against split rows, the share of each system's errors that fall on
    split rows, and the AUC of agreement as a predictor of a right answer (see separation_auc).
    """
    agreement = np.asarray(agreement, dtype=float)
    correct = {name: np.asarray(values, dtype=bool) for name, values in correct.items()}
    rows = agreement.size
    group, names = _agreement_groups(agreement)
    levels = []
    for g, (label, value) in enumerate(names):
        members = group == g
        count = int(members.sum())
        if count:
            levels.append({"level": label, "agreement": value, "rows": count, "share": count / rows,
                           "accuracy": {n: float(ok[members].mean()) for n, ok in correct.items()}})
    unanimous = agreement >= 1.0 - 1e-6
    split = agreement < 1.0 - 1e-6  # NaN is neither

    def accuracy_of(mask):
        return {n: (float(ok[mask].mean()) if mask.any() else None) for n, ok in correct.items()}

    return {
        "levels": levels,
        "unanimous": {"rows": int(unanimous.sum()), "accuracy": accuracy_of(unanimous)},
        "split": {"rows": int(split.sum()), "accuracy": accuracy_of(split)},
        "split_share_of_rows": float(split.mean()) if rows else None,
        "split_share_of_errors": {n: (float(split[~ok].mean()) if (~ok).any() else None)
                                  for n, ok in correct.items()},
        "auc": {n: separation_auc(agreement, ok) for n, ok in correct.items()},
    }


def score_labels(rows: list[dict], truth: dict[str, str], branches: tuple[str, ...]) -> dict[str, dict]:
    """Emotion metrics of the vote ("vote") and of each branch over labelled output rows.

    rows are output rows (dicts with input_id, label, <branch>_label); truth maps input_id to the
    reference emotion. A row a branch abstained on counts as wrong for that branch (see the module).
    """
    from ray_ser.labels import EMOTIONS, NUM_CLASSES

    scored = [r for r in rows if r["input_id"] in truth]
    reference = [EMOTIONS.index(truth[r["input_id"]]) for r in scored]
    out = {}
    for name, column in [("vote", "label"), *((b, f"{b}_label") for b in branches)]:
        predicted = [EMOTIONS.index(r[column]) if r.get(column) else None for r in scored]
        out[name] = {**emotion_metrics(reference, predicted, NUM_CLASSES), "rows": len(scored)}
    return out
