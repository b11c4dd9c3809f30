"""The label of one clip from its branches' answers: Abhinaya's majority vote, and the learned fusion
where the profile has one (then it decides the label; the vote keeps its own column).

The labeling job's decision stage and the Serve endpoint both call ``decide``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ray_ser.core.fusion import Fusion
from ray_ser.vote import BranchVote, majority_vote

__all__ = ["Decision", "decide"]


@dataclass(frozen=True)
class Decision:
    label: str | None
    confidence: float | None
    agreement: float | None
    probs: list[float] | None
    vote_label: str | None
    vote_confidence: float | None


def _mean_distribution(votes: Mapping[str, BranchVote], classes: Sequence[str]) -> list[float] | None:
    with_probs = [np.asarray(v.probs, np.float64) for v in votes.values() if v.probs is not None]
    if not with_probs:
        return None
    return [float(x) for x in np.mean(with_probs, axis=0)]


def decide(labels: Mapping[str, str | None], probs: Mapping[str, Sequence[float] | None],
           weights: Mapping[str, float], priority: Sequence[str], classes: Sequence[str],
           fusion: Fusion | None = None) -> Decision:
    """labels and probs: each branch's label and distribution (None where it abstained)."""
    votes = {name: BranchVote(label, probs.get(name)) for name, label in labels.items() if label is not None}
    vote = majority_vote(votes, weights, priority, classes)
    if vote.label is None:
        return Decision(None, None, None, None, None, None)
    if fusion is None:
        return Decision(vote.label, vote.confidence, vote.agreement, _mean_distribution(votes, classes),
                        vote.label, vote.confidence)
    fused = fusion.predict({name: probs.get(name) if labels.get(name) is not None else None for name in labels})
    label = classes[int(np.argmax(fused))]
    agreement = sum(v.label == label for v in votes.values()) / len(votes)
    return Decision(label, float(np.max(fused)), float(agreement), [float(x) for x in fused], vote.label,
                    vote.confidence)
