"""Localization metrics: one predicted object per image against one true object.

Predictions are ``(B, 4 + C)``: the box as centre x, centre y, width, height normalised to
the image (the survey's equation 3), then the C class probabilities (class 0: no object).
Targets are ``{"box": (B, 4) same form, "label": (B,), "size": (B, 2) width, height px}``.

Box metrics score the images that hold an object (label > 0), whatever class was predicted:
mean IoU, mean centre error in pixels of the original image (``size``), and ``acc50``: the
share whose predicted class is right **and** IoU >= 0.5 (ImageNet's localization rule). IoU
is computed in normalised coordinates: a box's IoU is unchanged by scaling either axis.
Class metrics score every image: sensitivity and specificity one-vs-rest per object class
(classes 1..C-1; with one object class, object present vs not), averaged over the classes
the targets hold; ``class_acc`` the share of images whose class is right.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection


def cxcywh_to_xyxy(box: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre x, centre y, width, height -> x_min, y_min, x_max, y_max."""
    cx, cy, w, h = box.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def pair_iou(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """(B,) IoU of each pair of (B, 4) cxcywh boxes (0 for boxes without area)."""
    a, b = cxcywh_to_xyxy(pred.double()), cxcywh_to_xyxy(true.double())
    wh = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda x: (x[:, 2:] - x[:, :2]).clamp(min=0).prod(-1)  # noqa: E731
    union = area(a) + area(b) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def centre_error(pred: torch.Tensor, true: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """(B,) distance in pixels between the boxes' centres in images of ``size`` (w, h px)."""
    return ((pred[:, :2].double() - true[:, :2].double()) * size.double()).norm(dim=-1)


def per_image(preds: torch.Tensor, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per image: ``iou``, ``centre_error`` (NaN without a true object), the predicted
    ``pred_label`` and its probability ``score``, ``hit50`` (class right and IoU >= 0.5;
    NaN without a true object)."""
    box, probs = preds[:, :4], preds[:, 4:]
    label = target["label"].long()
    present = label > 0
    nan = torch.full(label.shape, float("nan"), dtype=torch.float64, device=preds.device)
    iou = torch.where(present, pair_iou(box, target["box"]), nan)
    error = torch.where(present, centre_error(box, target["box"], target["size"]), nan)
    score, pred_label = probs.max(-1)
    hit = ((pred_label == label) & (iou >= 0.5)).double()
    return {"iou": iou, "centre_error": error, "pred_label": pred_label,
            "score": score.double(), "hit50": torch.where(present, hit, nan)}


class _Localization(Metric):
    """Keeps per-image values; a subclass's :meth:`compute` reduces them."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        for name in ("iou", "centre_error", "hit50", "label", "pred_label"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: dict[str, torch.Tensor]) -> None:
        values = per_image(preds, target)
        for name in ("iou", "centre_error", "hit50", "pred_label"):
            getattr(self, name).append(values[name])
        self.label.append(target["label"].long())

    def _cat(self, name: str) -> torch.Tensor:
        values = getattr(self, name)
        return torch.cat(values) if isinstance(values, list) else values

    def _mean(self, name: str) -> torch.Tensor:
        values = self._cat(name)
        return values[~values.isnan()].mean() if len(values) else torch.tensor(float("nan"))

    def _one_vs_rest(self, positive: bool) -> torch.Tensor:
        label, pred = self._cat("label"), self._cat("pred_label")
        rates = []
        for c in range(1, self.num_classes):
            actual = (label == c) if positive else (label != c)
            if (label == c).any() and actual.any():  # classes the targets hold
                rates.append(((pred == c) == positive)[actual].double().mean())
        return torch.stack(rates).mean() if rates else torch.tensor(float("nan"))


class MeanIoU(_Localization):
    """Mean IoU of the predicted and true boxes over images with an object."""

    higher_is_better = True

    def compute(self) -> torch.Tensor:
        return self._mean("iou")


class CentreError(_Localization):
    """Mean distance in pixels (original image) between predicted and true box centres."""

    higher_is_better = False

    def compute(self) -> torch.Tensor:
        return self._mean("centre_error")


class AccuracyAtIoU(_Localization):
    """Share of images with an object whose class is right and IoU >= 0.5."""

    higher_is_better = True

    def compute(self) -> torch.Tensor:
        return self._mean("hit50")


class ClassSensitivity(_Localization):
    """Mean over object classes of the share of their images predicted as that class."""

    higher_is_better = True

    def compute(self) -> torch.Tensor:
        return self._one_vs_rest(True)


class ClassSpecificity(_Localization):
    """Mean over object classes of the share of other images not predicted as that class."""

    higher_is_better = True

    def compute(self) -> torch.Tensor:
        return self._one_vs_rest(False)


class ClassAccuracy(_Localization):
    """Share of images whose predicted class (``none`` included) is right."""

    higher_is_better = True

    def compute(self) -> torch.Tensor:
        label, pred = self._cat("label"), self._cat("pred_label")
        return (label == pred).double().mean() if len(label) else torch.tensor(float("nan"))


METRICS = {"iou": MeanIoU, "centre_error": CentreError, "acc50": AccuracyAtIoU,
           "sensitivity": ClassSensitivity, "specificity": ClassSpecificity,
           "class_acc": ClassAccuracy}


def localization_metrics(num_classes: int) -> MetricCollection:
    """Every localization metric, keyed by the name the family logs it under."""
    return MetricCollection({name: cls(num_classes) for name, cls in METRICS.items()},
                            compute_groups=False)
