"""Detection as a LightningModule over torchvision's detector API.

Training feeds the detector a list of images and a list of target dicts and minimises the sum
of the losses it returns; evaluation takes its per-image predictions. The data's class
indices (0..K-1) become the detector's 1..K (0 is the background) and back. The score
threshold of precision / recall / F1 is chosen on each validation pass and kept as a buffer,
so the selected checkpoint carries the threshold of its own validation and the test never
tunes it. With ``runner.uncertainty`` (``tta``: the 4 flipped views; ``mc_dropout`` for a
detector with dropout) validation and test detect through the passes fused
(:mod:`medbench.tasks.detection.box_fusion`), so the threshold is chosen on the fused scores
the test scores, and each test image keeps its boxes' mean ``mutual_info``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torchmetrics import MetricCollection

from medbench.errors import ConfigError, TrainingError
from medbench.metrics.detection import DetectionScores, per_image
from medbench.tasks.detection.box_fusion import fuse_passes, unflip_boxes
from medbench.tasks.detection.family import BACKENDS
from medbench.tasks.module import FamilyModule
from medbench.tasks.stochastic import stochastic_passes

EXAMPLES = 4  # test images kept for the drawn boxes


def check_scoring_options(run: Mapping[str, Any]) -> None:
    """One-line errors for a runner's mAP backend and match IoU (runners other than the
    Lightning one, whose options the family checks when it builds its module)."""
    if run["map_backend"] not in BACKENDS:
        raise ConfigError(f"runner.map_backend: '{run['map_backend']}' is not one of "
                          f"{', '.join(BACKENDS)}")
    if not 0 < float(run["match_iou"]) < 1:
        raise ConfigError(f"runner.match_iou: expected a value in (0, 1), got {run['match_iou']}")


def scored_split(scores: DetectionScores, matches: list[Any], indices: list[int],
                 examples: list[dict[str, Any]], threshold: float | None,
                 label_names: Sequence[str]) -> tuple[dict[str, float], dict[str, Any]]:
    """A split's scores (threshold None: chosen here) and the per-image rows a runner returns,
    the drawn examples cut to the detections kept at the threshold (runners other than the
    Lightning one: R-CNN, patch heatmaps)."""
    results = scores.results(threshold)
    rows = {"index": torch.as_tensor(indices),
            **{k: torch.as_tensor(v) for k, v in per_image(matches, results["threshold"]).items()}}
    for example in examples:
        pred = example.pop("pred")
        kept = pred["scores"] >= results["threshold"]
        example.update({k: pred[k][kept].numpy() for k in ("boxes", "labels", "scores")})
    rows["examples"], rows["label_names"] = examples, list(label_names)
    return results, rows


class DetectionModule(FamilyModule):
    """Batches: ``image`` (B, C, H, W) or a list of (C, H, W), ``target`` a list of
    ``{"boxes": (N, 4) xyxy px, "labels": (N,)}``."""

    def __init__(self, net: nn.Module, label_names: Sequence[str],
                 optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None,
                 iou: float = 0.5, backend: str = "faster_coco_eval",
                 uncertainty: str | None = None, uncertainty_passes: int = 20) -> None:
        super().__init__(net, MetricCollection({}), optimizer, scheduler)
        self.uncertainty, self.uncertainty_passes = uncertainty, uncertainty_passes
        self._mutual_info: list[float] = []
        self.label_names = list(label_names)
        self.val_scores = DetectionScores(label_names, iou, backend)
        self.test_scores = DetectionScores(label_names, iou, backend)
        self.register_buffer("score_threshold", torch.tensor(0.5, dtype=torch.float64))
        self.test_examples: list[dict[str, Any]] = []

    @staticmethod
    def _images(batch: dict[str, Any]) -> list[torch.Tensor]:
        return list(batch["image"])

    @staticmethod
    def _targets(target: Sequence[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        return [{"boxes": t["boxes"].float(), "labels": t["labels"] + 1} for t in target]

    def detect(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Per image ``boxes``, ``scores`` and ``labels`` (the data's indices, from 0)."""
        if self.uncertainty is not None:
            return [self._fused(image) for image in images]
        return [_data_classes(p) for p in self.net(images)]

    def _fused(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """One image detected through the passes, fused; its mutual information kept."""
        height, width = image.shape[-2:]
        passes = stochastic_passes(
            lambda views: self.net(list(views)), self.net, image[None], self.uncertainty,
            self.uncertainty_passes,
            lambda out, dims: unflip_boxes(out[0], dims, height, width))
        fused, information = fuse_passes([_data_classes(p) for p in passes], height, width)
        self._mutual_info.append(information)
        return {k: v.to(image.device) for k, v in fused.items()}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.net(self._images(batch), self._targets(batch["target"]))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            lr = self.optimizers().param_groups[0]["lr"]
            raise TrainingError(
                f"training loss is {loss.item()} at epoch {self.current_epoch} step "
                f"{self.global_step} (lr={lr:g}): lower runner.optimizer.lr or check the boxes")
        size = len(batch["index"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=size)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, on_step=False,
                      on_epoch=True, batch_size=size)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.val_scores.update(self.detect(self._images(batch)), batch["target"])

    def on_validation_epoch_end(self) -> None:
        results = self.val_scores.results()
        self.score_threshold.fill_(results["threshold"])
        self.log_dict({f"val/{k}": float(v) for k, v in results.items()})
        self.val_scores.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        images = self._images(batch)
        self._mutual_info.clear()
        preds = self.detect(images)
        matches = self.test_scores.update(preds, batch["target"])
        rows = per_image(matches, float(self.score_threshold))
        if self._mutual_info:
            rows["mutual_info"] = np.asarray(self._mutual_info)
        self._test_batches.append({"index": batch["index"],
                                   **{k: torch.as_tensor(v) for k, v in rows.items()}})
        for i, (pred, target) in enumerate(zip(preds, batch["target"], strict=True)):
            if len(self.test_examples) < EXAMPLES:
                kept = pred["scores"] >= self.score_threshold
                self.test_examples.append({
                    "index": int(batch["index"][i]), "image": images[i].cpu().numpy(),
                    "true_boxes": target["boxes"].cpu().numpy(),
                    "true_labels": target["labels"].cpu().numpy(),
                    "boxes": pred["boxes"][kept].cpu().numpy(),
                    "labels": pred["labels"][kept].cpu().numpy(),
                    "scores": pred["scores"][kept].cpu().numpy()})

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.test_examples.clear()
        self.test_scores.reset()

    def on_test_epoch_end(self) -> None:
        results = self.test_scores.results(float(self.score_threshold))
        self.log_dict({f"test/{k}": float(v) for k, v in results.items()})
        super().on_test_epoch_end()
        self.log_uncertainty_means()
        self.test_predictions["examples"] = list(self.test_examples)  # for the drawings
        self.test_predictions["label_names"] = list(self.label_names)
        self.test_scores.reset()


def _data_classes(prediction: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision detection with the data's class indices (from 0); the one-stage heads
    score the background index too (it is never a target): dropped."""
    kept = prediction["labels"] > 0
    return {"boxes": prediction["boxes"][kept], "scores": prediction["scores"][kept],
            "labels": prediction["labels"][kept] - 1}
