"""The metrics on small cases checked by hand, and against sklearn where it has the same metric."""

from __future__ import annotations

import numpy as np
import pytest

from ray_ser.evaluate import (
    agreement_accuracy,
    calibration,
    class_scores,
    confusion_matrix,
    emotion_metrics,
    score_labels,
    separation_auc,
)


def test_per_class_precision_recall_f1_by_hand():
    # true 0 0 1 1 2 2, predicted 0 1 1 1 (abstained) 0
    scores = class_scores([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, None, 0], 3)
    assert scores["confusion"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 1]]  # last column: abstentions
    assert scores["support"] == [2, 2, 2] and scores["predicted"] == [2, 3, 0]
    assert scores["precision"] == pytest.approx([1 / 2, 2 / 3, 0.0])
    assert scores["recall"] == pytest.approx([1 / 2, 1.0, 0.0])
    assert scores["f1"] == pytest.approx([0.5, 0.8, 0.0])  # class 1: 2 * (2/3 * 1) / (2/3 + 1)
    assert scores["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert scores["uar"] == pytest.approx(0.5)
    assert scores["accuracy"] == pytest.approx(0.5)
    assert (scores["rows"], scores["abstained"]) == (6, 1)


def test_classes_absent_from_truth_and_prediction_stay_out_of_the_averages():
    scores = class_scores([0, 0, 1], [0, 0, 1], 8)
    assert scores["macro_f1"] == 1.0 and scores["uar"] == 1.0
    # a class predicted but never true counts in macro-F1 (its F1 is 0), not in UAR
    scores = class_scores([0, 0, 1], [0, 2, 1], 8)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert scores["uar"] == pytest.approx((0.5 + 1) / 2)


def test_agrees_with_sklearn_when_abstentions_predict_no_class():
    from sklearn.metrics import f1_score, precision_recall_fscore_support, recall_score

    rng = np.random.default_rng(4)
    truth = rng.integers(0, 6, 400)
    predicted = np.where(rng.random(400) < 0.6, truth, rng.integers(-1, 7, 400))  # -1: abstained
    scores = class_scores(truth, predicted, 8)
    present = sorted(set(truth.tolist()) | set(predicted.tolist()) - {-1})
    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=list(range(8)), zero_division=0)
    assert scores["precision"] == pytest.approx(p.tolist())
    assert scores["recall"] == pytest.approx(r.tolist())
    assert scores["f1"] == pytest.approx(f.tolist())
    assert scores["macro_f1"] == pytest.approx(f1_score(truth, predicted, labels=present, average="macro"))
    assert scores["uar"] == pytest.approx(recall_score(truth, predicted, labels=sorted(set(truth.tolist())),
                                                       average="macro"))
    assert scores["accuracy"] == pytest.approx(float((truth == predicted).mean()))


def test_confusion_matrix_and_emotion_metrics_keep_their_contract():
    assert confusion_matrix([0, 1, 1], [1, 1, None], 2).tolist() == [[0, 1], [0, 1]]
    assert emotion_metrics([0, 1], [0, 1], 3) == {"macro_f1": 1.0, "uar": 1.0, "accuracy": 1.0}


def test_expected_calibration_error_by_hand():
    confidence = [0.95, 0.85, 0.85, 0.55, 0.55, 0.25, np.nan]
    correct = [True, True, False, True, False, False, False]
    result = calibration(correct, confidence, bins=10)
    # bins: 0.9-1.0 {0.95 right} |1-0.95|; 0.8-0.9 {0.85 right, wrong} |0.5-0.85| x2;
    #       0.5-0.6 {0.55 right, wrong} |0.5-0.55| x2; 0.2-0.3 {0.25 wrong} |0-0.25|
    assert result["ece"] == pytest.approx((0.05 + 2 * 0.35 + 2 * 0.05 + 0.25) / 6)
    assert (result["rows"], result["without_confidence"]) == (6, 1)
    by_bin = {round(b["lower"], 1): b for b in result["bins"] if b["rows"]}
    assert sorted(by_bin) == [0.2, 0.5, 0.8, 0.9]
    assert by_bin[0.8]["accuracy"] == 0.5 and by_bin[0.8]["confidence"] == pytest.approx(0.85)
    assert len(result["bins"]) == 10 and sum(b["rows"] for b in result["bins"]) == 6


def test_calibration_edges_and_a_perfectly_calibrated_system():
    # confidence 1.0 falls in the last bin, 0.0 in the first
    edges = calibration([True, False], [1.0, 0.0], bins=4)
    assert [b["rows"] for b in edges["bins"]] == [1, 0, 0, 1] and edges["ece"] == 0.0
    # the output stores float32: 0.7 reads back as 0.69999999 and still belongs in 0.7-0.8
    assert calibration([True], np.array([0.7], dtype=np.float32))["bins"][7]["rows"] == 1
    rng = np.random.default_rng(0)
    confidence = np.full(20_000, 0.75)
    assert calibration(rng.random(20_000) < 0.75, confidence)["ece"] < 0.02
    assert calibration([], [])["ece"] is None


def test_accuracy_by_agreement_level_by_hand():
    agreement = np.array([1, 1, 1, 2 / 3, 2 / 3, 1 / 3, np.nan], dtype=np.float32)  # as read from Parquet
    right = [True, True, False, True, False, False, False]
    result = agreement_accuracy(agreement, {"final": right})
    levels = {lv["level"]: (lv["rows"], lv["accuracy"]["final"]) for lv in result["levels"]}
    assert levels == {"0.33": (1, 0.0), "0.67": (2, 0.5), "1.00": (3, pytest.approx(2 / 3)), "none": (1, 0.0)}
    assert result["unanimous"] == {"rows": 3, "accuracy": {"final": pytest.approx(2 / 3)}}
    assert result["split"] == {"rows": 3, "accuracy": {"final": pytest.approx(1 / 3)}}
    assert result["split_share_of_rows"] == pytest.approx(3 / 7)
    assert result["split_share_of_errors"]["final"] == pytest.approx(2 / 4)  # errors: rows 2, 4, 5, 6
    # right rows' agreement (1, 1, 2/3) against wrong rows' (1, 2/3, 1/3): 6.5 of 9 pairs
    assert result["auc"]["final"] == pytest.approx(6.5 / 9)


def test_many_agreement_levels_fall_back_to_tenths():
    agreement = np.linspace(0.05, 0.95, 30)
    result = agreement_accuracy(agreement, {"final": agreement > 0.5})
    assert [lv["level"] for lv in result["levels"]][:2] == ["0.0-0.1", "0.1-0.2"]
    assert sum(lv["rows"] for lv in result["levels"]) == 30
    assert result["auc"]["final"] == 1.0


def test_separation_auc():
    assert separation_auc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert separation_auc([0.1, 0.9], [True, False]) == 0.0
    assert separation_auc([0.5, 0.5], [True, False]) == 0.5
    assert separation_auc([0.5, 0.7], [True, True]) is None


def test_score_labels_counts_an_abstention_as_wrong():
    rows = [{"input_id": "a", "label": "happy", "speech_label": "happy"},
            {"input_id": "b", "label": "sad", "speech_label": None},
            {"input_id": "c", "label": "sad", "speech_label": "sad"},
            {"input_id": "x", "label": "sad", "speech_label": "sad"}]  # no truth: not scored
    scores = score_labels(rows, {"a": "happy", "b": "sad", "c": "angry"}, ("speech",))
    assert scores["vote"]["accuracy"] == pytest.approx(2 / 3) and scores["vote"]["rows"] == 3
    assert scores["speech"]["accuracy"] == pytest.approx(1 / 3)
    # speech: happy right; sad missed (abstained); angry predicted sad
    assert scores["speech"]["uar"] == pytest.approx((1 + 0 + 0) / 3)


def test_the_public_name_evaluates_whatever_the_import_order():
    """``from ray_ser import evaluate`` is the function or, once the submodule is imported, the module;
    both run the evaluation."""
    import subprocess
    import sys

    for first in ("import ray_ser.evaluate", "pass"):
        code = (f"{first}\nfrom ray_ser import evaluate\nimport ray_ser.evaluate as module\n"
                "from ray_ser.evaluate import evaluate_predictions, score_labels, word_error_rate\n"
                "assert callable(evaluate) and callable(module)\n"
                "try:\n    evaluate('/nonexistent/predictions', '/nonexistent/truth.csv')\n"
                "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.startswith("EvaluationError truth: manifest not found"), out
