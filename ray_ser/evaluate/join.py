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
    decided: dict[tuple[str, str], tuple[str | None, bool]] = {}
    accounting.truth_rows = table.num_rows
    for uid, raw, corpus in zip(ids, raw_labels, corpora):
        if uid is None or raw is None or not str(raw).strip():
            accounting.truth_unlabelled += 1
            continue
        uid, raw, corpus = str(uid), str(raw), str(corpus) if corpus not in (None, "") else NO_CORPUS
        if uid in truth or uid in excluded:
            accounting.truth_duplicates += 1
            continue
        if (raw, corpus) not in decided:  # a corpus has a handful of distinct labels: decide each once
            rule = next((r for r in rules if r.matches(raw, corpus)), None)
            try:
                known = corpus.lower() if corpus.lower() in CORPUS_MAPPINGS else None
                decided[raw, corpus] = (rule.target, True) if rule else (normalize_label(raw, known), False)
            except ValueError:
                decided[raw, corpus] = (None, False)
        label, mapped = decided[raw, corpus]
        if mapped:
            _bump(accounting.mapped, corpus, f"{raw.strip().lower()}->{label}")
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


def _floats(table: pa.Table, name: str | None) -> np.ndarray:
    """A numeric column as float64, NaN for nulls and for a missing column."""
    if name is None or name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    import pyarrow as pa

    return table.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False)


def _strings(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows


def _max_of_lists(table: pa.Table, name: str | None) -> np.ndarray:
    """Each row's largest list element (a branch's confidence: the max of its probabilities); NaN when
    the row has no list."""
    out = np.full(table.num_rows, -np.inf)
    if name is not None and name in table.column_names and hasattr(table.column(name).type, "value_type"):
        import pyarrow.compute as pc

        lists = table.column(name).combine_chunks()
        values = pc.list_flatten(lists).cast("float64").to_numpy(zero_copy_only=False)
        np.maximum.at(out, pc.list_parent_indices(lists).to_numpy(), values)
    out[~np.isfinite(out)] = np.nan
    return out


def _row_answers(table: pa.Table, columns: SystemColumns,
                 classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, int]:
    """Per output row: class index (ABSTAINED if none), confidence (NaN if unknown); and the count of
    labels outside the taxonomy (scored as abstentions)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    labels = table.column(columns.label).cast(pa.string())
    index = pc.index_in(labels, value_set=pa.array(list(classes), pa.string()))
    off = int(pc.sum(pc.and_(pc.is_valid(labels), pc.is_null(index))).as_py() or 0)
    indices = index.fill_null(ABSTAINED).to_numpy(zero_copy_only=False).astype(np.int64)
    confidence = _floats(table, columns.confidence)
    confidence = np.where(np.isnan(confidence), _max_of_lists(table, columns.probs), confidence)
    confidence[indices == ABSTAINED] = np.nan
    return indices, confidence, off


def _aggregate(rows: list[int], labels: np.ndarray, weights: np.ndarray, values: list[np.ndarray]) -> tuple[int, list]:
    """The duration-weighted majority label over an input's segments (rows in segment order), and the
    mean of each value array over the segments that carried it."""
    score: dict[int, float] = {}
    for r in rows:
        if labels[r] != ABSTAINED:
            score[labels[r]] = score.get(labels[r], 0.0) + weights[r]
    if not score:
        return ABSTAINED, [np.nan for _ in values]
    best = max(score.values())
    winner = next(labels[r] for r in rows if labels[r] in score and score[labels[r]] >= best - 1e-9)
    carriers = [r for r in rows if labels[r] == winner]
    return winner, [float(np.nanmean(v[carriers])) if not np.isnan(v[carriers]).all() else np.nan for v in values]


def join_predictions(table: pa.Table, truth: dict[str, int], corpus_of: dict[str, str], excluded: dict[str, str],
                     classes: tuple[str, ...], accounting: Accounting) -> EvaluationSet:
    import pyarrow as pa

    input_ids = [str(i) for i in table.column("input_id").cast(pa.string()).to_pylist()]
    segment_index = np.nan_to_num(_floats(table, "segment_index"), nan=0.0)
    duration = _floats(table, "duration")
    weights = np.where(duration > 0, duration, 1.0)  # NaN compares False: an unknown duration weighs 1
    agreement = _floats(table, "agreement")
    status = _strings(table, "status")
    accounting.prediction_rows = table.num_rows
    failed_rows = [r for r, s in enumerate(status) if s == "error"]
    utterance_ids, errors = _strings(table, "utterance_id"), _strings(table, "error")
    accounting.error_rows = [{"utterance_id": utterance_ids[r], "input_id": input_ids[r], "error": errors[r]}
                             for r in failed_rows]

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
    first = np.array([rows_of[i][0] for i in scored], dtype=np.int64)
    segmented = [(k, sorted(rows_of[i], key=lambda r: segment_index[r])) for k, i in enumerate(scored)
                 if len(rows_of[i]) > 1]
    failed_row = np.zeros(table.num_rows, dtype=bool)
    failed_row[failed_rows] = True
    columns = find_systems(table.column_names)
    systems = {}
    final_agreement = agreement[first]
    for name, where in columns.items():
        labels, confidence, off = _row_answers(table, where, classes)
        if off:
            accounting.off_taxonomy_predictions[name] = off
        chosen, confs = labels[first], confidence[first]
        for k, rows in segmented:
            chosen[k], (confs[k], agree) = _aggregate(rows, labels, weights, [confidence, agreement])
            if name == "final":
                final_agreement[k] = agree
        systems[name] = SystemAnswers(chosen, confs)
    failed = failed_row[first]
    for k, rows in segmented:
        failed[k] = failed_row[rows].all()
    return EvaluationSet(
        classes=classes, input_ids=scored,
        corpus=np.array([corpus_of[i] for i in scored], dtype=object),
        truth=np.array([truth[i] for i in scored], dtype=np.int64),
        agreement=final_agreement, failed=failed, systems=systems, columns=columns, accounting=accounting,
    )
