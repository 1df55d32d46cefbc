"""Calibration of class probabilities: ECE, Brier score and temperature scaling.

ECE is top-label and L1 over :data:`N_BINS` equal-width confidence bins (Guo et al. 2017;
torchmetrics' ``MulticlassCalibrationError``): for binary labels the confidence is that of the
predicted class, max(p, 1 - p), as for multi-class labels (torchmetrics' binary version bins
the positive-class probability instead); multi-label ECE is the mean of the labels' binary
ECEs. The Brier score is the mean squared distance of the probabilities from the one-hot
target: binary (p - y)^2 on the positive-class probability (scikit-learn's
``brier_score_loss``, 0 to 1), multi-class the sum over classes (Brier 1950, 0 to 2),
multi-label the mean of the labels' binary scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from torchmetrics import Metric
from torchmetrics import classification as tmc

ECE, BRIER = "ece", "brier"
N_BINS = 15  # equal-width confidence bins of the ECE and the reliability diagram


class BinaryTopLabelCalibrationError(tmc.MulticlassCalibrationError):
    """Top-label ECE of binary labels from the positive-class probability."""

    def __init__(self, n_bins: int = N_BINS) -> None:
        super().__init__(num_classes=2, n_bins=n_bins, norm="l1")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(torch.stack([1 - preds, preds], dim=1), target)


class MultilabelCalibrationError(Metric):
    """Mean over labels of each label's top-label binary ECE (torchmetrics has no multi-label
    calibration error)."""

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, num_labels: int, n_bins: int = N_BINS) -> None:
        super().__init__()
        self.per_label = torch.nn.ModuleList(
            BinaryTopLabelCalibrationError(n_bins) for _ in range(num_labels))

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        for i, metric in enumerate(self.per_label):
            metric.update(preds[:, i], target[:, i])

    def compute(self) -> torch.Tensor:
        return torch.stack([m.compute() for m in self.per_label]).mean()

    def reset(self) -> None:
        super().reset()
        for metric in self.per_label:
            metric.reset()


class BrierScore(Metric):
    """Mean squared error of probabilities against one-hot targets (see the module's note).

    torchmetrics 1.9 has no Brier score; two summed states keep it exact across batches and
    DDP ranks without storing predictions."""

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, label_type: str) -> None:
        super().__init__()
        self.label_type = label_type
        self.add_state("squared", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        preds = preds.double()
        if self.label_type == "binary" or self.label_type == "multilabel":
            per_item = (preds - target.double()) ** 2
            if per_item.dim() == 2:  # multi-label: the mean over labels
                per_item = per_item.mean(dim=1)
        else:
            onehot = F.one_hot(target.long(), preds.shape[1]).double()
            per_item = ((preds - onehot) ** 2).sum(dim=1)
        self.squared += per_item.sum()
        self.count += per_item.numel()

    def compute(self) -> torch.Tensor:
        return (self.squared / self.count).float()


def calibration_metrics(label_type: str, num_classes: int) -> dict[str, Metric]:
    """ECE and Brier score for ``label_type`` (binary metrics take the positive-class
    probability, the others (N, C) probabilities)."""
    if label_type == "binary":
        ece: Metric = BinaryTopLabelCalibrationError()
    elif label_type == "multilabel":
        ece = MultilabelCalibrationError(num_classes)
    else:
        ece = tmc.MulticlassCalibrationError(num_classes=num_classes, n_bins=N_BINS, norm="l1")
    return {ECE: ece, BRIER: BrierScore(label_type)}


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature and the validation NLL at T = 1 and at T."""

    temperature: float
    nll_before: float
    nll_after: float


def nll(logits: torch.Tensor, labels: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Mean negative log-likelihood (unweighted): cross-entropy, or BCE per label."""
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    return F.cross_entropy(logits, labels.long())


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, multilabel: bool = False,
                    max_iter: int = 100) -> TemperatureFit:
    """The T minimising the NLL of ``logits / T`` (Guo et al. 2017): LBFGS on log T from T = 1,
    in float64 on the CPU (deterministic). T = 1 is kept if the fit does not lower the NLL.
    Runs with autograd on, also inside Lightning's evaluation loop (inference mode)."""
    with torch.inference_mode(False), torch.enable_grad():
        return _fit(logits.detach().double().cpu().clone(), labels.detach().cpu().clone(),
                    multilabel, max_iter)


def _fit(logits: torch.Tensor, labels: torch.Tensor, multilabel: bool,
         max_iter: int) -> TemperatureFit:
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nll(logits / log_t.exp(), labels, multilabel)
        loss.backward()
        return loss

    with torch.no_grad():
        before = float(nll(logits, labels, multilabel))
    optimizer.step(closure)
    with torch.no_grad():
        temperature = float(log_t.exp())
        after = float(nll(logits / temperature, labels, multilabel))
    if not math.isfinite(after) or after > before:
        temperature, after = 1.0, before
    return TemperatureFit(temperature, before, after)


class TemperatureScaled(torch.nn.Module):
    """``net`` whose logits are divided by a fitted temperature: the network a calibrated
    run's test used, rebuilt for ``medbench predict`` and served models."""

    def __init__(self, net: torch.nn.Module, temperature: float) -> None:
        super().__init__()
        self.net, self.temperature = net, float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) / self.temperature
