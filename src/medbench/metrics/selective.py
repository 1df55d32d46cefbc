"""Selective prediction: accuracy on the retained cases when the least confident are referred.

Confidence is the predicted class's probability (the softmax response; for binary labels
max(p, 1 - p), whose ranking equals that of the predictive entropy). The k most confident of
n cases are retained at coverage k / n; the risk there is 1 - their accuracy. AURC is the mean
risk over k = 1 .. n (the area under the risk-coverage curve, Geifman et al. 2018; lower is
better); equal confidences keep the loader's order (a stable sort), so a run repeats exactly.
Multi-label items are referred whole: confidence and correctness are means over the labels.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

AURC, SELECTIVE_ACC_AT_90 = "aurc", "selective_acc_at_90"


def confidence_and_correct(preds: torch.Tensor, target: torch.Tensor,
                           label_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item: the confidence of the prediction and whether it is right (1.0 / 0.0, a share
    of labels for multi-label). Inputs as the metric collections take them: binary the
    positive-class probability (threshold 0.5), others (N, C) probabilities."""
    if label_type == "binary" or label_type == "multilabel":
        decided = preds >= 0.5
        confidence = torch.where(decided, preds, 1 - preds)
        correct = (decided == target.bool()).to(preds.dtype)
        if preds.dim() == 2:
            return confidence.mean(dim=1), correct.mean(dim=1)
        return confidence, correct
    confidence, predicted = preds.max(dim=1)
    return confidence, (predicted == target).to(preds.dtype)


def retained_order(confidence: torch.Tensor) -> torch.Tensor:
    """Items from the most to the least confident (stable: ties keep their order)."""
    return torch.sort(confidence, descending=True, stable=True).indices


def selective_accuracy(confidence: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Accuracy of the k most confident items for k = 1 .. n (coverage k / n)."""
    ordered = correct[retained_order(confidence)].double()
    return ordered.cumsum(0) / torch.arange(1, len(ordered) + 1, dtype=torch.float64)


def aurc(confidence: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Area under the risk-coverage curve: the mean of 1 - selective accuracy."""
    return (1 - selective_accuracy(confidence, correct)).mean()


def retained(n: int, coverage: float) -> int:
    """How many of ``n`` items a coverage keeps (at least one)."""
    return max(1, math.ceil(coverage * n - 1e-9))


class _Selective(Metric):
    """Keeps each item's confidence and correctness; subclasses reduce them."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, label_type: str) -> None:
        super().__init__()
        self.label_type = label_type
        self.add_state("confidence", [], dist_reduce_fx="cat")
        self.add_state("correct", [], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        confidence, correct = confidence_and_correct(preds, target, self.label_type)
        self.confidence.append(confidence)
        self.correct.append(correct)

    def _states(self) -> tuple[torch.Tensor, torch.Tensor]:
        return dim_zero_cat(self.confidence), dim_zero_cat(self.correct)


class SelectiveRisk(_Selective):
    """AURC: area under the risk-coverage curve (lower is better)."""

    higher_is_better = False

    def compute(self) -> torch.Tensor:
        return aurc(*self._states()).float()


class SelectiveAccuracy(_Selective):
    """Accuracy on the most confident ``coverage`` share of the items."""

    higher_is_better = True

    def __init__(self, label_type: str, coverage: float = 0.9) -> None:
        super().__init__(label_type)
        self.coverage = coverage

    def compute(self) -> torch.Tensor:
        confidence, correct = self._states()
        return selective_accuracy(confidence, correct)[retained(len(correct),
                                                                self.coverage) - 1].float()


def selective_metrics(label_type: str) -> dict[str, Metric]:
    """AURC and the accuracy at 90% coverage."""
    return {AURC: SelectiveRisk(label_type),
            SELECTIVE_ACC_AT_90: SelectiveAccuracy(label_type, 0.9)}
