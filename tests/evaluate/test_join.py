"""How outputs and truth are joined: taxonomy rules, segments, errors, old and new output columns.
Every case reads real Parquet parts written by the sink and a real CSV manifest."""

from __future__ import annotations

import pytest

from ray_ser.evaluate import EvaluationError, evaluate_predictions
from tests.evaluate.outputs import output_row, write_manifest, write_output

TRUTH = [("r1", "happy", "ravdess"), ("r2", "sad", "ravdess"), ("r3", "calm", "ravdess"), ("r4", "angry", "ravdess"),
         ("e1", "angry", "emodb"), ("e2", "boredom", "emodb"), ("e3", "neutral", "emodb"), ("e4", "fear", "emodb")]


def _outputs() -> list[dict]:
    return [
        output_row("r1", "happy", {"speech": "happy", "prosody": "sad"}, agreement=0.5),
        output_row("r2", "sad", {"speech": "sad", "prosody": "sad"}),
        output_row("r3", "neutral", {"speech": "neutral", "prosody": "neutral"}),
        output_row("e1", "sad", {"speech": "angry", "prosody": "sad"}, agreement=0.5),
        # e3: three VAD segments, written last first; neutral holds 5 s of 7, happy two segments of 1 s
        output_row("e3", "happy", {"speech": "happy", "prosody": "happy"}, segment=2, segments=3, duration=1.0,
                   confidence=0.9),
        output_row("e3", "neutral", {"speech": "neutral", "prosody": None}, segment=1, segments=3, duration=5.0,
                   confidence=0.6, agreement=1.0),
        output_row("e3", "happy", {"speech": "happy", "prosody": "happy"}, segment=0, segments=3, duration=1.0,
                   confidence=0.9),
        output_row("e4", None, {}, status="error", error="decode: not audio"),
        output_row("x9", "angry", {"speech": "angry", "prosody": "angry"}),
    ]


@pytest.fixture()
def job(tmp_path):
    write_output(_outputs(), str(tmp_path / "out"))
    return str(tmp_path / "out"), str(write_manifest(tmp_path / "truth.csv", TRUTH))


def test_scores_final_and_branches_per_corpus_and_accounts_for_every_row(job):
    metrics = evaluate_predictions(*job).metrics
    counts = metrics["counts"]
    assert counts["scored"] == 5  # r1 r2 e1 e3 e4
    assert counts["out_of_taxonomy"] == {"ravdess": {"calm": 1}, "emodb": {"boredom": 1}}
    assert (counts["truth_without_prediction"], counts["truth_without_prediction_ids"]) == (1, ["r4"])
    assert counts["predictions_without_truth"] == 1 and counts["predictions_out_of_taxonomy"] == 1
    assert counts["segmented_inputs"] == 1 and counts["prediction_rows"] == 9 and counts["prediction_inputs"] == 7
    assert metrics["errors"] == [{"utterance_id": "e4", "input_id": "e4", "error": "decode: not audio"}]
    assert counts["error_rows"] == 1 and metrics["overall"]["failed_rows"] == 1

    assert metrics["systems"] == ["final", "vote", "speech", "prosody"] and metrics["vote_is_final"]
    final = metrics["overall"]["systems"]["final"]
    assert final["accuracy"] == pytest.approx(3 / 5)  # e1 wrong, e4 (error) counts as wrong
    assert final["abstained"] == 1
    speech = metrics["overall"]["systems"]["speech"]
    assert speech["accuracy"] == pytest.approx(4 / 5)  # r1 r2 e1 e3(neutral by duration) right
    prosody = metrics["overall"]["systems"]["prosody"]
    assert prosody["accuracy"] == pytest.approx(1 / 5)  # only r2; e3's segments: happy 2 s of 2 voted
    assert metrics["corpora"]["ravdess"]["systems"]["final"]["accuracy"] == 1.0
    assert metrics["corpora"]["emodb"]["systems"]["final"]["accuracy"] == pytest.approx(1 / 3)
    assert metrics["corpora"]["emodb"]["rows"] == 3


def test_a_segmented_input_takes_its_duration_weighted_majority(job):
    metrics = evaluate_predictions(*job).metrics
    confusion = metrics["overall"]["systems"]["final"]["confusion"]
    classes = metrics["classes"]
    neutral = classes.index("neutral")
    assert confusion[neutral][neutral] == 1  # 5 s of neutral beat two 1 s segments of happy
    # its confidence is the mean over the segments that carried neutral (one, at 0.6)
    bins = metrics["overall"]["systems"]["final"]["calibration"]["bins"]
    assert next(b for b in bins if b["lower"] == pytest.approx(0.6))["rows"] == 1


def test_a_tie_between_segments_goes_to_the_earliest(tmp_path):
    rows = [output_row("a", "sad", {"speech": "sad"}, segment=1, segments=2, duration=2.0),
            output_row("a", "happy", {"speech": "happy"}, segment=0, segments=2, duration=2.0)]
    write_output(rows, str(tmp_path / "out"))
    truth = write_manifest(tmp_path / "t.csv", [("a", "happy", "x")])
    metrics = evaluate_predictions(str(tmp_path / "out"), str(truth)).metrics
    assert metrics["overall"]["systems"]["final"]["accuracy"] == 1


@pytest.mark.parametrize("rule,scored", [("calm=neutral", 6), ("ravdess:calm=neutral", 6), ("emodb:calm=neutral", 5)])
def test_map_rules_score_labels_outside_the_taxonomy(job, rule, scored):
    metrics = evaluate_predictions(*job, label_map=[rule]).metrics
    assert metrics["counts"]["scored"] == scored
    if scored == 6:
        assert metrics["counts"]["mapped"] == {"ravdess": {"calm->neutral": 1}}
        assert "ravdess" not in metrics["counts"]["out_of_taxonomy"]


def test_vote_columns_and_final_probabilities_of_newer_outputs(tmp_path):
    rows = [
        # the fusion says happy (right), the vote said sad
        output_row("a", "happy", {"speech": "happy", "prosody": "sad"}, vote_label="sad", vote_confidence=0.5,
                   probs=[0.0, 0.8, 0.2, 0, 0, 0, 0, 0]),
        # no confidence on the final label: it comes from the final distribution's max
        output_row("b", "sad", {"speech": "sad", "prosody": "sad"}, vote_label="sad", vote_confidence=0.9,
                   probs=[0.0, 0.05, 0.95, 0, 0, 0, 0, 0]),
    ]
    rows[1]["confidence"] = None
    write_output(rows, str(tmp_path / "out"), vote_columns=True, final_probs=True)
    truth = write_manifest(tmp_path / "t.csv", [("a", "happy", "c"), ("b", "sad", "c")])
    metrics = evaluate_predictions(str(tmp_path / "out"), str(truth)).metrics
    assert not metrics["vote_is_final"]
    assert metrics["columns"]["vote"] == {"label": "vote_label", "confidence": "vote_confidence", "probs": None}
    systems = metrics["overall"]["systems"]
    assert systems["final"]["accuracy"] == 1.0 and systems["vote"]["accuracy"] == 0.5
    final_bins = [b for b in systems["final"]["calibration"]["bins"] if b["rows"]]
    assert [round(b["confidence"], 2) for b in final_bins] == [0.7, 0.95]


def test_predicted_labels_outside_the_taxonomy_count_as_abstentions(tmp_path):
    write_output([output_row("a", "bored", {"speech": "happy"})], str(tmp_path / "out"))
    truth = write_manifest(tmp_path / "t.csv", [("a", "happy", "c")])
    metrics = evaluate_predictions(str(tmp_path / "out"), str(truth)).metrics
    assert metrics["counts"]["off_taxonomy_predictions"] == {"final": 1, "vote": 1}
    assert metrics["overall"]["systems"]["final"]["abstained"] == 1


def test_unusable_inputs_raise_a_clear_error(tmp_path, job):
    predictions, truth = job
    with pytest.raises(EvaluationError, match="manifest not found"):
        evaluate_predictions(predictions, str(tmp_path / "nope.csv"))
    (tmp_path / "unlabelled.csv").write_text("utterance_id,path\na,a.wav\n")
    with pytest.raises(EvaluationError, match="lacks column 'emotion'"):
        evaluate_predictions(predictions, str(tmp_path / "unlabelled.csv"))
    with pytest.raises(EvaluationError, match="no part-"):
        evaluate_predictions(str(tmp_path / "empty"), truth)
    with pytest.raises(EvaluationError, match="CLASS"):
        evaluate_predictions(predictions, truth, label_map=["calm"])
    with pytest.raises(EvaluationError, match="not one of"):
        evaluate_predictions(predictions, truth, label_map=["calm=relaxed"])


def test_an_asr_only_output_has_nothing_to_score(tmp_path):
    import pyarrow as pa

    from ray_ser.config import StorageConfig
    from ray_ser.io.sink import write_part
    from ray_ser.schema import conform, output_schema

    write_part(conform(pa.Table.from_pylist([{"utterance_id": "a", "input_id": "a", "status": "ok"}]),
                       output_schema(())), str(tmp_path / "asr"), StorageConfig())
    truth = write_manifest(tmp_path / "t.csv", [("a", "happy", "c")])
    with pytest.raises(EvaluationError, match="lack column 'label'"):
        evaluate_predictions(str(tmp_path / "asr"), str(truth))
