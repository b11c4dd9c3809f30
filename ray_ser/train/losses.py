"""Losses against class imbalance: class-weighted cross-entropy and focal loss (Abhinaya)."""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F

__all__ = ["class_weights", "FocalLoss", "build_loss"]


def class_weights(counts: Sequence[int], power: float = 1.0) -> torch.Tensor:
    """Inverse-frequency weights from the training prior, normalised to mean 1 over seen classes.

    power=1 is plain inverse frequency, 0.5 its softer square root. Unseen classes get 0:
    there is nothing to weight, and an infinite weight would poison the loss.
    """
    counts_t = torch.as_tensor(counts, dtype=torch.float32)
    seen = counts_t > 0
    weights = torch.zeros_like(counts_t)
    weights[seen] = (counts_t[seen].sum() / counts_t[seen]) ** power
    weights[seen] = weights[seen] / weights[seen].mean()
    return weights


class FocalLoss(torch.nn.Module):
    """Focal loss (Lin et al.): (1 - p_t)^gamma * CE, optionally class-weighted (alpha)."""

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=-1)
        log_pt = log_p.gather(1, targets.unsqueeze(1)).squeeze(1)
        loss = -((1.0 - log_pt.exp()) ** self.gamma) * log_pt
        if self.weight is not None:
            w = self.weight.to(logits.device)[targets]
            return (loss * w).sum() / w.sum().clamp_min(1e-8)
        return loss.mean()


def build_loss(kind: Literal["ce", "weighted_ce", "focal", "weighted_focal"], counts: Sequence[int],
               gamma: float = 2.0, power: float = 1.0) -> torch.nn.Module:
    """The loss a branch config names, with weights from its training label counts."""
    weight = class_weights(counts, power) if kind.startswith("weighted") else None
    if kind in ("ce", "weighted_ce"):
        return torch.nn.CrossEntropyLoss(weight=weight)
    if kind in ("focal", "weighted_focal"):
        return FocalLoss(gamma=gamma, weight=weight)
    raise ValueError(f"unknown loss {kind!r}; expected ce, weighted_ce, focal or weighted_focal")
