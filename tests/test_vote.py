import pytest

from ray_ser.labels import EMOTIONS
from ray_ser.vote import BranchVote, majority_vote


def onehotish(label, p=0.7):
    rest = (1 - p) / (len(EMOTIONS) - 1)
    return [p if e == label else rest for e in EMOTIONS]


def test_majority_wins_with_agreement_and_confidence():
    result = majority_vote({"a": BranchVote("sad", onehotish("sad", 0.8)), "b": BranchVote("sad", onehotish("sad", 0.6)),
                            "c": BranchVote("happy", onehotish("happy"))})
    assert result.label == "sad" and result.agreement == pytest.approx(2 / 3)
    assert result.confidence == pytest.approx((0.8 + 0.6 + 0.3 / 7) / 3)


def test_tie_broken_by_mean_probability_then_priority():
    a, b = BranchVote("sad", onehotish("sad", 0.9)), BranchVote("angry", onehotish("angry", 0.6))
    assert majority_vote({"a": a, "b": b}).label == "sad"
    # equal probabilities: priority decides, whichever order the branches come in
    a, b = BranchVote("sad", onehotish("sad")), BranchVote("angry", onehotish("angry"))
    assert majority_vote({"a": a, "b": b}, priority=["b", "a"]).label == "angry"
    assert majority_vote({"b": b, "a": a}, priority=["a"]).label == "sad"
    assert majority_vote({"a": BranchVote("fear"), "b": BranchVote("happy")}).label == "happy"  # taxonomy order


def test_weights_and_abstentions():
    votes = {"speech": BranchVote("angry"), "text": BranchVote("happy"), "llm": None}
    assert majority_vote(votes, weights={"speech": 2.0}).label == "angry"
    assert majority_vote(votes, weights={"text": 1.5}).confidence == pytest.approx(1.5 / 2.5)
    assert majority_vote({"llm": None}).label is None


def test_unknown_label_is_rejected():
    with pytest.raises(ValueError, match="unknown emotion"):
        majority_vote({"a": BranchVote("bored")})
