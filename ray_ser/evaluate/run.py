"""``ray-ser evaluate``: score a labeling job's output against a manifest's truth; write metrics.json
and one self-contained report.html."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ray_ser.evaluate.join import (
    NO_CORPUS,
    Accounting,
    EvaluationSet,
    join_predictions,
    parse_label_rules,
    read_predictions,
    read_truth,
)
from ray_ser.evaluate.metrics import agreement_accuracy, calibration, class_scores

if TYPE_CHECKING:
    from ray_ser.config import StorageConfig

__all__ = ["Evaluation", "evaluate_predictions", "score_set", "format_summary", "NOTES"]

METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"

NOTES = {
    "abstentions": "A row a system gave no label for (a branch that abstained or failed, a row with status "
                   "error) counts as wrong for that system: a miss for its true class that lowers no class's "
                   "precision. Errored rows are also listed under errors.",
    "segments": "A segmented input scores once: each system's label is the duration-weighted majority of its "
                "segments' labels (ties: the earliest tied segment's label); its confidence and agreement are "
                "the means over the segments that carried that label.",
    "truth": "Truth labels outside the taxonomy are left out of the scores and counted under "
             "counts.out_of_taxonomy, unless a --map rule maps them.",
    "confidence": "final: the confidence column (else the max of probs); vote: vote_confidence; a branch: the "
                  "max of its probabilities. ECE over equal-width confidence bins.",
    "agreement": "agreement is the share of voting branches that chose the vote's winner; auc is the chance "
                 "that a right row has higher agreement than a wrong one (0.5: agreement says nothing).",
}


@dataclass(frozen=True)
class Evaluation:
    metrics: dict
    metrics_path: str | None
    report_path: str | None


def score_set(data: EvaluationSet, mask: np.ndarray, bins: int) -> dict:
    """Every metric of every system over the scored inputs selected by mask."""
    num_classes = len(data.classes)
    truth = data.truth[mask]
    systems, correct = {}, {}
    for name, answers in data.systems.items():
        labels = answers.labels[mask]
        ok = labels == truth
        correct[name] = ok
        systems[name] = {**class_scores(truth, labels, num_classes),
                         "calibration": calibration(ok, answers.confidence[mask], bins)}
    voted = {name: correct[name] for name in ("final", "vote")}
    return {"rows": int(mask.sum()), "failed_rows": int(data.failed[mask].sum()), "systems": systems,
            "agreement": agreement_accuracy(data.agreement[mask], voted)}


def _counts(accounting: Accounting) -> dict:
    counts = asdict(accounting)
    counts["error_rows"] = len(accounting.error_rows)
    return counts


def build_metrics(data: EvaluationSet, bins: int, sources: dict) -> dict:
    everything = np.ones(data.truth.size, dtype=bool)
    corpora = sorted(set(data.corpus.tolist()))
    per_corpus = {} if corpora == [NO_CORPUS] else {c: score_set(data, data.corpus == c, bins) for c in corpora}
    return {
        "classes": list(data.classes),
        "inputs": sources,
        "systems": list(data.systems),
        "columns": {name: asdict(where) for name, where in data.columns.items()},
        "vote_is_final": data.columns["vote"] == data.columns["final"],
        "counts": {**_counts(data.accounting), "scored": int(data.truth.size)},
        "overall": score_set(data, everything, bins),
        "corpora": per_corpus,
        "errors": data.accounting.error_rows,
        "notes": NOTES,
    }


def _json_ready(value):
    """NaN and infinities become null, so metrics.json is strict JSON."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _write(out: str, name: str, text: str, storage: StorageConfig) -> str:
    from ray_ser.io.storage import filesystem_for

    fs, root = filesystem_for(out, storage)
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(f"{root}/{name}") as handle:
        handle.write(text.encode())
    return f"{out.rstrip('/')}/{name}"


def evaluate_predictions(predictions: str, truth: str, out: str | None = None, *,
                         storage: StorageConfig | None = None, label_column: str = "emotion",
                         corpus_column: str = "corpus", label_map: Sequence[str] = (),
                         classes: Sequence[str] | None = None, bins: int = 10) -> Evaluation:
    """Score a labeling job's output (local directory or s3:// prefix) against a manifest's truth.

    Metrics of the final label, the vote and every branch, overall and per corpus (see metrics.json's
    ``notes`` for the rules). With ``out`` (a local directory or s3:// prefix), writes metrics.json and
    report.html there. ``label_map``: rules ``[CORPUS:]LABEL=CLASS`` for truth labels outside the
    taxonomy, e.g. ``calm=neutral``. Raises EvaluationError on unusable inputs.
    """
    from ray_ser.config import StorageConfig
    from ray_ser.evaluate.join import EvaluationError
    from ray_ser.evaluate.report import render_report
    from ray_ser.labels import EMOTIONS

    if bins < 1:
        raise EvaluationError(f"bins must be at least 1, got {bins}")
    storage = storage or StorageConfig()
    classes = tuple(classes or EMOTIONS)
    rules = parse_label_rules(label_map, classes)
    accounting = Accounting()
    truth_of, corpus_of, excluded = read_truth(truth, storage, label_column, corpus_column, rules, classes, accounting)
    table = read_predictions(predictions, storage)
    data = join_predictions(table, truth_of, corpus_of, excluded, classes, accounting)
    sources = {"predictions": predictions, "truth": truth, "label_column": label_column,
               "corpus_column": corpus_column, "label_map": list(label_map), "bins": bins}
    metrics = _json_ready(build_metrics(data, bins, sources))
    if out is None:
        return Evaluation(metrics, None, None)
    metrics_path = _write(out, METRICS_FILE, json.dumps(metrics, indent=1), storage)
    report_path = _write(out, REPORT_FILE, render_report(metrics), storage)
    return Evaluation(metrics, metrics_path, report_path)


def _figure(value) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def format_summary(evaluation: Evaluation) -> str:
    """The overall table and where the files went, for the console."""
    metrics = evaluation.metrics
    overall, counts = metrics["overall"], metrics["counts"]
    lines = [f"scored {counts['scored']} inputs ({counts['prediction_rows']} output rows, "
             f"{counts['error_rows']} with status error)"]
    dropped = sum(n for labels in counts["out_of_taxonomy"].values() for n in labels.values())
    if dropped:
        detail = ", ".join(f"{corpus}:{label} {n}" for corpus, labels in counts["out_of_taxonomy"].items()
                           for label, n in labels.items())
        lines.append(f"left out {dropped} truth rows outside the taxonomy ({detail}); map them with --map")
    if counts["truth_without_prediction"]:
        lines.append(f"{counts['truth_without_prediction']} truth rows have no prediction (not scored)")
    lines.append(f"{'system':<16} macro-F1    UAR    acc    ECE  abstained")
    for name in metrics["systems"]:
        s = overall["systems"][name]
        lines.append(f"{name:<16} {_figure(s['macro_f1'])} {_figure(s['uar'])} {_figure(s['accuracy'])} "
                     f"{_figure(s['calibration']['ece'])}  {s['abstained']:>9}")
    for corpus, scores in metrics["corpora"].items():
        lines.append(f"{corpus}: " + "  ".join(f"{name} {scores['systems'][name]['macro_f1']:.3f}"
                                               for name in metrics["systems"]))
    if evaluation.metrics_path:
        lines += [f"metrics: {evaluation.metrics_path}", f"report:  {evaluation.report_path}"]
    return "\n".join(lines)
