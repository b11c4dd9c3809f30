"""Losses against class imbalance: class-weighted cross-entropy and focal loss (Abhinaya)."""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F

__all__ = ["class_weights", "EmotionLoss", "build_loss"]


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


class EmotionLoss(torch.nn.Module):
    """Cross-entropy or focal loss (Lin et al.: (1 - p_t)^gamma * CE), optionally class-weighted.

    ``sample_weight`` multiplies per-example terms (a row merged from k identical rows has
    weight k); the result is normalised by the total weight, as torch's weighted CE is.
    """

    def __init__(self, gamma: float = 0.0, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        log_pt = F.log_softmax(logits.float(), dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)
        return self.from_log_likelihood(log_pt, targets, sample_weight)

    def from_log_likelihood(self, log_pt: torch.Tensor, targets: torch.Tensor,
                            sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        """The same loss from log p(true label) per example: a generative branch's answer likelihood."""
        loss = -log_pt if self.gamma == 0 else -((1.0 - log_pt.exp()) ** self.gamma) * log_pt
        w = torch.ones_like(loss)
        if self.weight is not None:
            w = w * self.weight.to(log_pt.device)[targets]
        if sample_weight is not None:
            w = w * sample_weight.to(log_pt.device, torch.float32)
        return (loss * w).sum() / w.sum().clamp_min(1e-8)


def build_loss(kind: Literal["ce", "weighted_ce", "focal", "weighted_focal"], counts: Sequence[int],
               gamma: float = 2.0, power: float = 1.0) -> EmotionLoss:
    """The loss a branch config names, with weights from its training label counts."""
    if kind not in ("ce", "weighted_ce", "focal", "weighted_focal"):
        raise ValueError(f"unknown loss {kind!r}; expected ce, weighted_ce, focal or weighted_focal")
    weight = class_weights(counts, power) if kind.startswith("weighted") else None
    return EmotionLoss(gamma=gamma if "focal" in kind else 0.0, weight=weight)
