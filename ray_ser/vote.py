"""The vote: majority across branches, ties broken by mean probability, then branch priority.

Plain Python over plain values, so the labeling job (stages/vote.py) and the
Serve endpoint share exactly one implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from ray_ser.labels import EMOTIONS, index_of

__all__ = ["BranchVote", "VoteResult", "majority_vote"]


@dataclass(frozen=True)
class BranchVote:
    label: str
    probs: Sequence[float] | None = None  # over the taxonomy's classes, in order


@dataclass(frozen=True)
class VoteResult:
    label: str | None
    confidence: float | None
    agreement: float | None


def _mean_prob(votes: Mapping[str, BranchVote], label: str, classes: Sequence[str]) -> float:
    values = [v.probs[index_of(label, classes)] for v in votes.values() if v.probs is not None]
    return sum(values) / len(values) if values else 0.0


def majority_vote(votes: Mapping[str, BranchVote | None], weights: Mapping[str, float] | None = None,
                  priority: Sequence[str] = (), classes: Sequence[str] = EMOTIONS) -> VoteResult:
    """Vote over the branches that produced a label (a missing branch abstains).

    - score(label) = sum of the weights of the branches voting for it (weight 1 by default);
    - ties: the higher mean probability of the label across branches with probabilities;
    - still tied: the label of the first branch in ``priority`` voting for a tied label,
      then the taxonomy order, so the result is always deterministic.
    confidence is the winner's mean probability (the weighted vote share when no branch has
    probabilities); agreement is the fraction of voting branches that chose the winner.
    """
    present = {name: v for name, v in votes.items() if v is not None and v.label is not None}
    if not present:
        return VoteResult(None, None, None)
    weights = weights or {}
    scores: dict[str, float] = {}
    for name, v in present.items():
        index_of(v.label, classes)
        scores[v.label] = scores.get(v.label, 0.0) + float(weights.get(name, 1.0))
    best = max(scores.values())
    tied = [label for label, score in scores.items() if abs(score - best) < 1e-9]
    if len(tied) > 1:
        top = max(_mean_prob(present, label, classes) for label in tied)
        tied = [label for label in tied if abs(_mean_prob(present, label, classes) - top) < 1e-9]
    if len(tied) > 1:
        ranked = [present[name].label for name in priority if name in present and present[name].label in tied]
        tied = ranked[:1] or sorted(tied, key=list(classes).index)[:1]
    winner = tied[0]
    with_probs = [v for v in present.values() if v.probs is not None]
    confidence = _mean_prob(present, winner, classes) if with_probs else scores[winner] / sum(scores.values())
    agreement = sum(v.label == winner for v in present.values()) / len(present)
    return VoteResult(winner, float(confidence), float(agreement))
