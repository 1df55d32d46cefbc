"""Predictive uncertainty from several stochastic passes over one item (Monte-Carlo dropout,
test-time augmentation, the members of an ensemble): the predictive mean, its entropy, and the
mutual information between the prediction and the passes (the part of the entropy the passes
disagree on: epistemic), in nats. Multi-label items sum their labels' binary entropies."""

from __future__ import annotations

import torch


def entropy(probs: torch.Tensor, multilabel: bool = False) -> torch.Tensor:
    """Entropy over the last axis (0 log 0 = 0); multi-label: the sum of binary entropies."""
    value = -torch.special.xlogy(probs, probs)
    if multilabel:
        value = value - torch.special.xlogy(1 - probs, 1 - probs)
    return value.sum(-1)


def predictive_summary(probs: torch.Tensor, multilabel: bool = False) -> dict[str, torch.Tensor]:
    """``probs`` (T passes, N items, C) -> per item ``probs`` (the mean, N x C), ``entropy``
    (of the mean), ``mutual_info`` (entropy minus the passes' mean entropy, >= 0) and
    ``variance`` (of the passes, summed over classes)."""
    probs = probs.detach().double()
    mean = probs.mean(0)
    total = entropy(mean, multilabel)
    expected = entropy(probs, multilabel).mean(0)
    return {"probs": mean.float(), "entropy": total.float(),
            "mutual_info": (total - expected).clamp_min(0).float(),
            "variance": probs.var(0, unbiased=False).sum(-1).float()}
