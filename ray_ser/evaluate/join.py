"""Predictions joined with the truth: one scored row per input, each system's answer as class indices.

- Truth: a manifest (csv/tsv/jsonl/parquet, local or s3://) with utterance_id, a label column and
  optionally a corpus column. Labels go through ``ray_ser.labels.normalize_label`` (with the corpus's
  code table where ray_ser knows the corpus). A label outside the taxonomy (RAVDESS ``calm``, EmoDB
  ``boredom``) is left out of the scores and counted per corpus, unless a rule maps it
  (``calm=neutral``, or ``ravdess:calm=neutral`` for one corpus only).
- Predictions: a labeling job's output (Parquet parts). Systems: ``final`` (label/confidence, and
  the optional ``probs``), ``vote`` (vote_label/vote_confidence; in outputs written before the vote
  had a column of its own, label/confidence, which then were the vote) and every branch with a
  ``<branch>_label`` and ``<branch>_probs`` column (confidence: the max of its probabilities).
- Rows join on input_id = the manifest's utterance_id. A segmented input (a long recording split by
  VAD) scores once: each system's label is the duration-weighted majority of its segments' labels
  (ties: the label of the earliest tied segment); its confidence and the agreement are the means
  over the segments that carried that label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ray_ser.evaluate.metrics import ABSTAINED

if TYPE_CHECKING:
    import pyarrow as pa

    from ray_ser.config import StorageConfig

__all__ = ["EvaluationError", "LabelRule", "parse_label_rules", "SystemColumns", "find_systems",
           "Accounting", "EvaluationSet", "read_truth", "read_predictions", "join_predictions"]

NO_CORPUS = "(none)"
_SAMPLE = 50  # ids listed in the accounting, per kind


class EvaluationError(ValueError):
    """The predictions or the truth cannot be evaluated (missing, unreadable, or lacking a column)."""


@dataclass(frozen=True)
class LabelRule:
    """Map a truth label outside the taxonomy onto a class: ``[corpus:]raw=class``."""

    raw: str
    target: str
    corpus: str | None = None

    def matches(self, raw: str, corpus: str) -> bool:
        return raw.strip().lower() == self.raw and (self.corpus is None or self.corpus == corpus.lower())


def parse_label_rules(specs, classes: tuple[str, ...]) -> tuple[LabelRule, ...]:
    rules = []
    for spec in specs:
        source, sep, target = spec.partition("=")
        corpus, _, raw = source.rpartition(":")
        if not sep or not raw.strip() or not target.strip():
            raise EvaluationError(f"label rule {spec!r}: expected [CORPUS:]LABEL=CLASS, e.g. calm=neutral")
        if target.strip() not in classes:
            raise EvaluationError(f"label rule {spec!r}: {target.strip()!r} is not one of {list(classes)}")
        rules.append(LabelRule(raw.strip().lower(), target.strip(), corpus.strip().lower() or None))
    return tuple(rules)


@dataclass(frozen=True)
class SystemColumns:
    """Where one system's answer lives in the output."""

    label: str
    confidence: str | None
    probs: str | None


def find_systems(columns: list[str]) -> dict[str, SystemColumns]:
    """final, vote, then the branches in column order."""
    def present(name: str) -> str | None:
        return name if name in columns else None

    final = SystemColumns("label", present("confidence"), present("probs"))
    vote = SystemColumns("vote_label", present("vote_confidence"), None) if "vote_label" in columns else final
    systems = {"final": final, "vote": vote}
    for column in columns:
        branch = column[: -len("_label")]
        if column.endswith("_label") and branch not in ("", "vote") and f"{branch}_probs" in columns:
            systems[branch] = SystemColumns(column, None, f"{branch}_probs")
    return systems


@dataclass
class Accounting:
    """What the join kept, dropped and why (all counts; ids are samples)."""

    truth_rows: int = 0
    truth_unlabelled: int = 0
    truth_duplicates: int = 0
    out_of_taxonomy: dict[str, dict[str, int]] = field(default_factory=dict)  # corpus -> raw label -> rows
    mapped: dict[str, dict[str, int]] = field(default_factory=dict)  # corpus -> "raw->class" -> rows
    prediction_rows: int = 0
    prediction_inputs: int = 0
    segmented_inputs: int = 0
    predictions_without_truth: int = 0
    predictions_out_of_taxonomy: int = 0  # inputs predicted but excluded: truth outside the taxonomy
    truth_without_prediction: int = 0
    truth_without_prediction_ids: list[str] = field(default_factory=list)
    error_rows: list[dict] = field(default_factory=list)  # every status=error row: ids and reason
    off_taxonomy_predictions: dict[str, int] = field(default_factory=dict)  # system -> labels not in classes


@dataclass(frozen=True)
class SystemAnswers:
    labels: np.ndarray  # class index per scored input; ABSTAINED when the system gave none
    confidence: np.ndarray  # float, NaN when unknown


@dataclass(frozen=True)
class EvaluationSet:
    """Scored inputs (truth and prediction both known, truth in the taxonomy), aligned by position."""

    classes: tuple[str, ...]
    input_ids: list[str]
    corpus: np.ndarray  # object array of corpus names (NO_CORPUS when the manifest has none)
    truth: np.ndarray
    agreement: np.ndarray  # NaN when no branch voted
    failed: np.ndarray  # every row of the input has status error
    systems: dict[str, SystemAnswers]
    columns: dict[str, SystemColumns]
    accounting: Accounting


def _bump(table: dict, corpus: str, key: str) -> None:
    table.setdefault(corpus, {})
    table[corpus][key] = table[corpus].get(key, 0) + 1


def read_truth(uri: str, storage: StorageConfig, label_column: str, corpus_column: str,
               rules: tuple[LabelRule, ...], classes: tuple[str, ...],
               accounting: Accounting) -> tuple[dict[str, int], dict[str, str], dict[str, str]]:
    """input_id -> class index, input_id -> corpus, and input_id -> corpus of the excluded rows."""
    from ray_ser.io.manifest import ManifestError, read_manifest_table
    from ray_ser.labels import CORPUS_MAPPINGS, normalize_label

    try:
        table = read_manifest_table(uri, storage)
    except ManifestError as exc:
        raise EvaluationError(f"truth: {exc}") from None
    except (OSError, ValueError) as exc:  # pyarrow's parse errors are ValueErrors
        raise EvaluationError(f"truth manifest {uri} is unreadable: {exc}") from None
    for needed in ("utterance_id", label_column):
        if needed not in table.column_names:
            raise EvaluationError(f"truth manifest {uri} lacks column {needed!r} (has {table.column_names})")
    ids = table.column("utterance_id").to_pylist()
    raw_labels = table.column(label_column).to_pylist()
    corpora = (table.column(corpus_column).to_pylist() if corpus_column in table.column_names
               else [None] * table.num_rows)
    truth, corpus_of, excluded = {}, {}, {}
    accounting.truth_rows = table.num_rows
    for uid, raw, corpus in zip(ids, raw_labels, corpora):
        if uid is None or raw is None or not str(raw).strip():
            accounting.truth_unlabelled += 1
            continue
        uid, raw, corpus = str(uid), str(raw), str(corpus) if corpus not in (None, "") else NO_CORPUS
        if uid in truth or uid in excluded:
            accounting.truth_duplicates += 1
            continue
        rule = next((r for r in rules if r.matches(raw, corpus)), None)
        if rule is not None:
            label = rule.target
            _bump(accounting.mapped, corpus, f"{raw.strip().lower()}->{label}")
        else:
            try:
                known = corpus.lower() if corpus.lower() in CORPUS_MAPPINGS else None
                label = normalize_label(raw, known)
            except ValueError:
                label = None
        if label not in classes:
            excluded[uid] = corpus
            _bump(accounting.out_of_taxonomy, corpus, raw.strip().lower())
            continue
        truth[uid], corpus_of[uid] = classes.index(label), corpus
    return truth, corpus_of, excluded


def read_predictions(uri: str, storage: StorageConfig) -> pa.Table:
    from ray_ser.io.sink import read_output

    try:
        table = read_output(uri, storage)
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"predictions {uri} are unreadable: {exc}") from None
    if table is None or table.num_rows == 0:
        raise EvaluationError(f"predictions: no part-*.parquet files with rows under {uri}")
    for needed in ("input_id", "label"):
        if needed not in table.column_names:
            raise EvaluationError(f"predictions under {uri} lack column {needed!r}: is this a labeling job's output "
                                  "with emotion branches?")
    return table


def _column(table: pa.Table, name: str | None) -> list:
    if name is None or name not in table.column_names:
        return [None] * table.num_rows
    return table.column(name).to_pylist()


def _row_answers(table: pa.Table, columns: SystemColumns, classes: tuple[str, ...]) -> tuple[list, list, int]:
    """Per output row: class index (ABSTAINED if none), confidence (NaN if unknown); and the count of
    labels outside the taxonomy (scored as abstentions)."""
    labels, confidence, probs = (_column(table, columns.label), _column(table, columns.confidence),
                                 _column(table, columns.probs))
    indices, confidences, off = [], [], 0
    for label, conf, p in zip(labels, confidence, probs):
        if label is not None and label not in classes:
            off += 1
        if label is None or label not in classes:
            indices.append(ABSTAINED)
            confidences.append(np.nan)
            continue
        indices.append(classes.index(label))
        if conf is None and p:
            conf = max(p)
        confidences.append(np.nan if conf is None else float(conf))
    return indices, confidences, off


def _aggregate(rows: list[int], labels: list[int], weights: list[float], values: list[list]) -> tuple[int, list]:
    """The duration-weighted majority label over an input's segments (rows in segment order), and the
    mean of each value list over the segments that carried it."""
    if len(rows) == 1:
        r = rows[0]
        return labels[r], [v[r] for v in values]
    score: dict[int, float] = {}
    for r in rows:
        if labels[r] != ABSTAINED:
            score[labels[r]] = score.get(labels[r], 0.0) + weights[r]
    if not score:
        return ABSTAINED, [np.nan for _ in values]
    best = max(score.values())
    winner = next(labels[r] for r in rows if labels[r] in score and score[labels[r]] >= best - 1e-9)
    carriers = [r for r in rows if labels[r] == winner]
    return winner, [float(np.nanmean([v[r] for r in carriers])) if any(not np.isnan(v[r]) for r in carriers)
                    else np.nan for v in values]


def join_predictions(table: pa.Table, truth: dict[str, int], corpus_of: dict[str, str], excluded: dict[str, str],
                     classes: tuple[str, ...], accounting: Accounting) -> EvaluationSet:
    input_ids = [str(i) for i in table.column("input_id").to_pylist()]
    utterance_ids = _column(table, "utterance_id")
    segment_index = [s if s is not None else 0 for s in _column(table, "segment_index")]
    weights = [d if d and d > 0 else 1.0 for d in _column(table, "duration")]
    status, errors = _column(table, "status"), _column(table, "error")
    agreement = [np.nan if a is None else float(a) for a in _column(table, "agreement")]
    accounting.prediction_rows = table.num_rows
    accounting.error_rows = [{"utterance_id": u, "input_id": i, "error": e}
                             for u, i, s, e in zip(utterance_ids, input_ids, status, errors) if s == "error"]

    rows_of: dict[str, list[int]] = {}
    for row, input_id in enumerate(input_ids):
        rows_of.setdefault(input_id, []).append(row)
    accounting.prediction_inputs = len(rows_of)
    accounting.segmented_inputs = sum(len(rows) > 1 for rows in rows_of.values())
    accounting.predictions_without_truth = sum(i not in truth and i not in excluded for i in rows_of)
    accounting.predictions_out_of_taxonomy = sum(i in excluded for i in rows_of)
    missing = sorted(set(truth) - set(rows_of))
    accounting.truth_without_prediction = len(missing)
    accounting.truth_without_prediction_ids = missing[:_SAMPLE]

    scored = [i for i in rows_of if i in truth]
    for rows in rows_of.values():
        rows.sort(key=lambda r: segment_index[r])
    columns = find_systems(table.column_names)
    systems = {}
    final_agreement = []
    for name, where in columns.items():
        labels, confidence, off = _row_answers(table, where, classes)
        if off:
            accounting.off_taxonomy_predictions[name] = off
        chosen, confs = [], []
        for input_id in scored:
            label, (conf, agree) = _aggregate(rows_of[input_id], labels, weights, [confidence, agreement])
            chosen.append(label)
            confs.append(conf)
            if name == "final":
                final_agreement.append(agree)
        systems[name] = SystemAnswers(np.array(chosen, dtype=np.int64), np.array(confs, dtype=float))
    failed = [all(status[r] == "error" for r in rows_of[i]) for i in scored]
    return EvaluationSet(
        classes=classes, input_ids=scored,
        corpus=np.array([corpus_of[i] for i in scored], dtype=object),
        truth=np.array([truth[i] for i in scored], dtype=np.int64),
        agreement=np.array(final_agreement, dtype=float), failed=np.array(failed, dtype=bool),
        systems=systems, columns=columns, accounting=accounting,
    )
