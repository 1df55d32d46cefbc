"""Metrics as ECG beat-classification papers report them (AAMI classes N, S, V, F, Q).

- per class (torchmetrics, ``average=None`` through ``ClasswiseWrapper``): sensitivity (recall,
  Se), positive predictive value (precision, +P), specificity and F1, logged as
  ``<split>/sensitivity_<class>``, ``ppv_<class>``, ``specificity_<class>``, ``f1_<class>``;
  overall accuracy and Cohen's kappa are the classification family's ``acc`` and ``kappa``.
- ``jkappa``: the jk index of Mondejar-Guerra et al. (Biomed Signal Process Control 47:41-48,
  2019; their ``evaluation_AAMI.py``): ``jk = 1/2 * kappa + 1/8 * (Se_S + Se_V + P+_S + P+_V)``
  with Cohen's (unweighted) kappa over the whole confusion matrix. Written here because
  torchmetrics has no such index; it reads the confusion matrix torchmetrics accumulates.
  Se and +P are plain confusion-matrix ratios (0 for a class never present or never
  predicted); EC57's exception for F beats labelled V is not applied.

- ``fpr`` (binary labels): the false positive rate FP / (FP + TN) at the 0.5 threshold (0 when
  there is no negative), as Lilhore et al. (2023) report it beside accuracy and the true
  positive rate (the family's ``sensitivity``); lower is better.

A class metric reported where the class is absent (no true beat: Se 0 by torchmetrics'
convention) means "undefined"; Q has 7 beats in DS2.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics import classification as tmc
from torchmetrics.wrappers import ClasswiseWrapper

from medbench.errors import ConfigError

JKAPPA = "jkappa"
PER_CLASS = "per_class"
FPR = "fpr"
GROUPS = (PER_CLASS, JKAPPA, FPR)
BINARY_GROUPS = (FPR,)  # the other groups need multi-class labels


def cohen_kappa(confusion: torch.Tensor) -> torch.Tensor:
    """Cohen's kappa of a (true, predicted) confusion matrix."""
    confusion = confusion.double()
    total = confusion.sum()
    observed = confusion.diagonal().sum() / total
    expected = (confusion.sum(1) * confusion.sum(0)).sum() / total**2
    return (observed - expected) / (1 - expected)


def jkappa_index(confusion: torch.Tensor, s: int, v: int) -> torch.Tensor:
    """Mondejar-Guerra's jk index of a (true, predicted) confusion matrix; ``s`` and ``v``
    are the indices of the S and V classes."""
    confusion = confusion.double()
    recall = confusion.diagonal() / confusion.sum(1).clamp_min(1)
    precision = confusion.diagonal() / confusion.sum(0).clamp_min(1)
    j = recall[s] + recall[v] + precision[s] + precision[v]
    return 0.5 * cohen_kappa(confusion) + 0.125 * j


class JKappaIndex(Metric):
    """The jk index over batches of class probabilities (N, C) and labels (N,)."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, num_classes: int, s_index: int, v_index: int) -> None:
        super().__init__()
        self.confusion = tmc.MulticlassConfusionMatrix(num_classes)
        self.s_index, self.v_index = s_index, v_index

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.confusion.update(preds, target)

    def compute(self) -> torch.Tensor:
        return jkappa_index(self.confusion.compute(), self.s_index, self.v_index).float()

    def reset(self) -> None:
        super().reset()
        self.confusion.reset()


class FalsePositiveRate(tmc.BinaryStatScores):
    """FP / (FP + TN) of binary probabilities at ``threshold`` (0 without negatives)."""

    higher_is_better = False

    def compute(self) -> torch.Tensor:
        _, fp, tn, _, _ = super().compute()
        return (fp / (fp + tn).clamp_min(1)).float()


def per_class_metrics(num_classes: int, label_names: list[str]) -> dict[str, Metric]:
    """Se, +P, specificity and F1 of every class, keyed ``<name>_<class>``."""
    labels = [str(name) for name in label_names] or [str(i) for i in range(num_classes)]
    options = dict(num_classes=num_classes, average=None)
    return {name: ClasswiseWrapper(metric(**options), labels=labels, prefix=f"{name}_")
            for name, metric in (("sensitivity", tmc.MulticlassRecall),
                                 ("ppv", tmc.MulticlassPrecision),
                                 ("specificity", tmc.MulticlassSpecificity),
                                 ("f1", tmc.MulticlassF1Score))}


def extra_metrics(groups: tuple[str, ...], label_type: str, num_classes: int,
                  label_names: list[str]) -> MetricCollection | None:
    """The optional metric groups a dataset asks for (``DatasetInfo.extra_metrics``)."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ConfigError(f"data.extra_metrics: unknown group(s) {unknown} (known: {GROUPS})")
    if not groups:
        return None
    multiclass = [g for g in groups if g not in BINARY_GROUPS]
    if multiclass and label_type not in ("multiclass", "ordinal"):
        raise ConfigError(f"data.extra_metrics {multiclass} need multi-class labels, the data "
                          f"has {label_type} labels")
    binary = [g for g in groups if g in BINARY_GROUPS]
    if binary and label_type != "binary":
        raise ConfigError(f"data.extra_metrics {binary} need binary labels, the data has "
                          f"{label_type} labels")
    metrics: dict[str, Metric] = {}
    if FPR in groups:
        metrics[FPR] = FalsePositiveRate()
    if PER_CLASS in groups:
        metrics.update(per_class_metrics(num_classes, label_names))
    if JKAPPA in groups:
        if not {"S", "V"} <= set(label_names):
            raise ConfigError(f"data.extra_metrics: jkappa needs classes named S and V "
                              f"(AAMI), the data's are {label_names}")
        metrics[JKAPPA] = JKappaIndex(num_classes, label_names.index("S"),
                                      label_names.index("V"))
    return MetricCollection(metrics)
