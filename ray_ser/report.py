"""Human-readable summaries of a labeling run."""

from __future__ import annotations

import shlex
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray_ser.config import StorageConfig
    from ray_ser.pipeline import LabelSummary

__all__ = ["format_summary", "format_scores", "label_command"]


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def format_summary(summary: LabelSummary, storage: StorageConfig, preview_rows: int = 5) -> str:
    """The run's counts and throughput, the commonest error reasons, and a few output rows."""
    from ray_ser.io.sink import read_output

    lines = [f"run {summary.run_id}", _table([
        ("inputs", str(summary.inputs)),
        ("already complete (resumed)", str(summary.already_complete)),
        ("labelled again (earlier errors)", str(summary.retried_inputs)),
        ("duplicate ids kept apart", str(summary.duplicate_ids)),
        ("unreadable parts quarantined", str(summary.quarantined_parts)),
        ("rows given up: worker lost", str(summary.inputs_given_up)),
        ("rows written", str(summary.rows_written)),
        ("  ok", str(summary.rows_ok)),
        ("  error", str(summary.rows_error)),
        ("parquet files", str(summary.files_written)),
        ("audio seconds", f"{summary.audio_seconds:.1f}"),
        ("wall seconds", f"{summary.wall_seconds:.1f}"),
        ("audio-s per s", f"{summary.audio_seconds_per_second:.2f}"),
    ])]
    labels = [f"{name}_label" for name in summary.branches]
    table = read_output(summary.output, storage,
                        ["utterance_id", "duration", "transcript", "status", "error", "warnings", *labels])
    if table is not None and table.num_rows:
        reasons = Counter(e[:90] for e in table.column("error").to_pylist() if e)
        if reasons:
            lines.append("errors by reason:")
            lines.append(_table([(reason, str(n)) for reason, n in reasons.most_common(5)]))
        lines += _branch_lines(table, summary.branches)
        lines.append(f"output: {summary.output}  ({table.num_rows} rows in total)")
        lines.append("sample:")
        for row in table.slice(0, preview_rows).to_pylist():
            text = (row["transcript"] or row["error"] or "")[:60]
            duration = f"{row['duration']:.2f}s" if row["duration"] is not None else "   -  "
            lines.append(f"  {row['utterance_id'][:28]:28}  {duration:>7}  {row['status']:5}  {text}")
    return "\n".join(lines)


def _branch_lines(table, branches: tuple[str, ...]) -> list[str]:
    """How many of the rows that were labelled each branch labelled, and the commonest reasons a
    branch gave none: a branch that fails on every row still leaves a labelled output (the others
    vote), so the summary says so instead of leaving it to the warnings column."""
    import pyarrow.compute as pc

    ok = table.filter(pc.equal(table.column("status"), "ok"))
    lines = []
    present = [b for b in branches if f"{b}_label" in table.column_names]
    if present and ok.num_rows:
        counts = [(b, ok.num_rows - ok.column(f"{b}_label").null_count) for b in present]
        lines.append(f"labelled by each branch (of {ok.num_rows} labelled rows):")
        lines.append(_table([(b, f"{n}" + ("" if n else "  <- gave no label on any row")) for b, n in counts]))
    if "warnings" in ok.column_names:
        notes = Counter(w.strip()[:90] for text in ok.column("warnings").to_pylist() if text
                        for w in text.split("; ") if w.strip())
        if notes:
            lines.append("warnings by reason:")
            lines.append(_table([(note, str(n)) for note, n in notes.most_common(5)]))
    return lines


def format_scores(scores: dict[str, dict]) -> str:
    """One line per scorer (branches, vote, baseline): macro-F1, UAR, accuracy."""
    lines = [f"  {'':14}  macro-F1    UAR    acc"]
    for name, m in scores.items():
        lines.append(f"  {name:14}  {m['macro_f1']:8.3f}  {m['uar']:5.3f}  {m['accuracy']:5.3f}")
    branches = [m["macro_f1"] for n, m in scores.items() if n not in ("vote", "baseline")]
    if branches and "vote" in scores:
        lines.append(f"  vote - best branch: {scores['vote']['macro_f1'] - max(branches):+.3f}")
    return "\n".join(lines)


def label_command(profile: str, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """The exact `ray-ser label` command with these --set lines (the trained checkpoints among them)."""
    parts = ["ray-ser", "label", "--config", profile, "--input", "MANIFEST_OR_PREFIX", "--output", "OUT_URI"]
    for override in overrides:
        parts += ["--set", override]
    return shlex.join(parts)
