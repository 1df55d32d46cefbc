"""Classification metric collections (torchmetrics), one builder per label type.

Conventions follow MedMNIST v2: ACC is argmax (0.5 threshold for binary / multi-label), AUC is
the macro mean of one-vs-rest AUCs. Sensitivity = recall, specificity, precision, F1 and
Cohen's kappa (quadratic weights for ordinal labels) are macro-averaged over classes. Every
label type adds calibration (ECE, Brier: ``metrics/calibration.py``) and selective prediction
(AURC, accuracy at 90% coverage: ``metrics/selective.py``).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics import classification as tmc

from medbench.metrics.calibration import calibration_metrics
from medbench.metrics.selective import selective_metrics

# Metric names; their directions are declared with the family (tasks/classification/family.py)
ACC, AUC, SENSITIVITY, SPECIFICITY, PRECISION, F1, KAPPA = (
    "acc", "auc", "sensitivity", "specificity", "precision", "f1", "kappa")


class MultilabelCohenKappa(Metric):
    """Mean of per-label binary Cohen's kappa (torchmetrics has no multi-label kappa)."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, num_labels: int, threshold: float = 0.5) -> None:
        super().__init__()
        self.per_label = torch.nn.ModuleList(
            tmc.BinaryCohenKappa(threshold=threshold) for _ in range(num_labels))

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        for i, metric in enumerate(self.per_label):
            metric.update(preds[:, i], target[:, i])

    def compute(self) -> torch.Tensor:
        return torch.stack([m.compute() for m in self.per_label]).mean()

    def reset(self) -> None:
        super().reset()
        for metric in self.per_label:
            metric.reset()


def scalar_metrics(label_type: str, num_classes: int) -> MetricCollection:
    """Scalar metrics for ``label_type`` in binary / multiclass / multilabel / ordinal.

    Inputs: probabilities of shape (N, C) (binary uses the positive column) and int targets.
    """
    if label_type == "binary":
        metrics = {
            ACC: tmc.BinaryAccuracy(), AUC: tmc.BinaryAUROC(),
            SENSITIVITY: tmc.BinaryRecall(), SPECIFICITY: tmc.BinarySpecificity(),
            PRECISION: tmc.BinaryPrecision(), F1: tmc.BinaryF1Score(),
            KAPPA: tmc.BinaryCohenKappa(),
        }
    elif label_type in ("multiclass", "ordinal"):
        c = dict(num_classes=num_classes, average="macro")
        metrics = {
            ACC: tmc.MulticlassAccuracy(num_classes=num_classes, average="micro"),
            AUC: tmc.MulticlassAUROC(**c), SENSITIVITY: tmc.MulticlassRecall(**c),
            SPECIFICITY: tmc.MulticlassSpecificity(**c), PRECISION: tmc.MulticlassPrecision(**c),
            F1: tmc.MulticlassF1Score(**c),
            KAPPA: tmc.MulticlassCohenKappa(
                num_classes=num_classes, weights="quadratic" if label_type == "ordinal" else None),
        }
    elif label_type == "multilabel":
        c = dict(num_labels=num_classes, average="macro")
        metrics = {
            ACC: tmc.MultilabelAccuracy(**c), AUC: tmc.MultilabelAUROC(**c),
            SENSITIVITY: tmc.MultilabelRecall(**c), SPECIFICITY: tmc.MultilabelSpecificity(**c),
            PRECISION: tmc.MultilabelPrecision(**c), F1: tmc.MultilabelF1Score(**c),
            KAPPA: MultilabelCohenKappa(num_classes),
        }
    else:
        raise ValueError(f"unknown label type '{label_type}'")
    metrics.update(calibration_metrics(label_type, num_classes))
    metrics.update(selective_metrics(label_type))
    return MetricCollection(metrics)


def confusion_matrix(label_type: str, num_classes: int) -> Metric:
    if label_type == "binary":
        return tmc.BinaryConfusionMatrix()
    if label_type == "multilabel":
        return tmc.MultilabelConfusionMatrix(num_labels=num_classes)
    return tmc.MulticlassConfusionMatrix(num_classes=num_classes)
