"""Saliency targets of the localization family (imported by ``targets_for``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from medbench.data.base import DatasetInfo
from medbench.explain.targets import SaliencyTargets, register_targets
from medbench.metrics.localization import cxcywh_to_xyxy, per_image

BOX = 4  # the network's outputs: 4 box logits, then the class logits


class ClassProbabilityTarget:
    """The softmax probability of ``category`` over the class logits alone (the package's
    softmax target would mix in the box logits)."""

    def __init__(self, category: int) -> None:
        self.category = category

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output[BOX:].softmax(-1)[self.category]


@register_targets("localization")
class LocalizationTargets(SaliencyTargets):
    """Maps of the predicted class's logit (an output after the four box logits: the object
    the box was drawn for, class 0 being "none"); confidence the predicted class's
    probability; worst: the lowest IoU of the predicted with the true box (an image without a
    true object: the probability given to "none"); faithfulness: the predicted class's
    probability; the predicted box drawn on each overlay."""

    def scores(self, outputs: torch.Tensor, targets: dict[str, torch.Tensor],
               info: DatasetInfo) -> dict[str, torch.Tensor]:
        predictions = self.predicted(outputs, targets)
        values = per_image(predictions, targets)
        none = predictions[:, BOX].double()  # the probability of "no object"
        true = torch.where(torch.isnan(values["iou"]), none, values["iou"])
        return {"predicted": values["pred_label"], "confidence": values["score"].float(),
                "true_score": true.float(), "iou": values["iou"].float()}

    def predicted(self, outputs: torch.Tensor, targets: Any) -> torch.Tensor:
        """(B, 4 + C): the box in 0..1 (centre x, centre y, width, height), then the class
        probabilities, as the family's test scores them."""
        outputs = outputs.float()
        return torch.cat([outputs[:, :BOX].sigmoid(), outputs[:, BOX:].softmax(-1)], dim=1)

    def map_targets(self, predicted: torch.Tensor) -> list[Callable]:
        return [ClassifierOutputTarget(BOX + int(p[BOX:].argmax())) for p in predicted]

    def faithfulness_targets(self, predicted: torch.Tensor) -> list[Callable]:
        return [ClassProbabilityTarget(int(p[BOX:].argmax())) for p in predicted]

    def annotate(self, picture: np.ndarray, predicted: torch.Tensor, item: int) -> np.ndarray:
        from PIL import Image, ImageDraw

        height, width = picture.shape[:2]
        box = cxcywh_to_xyxy(predicted[item, :BOX][None].cpu())[0]
        corners = (box * torch.tensor([width, height, width, height])).tolist()
        image = Image.fromarray(picture)
        ImageDraw.Draw(image).rectangle(corners, outline=(255, 255, 255), width=2)
        return np.asarray(image)
