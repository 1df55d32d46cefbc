"""Localization as a LightningModule: the network returns ``(B, 4 + C)``, box logits then
class logits; the box is their sigmoid (centre x, centre y, width, height in 0..1).

Loss: cross-entropy of the class (0: no object) plus, over the images holding an object,
``box_weight`` x (smooth L1 of the normalised box + ``giou_weight`` x the GIoU loss,
torchvision.ops). A network that defines ``training_loss(images, target)`` (the pyramid
patch localizer of survey 7.2.1 trains its patch classifier that way) supplies its own
training loss; validation and test score its ``(B, 4 + C)`` output as any other's.

Per test image the class probabilities' entropy is kept (``entropy``, nats); with
``runner.uncertainty`` (``mc_dropout`` or ``tta``: flipped views, the box flipped back by
negating its centre's logit) the prediction is the mean of the passes' boxes and
probabilities, and the passes' ``mutual_info`` and ``box_std`` (the boxes' standard deviation,
mean of the four coordinates, in image fractions) are kept too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchvision.ops import generalized_box_iou_loss

from medbench.errors import TrainingError
from medbench.metrics.localization import cxcywh_to_xyxy, per_image
from medbench.tasks.module import FamilyModule
from medbench.tasks.stochastic import PassSummary, class_entropy, stochastic_passes

EXAMPLES = 6  # test images kept for the drawn boxes


class LocalizationModule(FamilyModule):
    """Batches: ``image`` (B, C, H, W), ``target`` ``{"box": (B, 4), "label": (B,),
    "size": (B, 2)}`` (:class:`medbench.data.targets.OneBox`)."""

    def __init__(self, net: nn.Module, metrics: MetricCollection, label_names: Sequence[str],
                 optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None,
                 box_weight: float = 5.0, giou_weight: float = 1.0,
                 uncertainty: str | None = None, uncertainty_passes: int = 20) -> None:
        super().__init__(net, metrics, optimizer, scheduler)
        self.uncertainty, self.uncertainty_passes = uncertainty, uncertainty_passes
        self._summary: dict[str, torch.Tensor] = {}
        self.label_names = list(label_names)
        self.box_weight, self.giou_weight = box_weight, giou_weight
        self.test_examples: list[dict[str, Any]] = []

    def loss(self, outputs: torch.Tensor, target: dict[str, torch.Tensor]) -> torch.Tensor:
        label = target["label"].long()
        loss = F.cross_entropy(outputs[:, 4:], label)
        present = label > 0
        if present.any():
            box, true = outputs[present, :4].sigmoid(), target["box"][present].float()
            box_loss = F.smooth_l1_loss(box, true, beta=0.05)
            if self.giou_weight:
                box_loss = box_loss + self.giou_weight * generalized_box_iou_loss(
                    cxcywh_to_xyxy(box), cxcywh_to_xyxy(true), reduction="mean")
            loss = loss + self.box_weight * box_loss
        return loss

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """(B, 4 + C): the box in 0..1, then the class probabilities."""
        return torch.cat([outputs[:, :4].sigmoid(), outputs[:, 4:].softmax(-1)], dim=1)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        own = getattr(self.net, "training_loss", None)
        if own is None:
            return super().training_step(batch, batch_idx)
        loss = own(batch["image"], batch["target"])
        if not torch.isfinite(loss):
            raise TrainingError(f"training loss is {loss.item()} at epoch {self.current_epoch} "
                                f"step {self.global_step}: lower runner.optimizer.lr")
        self.log("train/loss", loss, on_step=False, on_epoch=True,
                 batch_size=len(batch["index"]))
        return loss

    def test_outputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.uncertainty is None:
            outputs = self(batch["image"])
            predictions = self.predictions(outputs)
            self._summary = {"entropy": class_entropy(predictions[:, 4:].double()).float()}
            return predictions, self.loss(outputs, batch["target"])
        summary, boxes, first = PassSummary(), [], None
        for outputs in stochastic_passes(self, self.net, batch["image"], self.uncertainty,
                                         self.uncertainty_passes, _unflip_box):
            first = outputs if first is None else first
            predictions = self.predictions(outputs)
            boxes.append(predictions[:, :4].double())
            summary.add(predictions[:, 4:])
        boxes = torch.stack(boxes)
        self._summary = {"entropy": summary.entropy, "mutual_info": summary.mutual_info,
                         "box_std": boxes.std(0, unbiased=False).mean(-1).float()}
        return (torch.cat([boxes.mean(0).float(), summary.mean], dim=1),
                self.loss(first, batch["target"]))

    def per_sample(self, batch: dict[str, Any], predictions: torch.Tensor) -> dict[str, Any]:
        target = batch["target"]
        values = {**per_image(predictions, target), **self._summary}
        for i in range(len(batch["index"])):
            if len(self.test_examples) < EXAMPLES:
                self.test_examples.append({
                    "index": int(batch["index"][i]), "image": batch["image"][i].cpu().numpy(),
                    "true_box": target["box"][i].cpu().numpy(),
                    "label": int(target["label"][i]),
                    "box": predictions[i, :4].cpu().numpy(),
                    "pred_label": int(values["pred_label"][i]),
                    "score": float(values["score"][i])})
        return {"label": target["label"].long(), "true_box": target["box"].float(),
                "size": target["size"].float(), "box": predictions[:, :4].float(), **values}

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.test_examples.clear()

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self.log_uncertainty_means()
        self.test_predictions["examples"] = list(self.test_examples)  # for the drawings
        self.test_examples.clear()


def _unflip_box(outputs: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """A flipped view's ``(B, 4 + C)`` outputs in the image's frame: a flip of the width
    (axis -1) mirrors the centre x, of the height (-2) the centre y; sigmoid(-z) = 1 -
    sigmoid(z), so the centre's logit is negated. Widths, heights and classes are unchanged."""
    outputs = outputs.clone()
    for dim, column in ((-1, 0), (-2, 1)):
        if dim in dims:
            outputs[:, column] = -outputs[:, column]
    return outputs
