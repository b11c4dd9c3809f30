"""The learned fusion on hand-made branch distributions: what it learns, how it decides, how it is kept."""

from __future__ import annotations

import numpy as np
import pytest

from ray_ser.core.decision import decide
from ray_ser.core.fusion import Fusion, fit_fusion
from ray_ser.labels import EMOTIONS


def _one_hot(index: int, confidence: float = 0.9) -> list[float]:
    p = np.full(8, (1 - confidence) / 7)
    p[index] = confidence
    return p.tolist()


@pytest.fixture(scope="module")
def held_out():
    """A reliable branch (right 90% of the time) and a noisy one (always sure, right 20% of the time)."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, 400).tolist()
    good = [_one_hot(t if rng.random() < 0.9 else (t + 1) % 8, 0.7) for t in truth]
    noisy = [_one_hot(t if rng.random() < 0.2 else int(rng.integers(0, 8)), 0.95) for t in truth]
    return {"good": good, "noisy": noisy}, truth


@pytest.mark.parametrize("method", ["weights", "stacking"])
def test_the_fusion_learns_which_branch_to_trust(held_out, method):
    probs, truth = held_out
    fusion = fit_fusion(method, probs, truth, EMOTIONS)
    if method == "weights":
        assert fusion.weights[0] > 3 * fusion.weights[1]  # the noisy branch is all but ignored
    # Where the two disagree, the fused label follows the reliable branch.
    disagree = [i for i in range(len(truth)) if np.argmax(probs["good"][i]) != np.argmax(probs["noisy"][i])]
    follows = [int(np.argmax(fusion.predict({b: probs[b][i] for b in probs}))) == int(np.argmax(probs["good"][i]))
               for i in disagree]
    assert np.mean(follows) > 0.9
    # The majority vote with equal weights cannot tell them apart: its ties go by priority.
    again = Fusion.from_json(fusion.to_json())
    np.testing.assert_allclose(again.predict({b: probs[b][0] for b in probs}),
                               fusion.predict({b: probs[b][0] for b in probs}), atol=1e-6)


def test_an_abstaining_branch_and_the_decision_columns(held_out):
    probs, truth = held_out
    fusion = fit_fusion("weights", probs, truth, EMOTIONS)
    alone = fusion.predict({"good": probs["good"][0], "noisy": None})
    assert abs(alone.sum() - 1) < 1e-5 and int(alone.argmax()) == int(np.argmax(probs["good"][0]))
    assert fusion.predict({"good": None, "noisy": None}) is None

    # The decision: the fusion's label, the vote kept in its own column.
    labels = {"good": "angry", "noisy": "happy"}
    dist = {"good": _one_hot(3, 0.6), "noisy": _one_hot(1, 0.99)}
    decision = decide(labels, dist, {"good": 1.0, "noisy": 1.0}, ("noisy", "good"), EMOTIONS, fusion)
    assert decision.label == "angry" and decision.vote_label == "happy"  # the vote's tie went by mean probability
    assert decision.agreement == 0.5 and abs(sum(decision.probs) - 1) < 1e-5
    plain = decide(labels, dist, {"good": 1.0, "noisy": 1.0}, ("noisy", "good"), EMOTIONS)
    assert plain.label == plain.vote_label == "happy"


def test_a_fusion_refuses_a_profile_it_was_not_fitted_for(held_out):
    probs, truth = held_out
    fusion = fit_fusion("weights", probs, truth, EMOTIONS)
    with pytest.raises(ValueError, match="lacks"):
        fusion.check(("good",), EMOTIONS, "fusion x")
    with pytest.raises(ValueError, match="classes"):
        fusion.check(("good", "noisy"), ("neutral", "happy"), "fusion x")
    with pytest.raises(ValueError, match="no held-out clips"):
        fit_fusion("weights", {"good": []}, [], EMOTIONS)
