"""The demo's report: training curves' end points, the labeling run and each test set's scores."""

from __future__ import annotations

from ray_ser.report import format_scores

__all__ = ["format_demo"]


def format_demo(result, test_sets: dict[str, str]) -> str:
    """The demo's report: training curves' end points, each test set's run and scores, reuse command."""
    lines = []
    if result.training:
        lines.append("training (Ray Train, best epoch by validation macro-F1):")
        for name, t in result.training.items():
            lines.append(f"  {name:14} val macro-F1 {t.best['val_macro_f1']:.3f} (epoch {t.best['epoch'] + 1} of "
                         f"{len(t.history)}, {t.wall_seconds:.0f} s)  {t.checkpoint}")
    s = result.summary
    lines.append(f"\nlabeling, every test set in one run: {s.rows_written} rows, {s.rows_ok} ok, {s.rows_error} error, "
                 f"{s.audio_seconds_per_second:.2f} audio-s/s, {s.wall_seconds:.0f} s -> {s.output}")
    for name, description in test_sets.items():
        lines.append(f"\n{name} ({description}), {result.scores[name]['vote']['rows']} rows:")
        lines.append(format_scores(result.scores[name]))
    lines.append(f"\nParquet copies: {result.local_copy}")
    if result.label_command:
        lines.append("label any manifest with these checkpoints:")
        lines.append(f"  {result.label_command}")
    return "\n".join(lines)
