"""report.html: one self-contained page (inline SVG and CSS; no scripts, assets or network) drawn
from metrics.json's content alone, so a report can be re-rendered from a saved metrics file."""

from __future__ import annotations

from html import escape

from ray_ser.evaluate.svg import SERIES_COLOURS, grouped_bars, heatmap, reliability_chart

__all__ = ["render_report"]

_STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1180px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
h3 { font-size: 14px; margin: 16px 0 6px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f3f3; }
.meta { color: #555; font-size: 13px; margin: 2px 0; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.figure { border: 1px solid #eee; padding: 4px; }
.note { color: #555; font-size: 12px; max-width: 1100px; }
"""


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _colours(systems: list[str]) -> dict[str, str]:
    return {name: SERIES_COLOURS[k % len(SERIES_COLOURS)] for k, name in enumerate(systems)}


def _shown(metrics: dict) -> list[str]:
    """The systems to draw: the vote only when it differs from the final label."""
    return [s for s in metrics["systems"] if not (s == "vote" and metrics["vote_is_final"])]


def _system_table(scores: dict, systems: list[str]) -> str:
    rows = []
    for name in systems:
        s = scores["systems"][name]
        rows.append([name, s["macro_f1"], s["uar"], s["accuracy"], s["calibration"]["ece"], s["abstained"], s["rows"]])
    return _table(["system", "macro-F1", "UAR", "accuracy", "ECE", "abstained", "rows"], rows)


def _reliability(scores: dict, systems: list[str], colours: dict[str, str], title: str) -> str:
    series = []
    for name in systems:
        bins = scores["systems"][name]["calibration"]["bins"]
        points = [(b["confidence"], b["accuracy"], b["rows"]) for b in bins if b["rows"]]
        if points:
            series.append((name, colours[name], points))
    return reliability_chart(series, title)


def _agreement_chart(scores: dict, systems: list[str], colours: dict[str, str]) -> str:
    levels = scores["agreement"]["levels"]
    voters = [s for s in ("final", "vote") if s in systems]
    return grouped_bars([lv["level"] for lv in levels],
                        [(s, colours[s], [lv["accuracy"][s] for lv in levels]) for s in voters],
                        "Accuracy by branch agreement", "accuracy", notes=[f"n={lv['rows']}" for lv in levels])


def _class_chart(scores: dict, systems: list[str], colours: dict[str, str], classes: list[str]) -> str:
    final = scores["systems"]["final"]
    shown = [k for k, c in enumerate(classes) if final["support"][k] or final["predicted"][k]]
    return grouped_bars([classes[k] for k in shown],
                        [(s, colours[s], [scores["systems"][s]["f1"][k] for k in shown]) for s in systems],
                        "F1 per class", "F1", width=1100, notes=[f"n={final['support'][k]}" for k in shown])


def _confusions(scores: dict, systems: list[str], classes: list[str], prefix: str = "") -> str:
    columns = [*classes, "(none)"]
    charts = (heatmap(scores["systems"][s]["confusion"], classes, columns, prefix + s) for s in systems)
    return "".join(f'<div class="figure">{chart}</div>' for chart in charts)


def _class_table(scores: dict, systems: list[str], classes: list[str]) -> str:
    final = scores["systems"]["final"]
    rows = []
    for k, name in enumerate(classes):
        rows.append([name, final["support"][k], final["predicted"][k], final["precision"][k], final["recall"][k],
                     final["f1"][k], *(scores["systems"][s]["f1"][k] for s in systems if s != "final")])
    header = ["class", "support", "predicted", "precision", "recall", "F1",
              *(f"F1 {s}" for s in systems if s != "final")]
    return _table(header, rows)


def _agreement_table(scores: dict, systems: list[str]) -> str:
    voters = [s for s in ("final", "vote") if s in systems]
    agreement = scores["agreement"]
    rows = [[lv["level"], lv["rows"], lv["share"], *(lv["accuracy"][s] for s in voters)] for lv in agreement["levels"]]
    summary = " ".join(
        f"<b>{escape(s)}</b>: accuracy {_fmt(agreement['unanimous']['accuracy'][s])} on unanimous rows, "
        f"{_fmt(agreement['split']['accuracy'][s])} on split rows; split rows hold "
        f"{_fmt(agreement['split_share_of_errors'][s])} of its errors (and {_fmt(agreement['split_share_of_rows'])} "
        f"of all rows); agreement AUC {_fmt(agreement['auc'][s])}." for s in voters)
    return (_table(["agreement", "rows", "share", *(f"accuracy {s}" for s in voters)], rows)
            + f'<p class="note">{summary}</p>')


def _calibration_table(scores: dict, systems: list[str]) -> str:
    rows = []
    for name in systems:
        c = scores["systems"][name]["calibration"]
        rows.append([name, c["ece"], c["mean_confidence"], c["accuracy"], c["auc"], c["rows"], c["without_confidence"]])
    return _table(["system", "ECE", "mean confidence", "accuracy", "confidence AUC", "rows", "without confidence"],
                  rows)


def _accounting(metrics: dict) -> str:
    counts = metrics["counts"]
    parts = [_table(["count", "rows"], [[k, counts[k]] for k in (
        "truth_rows", "truth_unlabelled", "truth_duplicates", "prediction_rows", "prediction_inputs",
        "segmented_inputs", "scored", "predictions_without_truth", "predictions_out_of_taxonomy",
        "truth_without_prediction", "error_rows")])]
    left_out = [[corpus, label, n] for corpus, labels in counts["out_of_taxonomy"].items()
                for label, n in labels.items()]
    if left_out:
        parts.append("<h3>Truth labels outside the taxonomy (left out)</h3>"
                     + _table(["corpus", "label", "rows"], left_out))
    mapped = [[corpus, rule, n] for corpus, rules in counts["mapped"].items() for rule, n in rules.items()]
    if mapped:
        parts.append("<h3>Truth labels mapped by --map</h3>" + _table(["corpus", "rule", "rows"], mapped))
    if counts["off_taxonomy_predictions"]:
        parts.append("<h3>Predicted labels outside the taxonomy (scored as abstentions)</h3>"
                     + _table(["system", "rows"], [[s, n] for s, n in counts["off_taxonomy_predictions"].items()]))
    if counts["truth_without_prediction_ids"]:
        parts.append('<p class="note">Truth rows without a prediction (first '
                     f'{len(counts["truth_without_prediction_ids"])}): '
                     + escape(", ".join(counts["truth_without_prediction_ids"])) + "</p>")
    errors = metrics["errors"]
    if errors:
        shown = errors[:200]
        parts.append(f"<h3>Rows with status error ({len(errors)}; first {len(shown)} shown)</h3>"
                     + _table(["utterance_id", "input_id", "error"],
                              [[e["utterance_id"], e["input_id"], e["error"]] for e in shown]))
    return "".join(parts)


def render_report(metrics: dict) -> str:
    classes, systems = metrics["classes"], _shown(metrics)
    colours = _colours(metrics["systems"])
    overall, counts, sources = metrics["overall"], metrics["counts"], metrics["inputs"]
    dropped = sum(n for labels in counts["out_of_taxonomy"].values() for n in labels.values())
    vote_note = ("This output has no vote column of its own: its label is the majority vote, so the final label "
                 "is the vote." if metrics["vote_is_final"] else
                 "final = the output's label (the fusion where the profile enables one); vote = the majority vote.")
    html = [
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ray_ser evaluation</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Emotion labels against the truth</h1>",
        f'<p class="meta">predictions: {escape(sources["predictions"])} &middot; truth: {escape(sources["truth"])} '
        f'(column {escape(sources["label_column"])})</p>',
        f'<p class="meta">{counts["scored"]} inputs scored &middot; {counts["prediction_rows"]} output rows &middot; '
        f'{counts["error_rows"]} with status error &middot; {dropped} truth rows outside the taxonomy left out '
        f'&middot; {counts["truth_without_prediction"]} truth rows without a prediction</p>',
        "<h2>Summary</h2>", _system_table(overall, systems), f'<p class="note">{escape(vote_note)} '
        f'{escape(metrics["notes"]["abstentions"])}</p>',
        '<h2>Calibration, agreement and classes</h2><div class="grid">',
        f'<div class="figure">{_reliability(overall, systems, colours, "Reliability (confidence vs accuracy)")}</div>',
        f'<div class="figure">{_agreement_chart(overall, systems, colours)}</div>',
        f'<div class="figure">{_class_chart(overall, systems, colours, classes)}</div>',
        "</div>",
        "<h2>Confusion matrices</h2>",
        '<p class="note">Rows: the true class; columns: the predicted class, (none) for abstentions. '
        "Colour: the cell's share of its row.</p>",
        f'<div class="grid">{_confusions(overall, systems, classes)}</div>',
    ]
    if metrics["corpora"]:
        html.append("<h2>Per corpus</h2>")
        for corpus, scores in metrics["corpora"].items():
            html += [f"<h3>{escape(corpus)} ({scores['rows']} inputs)</h3>", _system_table(scores, systems),
                     f'<div class="grid">{_confusions(scores, ["final"], classes, prefix=corpus + ": ")}</div>']
    html += [
        "<h2>Per class (overall)</h2>", _class_table(overall, systems, classes),
        "<h2>Agreement against accuracy</h2>", _agreement_table(overall, systems),
        "<h2>Calibration</h2>", _calibration_table(overall, systems),
        "<h2>Rows left out, and errors</h2>", _accounting(metrics),
        "<h2>How these figures are made</h2>",
        "".join(f'<p class="note"><b>{escape(k)}</b>: {escape(v)}</p>' for k, v in metrics["notes"].items()),
        "</body></html>",
    ]
    return "\n".join(html)
