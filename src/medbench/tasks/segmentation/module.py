"""Segmentation as a LightningModule: trained on patches, scored on whole images.

Validation and test images go through MONAI's ``sliding_window_inference`` (patch-sized
windows, Gaussian-weighted overlap blending), so images of any size are predicted whole. The
binarisation thresholds are chosen on each validation pass (pooled-Dice optimum, in the field
of view) and kept as a buffer, so the selected checkpoint carries the thresholds of its own
validation and the test never tunes them.

Per test image the predictive entropy of the pixels' class probabilities (nats, mean inside
the FOV: ``entropy``; its map drawn beside the overlays) is kept; with ``runner.uncertainty``
(``mc_dropout`` or ``tta``, :mod:`medbench.tasks.stochastic`) the probabilities are the mean
of the passes and their mutual information is kept too (``mutual_info``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
from torch import nn
from torchmetrics import MetricCollection

from medbench.metrics.segmentation import FovPixelMetrics
from medbench.tasks.module import FamilyModule
from medbench.tasks.stochastic import PassSummary, class_entropy, stochastic_passes

EXAMPLES = 4  # test images kept whole for the overlays


def surface_distances(probs: torch.Tensor, mask: torch.Tensor, fov: torch.Tensor,
                      thresholds: torch.Tensor,
                      spacing: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per image, mean over foreground classes, inside the FOV: the 95th-percentile Hausdorff
    distance (``hd95``) and the symmetric average surface distance (``asd``), both MONAI's, in
    the units of ``spacing`` ((B, dims): a volume's voxel spacing, usually mm), else in pixels;
    NaN when the reference or the prediction is empty (MONAI returns inf or NaN there), so
    such an image is excluded and counted."""
    scale = None if spacing is None else spacing.double().cpu().tolist()
    values: dict[str, list[torch.Tensor]] = {"hd95": [], "asd": []}
    for c in range(1, probs.shape[1]):
        predicted = ((probs[:, c] >= thresholds[c - 1]) & fov)[:, None].float().cpu()
        reference = ((mask == c) & fov)[:, None].float().cpu()
        for name, distance in (
                ("hd95", compute_hausdorff_distance(predicted, reference,
                                                    include_background=True, percentile=95,
                                                    spacing=scale)),
                ("asd", compute_average_surface_distance(predicted, reference,
                                                         include_background=True,
                                                         symmetric=True, spacing=scale))):
            distance = distance[:, 0]
            values[name].append(torch.where(torch.isfinite(distance), distance, torch.nan))
    return {k: torch.stack(v, 1).nanmean(1).double() for k, v in values.items()}


class SegmentationModule(FamilyModule):
    """Batches: ``image`` (B, C, *S), ``target`` {"mask": (B, *S), "fov": (B, *S)}."""

    def __init__(self, net: nn.Module, num_classes: int, loss: nn.Module,
                 optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None,
                 window: Sequence[int], overlap: float = 0.25, window_batch: int = 16,
                 bins: int = 1000, uncertainty: str | None = None,
                 uncertainty_passes: int = 20) -> None:
        super().__init__(net, MetricCollection({}), optimizer, scheduler)
        self.num_classes, self.criterion = num_classes, loss
        self.window, self.overlap, self.window_batch = tuple(window), overlap, window_batch
        self.uncertainty, self.uncertainty_passes = uncertainty, uncertainty_passes
        self.val_pixels = FovPixelMetrics(num_classes, bins)
        self.test_pixels = FovPixelMetrics(num_classes, bins)
        self.register_buffer("thresholds", torch.full((num_classes - 1,), 0.5,
                                                      dtype=torch.float64))
        self.test_examples: list[dict[str, np.ndarray]] = []

    def loss(self, logits: torch.Tensor, target: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.criterion(logits, target["mask"][:, None])

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float().softmax(dim=1)

    def whole(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of whole images, window by window."""
        return sliding_window_inference(images, self.window, self.window_batch, self.net,
                                        overlap=self.overlap, mode="gaussian")

    def test_probabilities(self, images: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Class probabilities of whole test images, the logits the loss reads (the first
        pass) and per-pixel ``entropy`` (and ``mutual_info`` over ``runner.uncertainty``'s
        passes), (B, *S) each."""
        if self.uncertainty is None:
            logits = self.whole(images)
            probs = self.predictions(logits)
            return probs, logits, {"entropy": class_entropy(probs.double()).float()}
        summary, first = PassSummary(), None
        for logits in stochastic_passes(self.whole, self.net, images, self.uncertainty,
                                        self.uncertainty_passes,
                                        lambda out, dims: out.flip(dims) if dims else out):
            first = logits if first is None else first
            summary.add(self.predictions(logits))
        return summary.mean, first, {"entropy": summary.entropy,
                                     "mutual_info": summary.mutual_info}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        logits = self.whole(batch["image"])
        self.log("val/loss", self.loss(logits, batch["target"]), on_epoch=True,
                 batch_size=len(batch["index"]))
        self.val_pixels.update(self.predictions(logits), batch["target"]["mask"],
                               batch["target"]["fov"], batch["index"])

    def on_validation_epoch_end(self) -> None:
        results = self.val_pixels.results()
        thresholds = results.pop("thresholds")
        self.thresholds.copy_(torch.as_tensor(thresholds))
        self.log_dict({f"val/{k}": float(v) for k, v in results.items()})
        self.log("val/threshold", float(np.mean(thresholds)))
        self.val_pixels.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        probs, logits, maps = self.test_probabilities(batch["image"])
        mask, fov = batch["target"]["mask"], batch["target"]["fov"]
        self.log("test/loss", self.loss(logits, batch["target"]), on_epoch=True,
                 batch_size=len(batch["index"]))
        scored = FovPixelMetrics(self.num_classes, self.test_pixels.bins)
        scored.update(probs, mask, fov)
        self.test_pixels.update(probs, mask, fov, batch["index"])
        row = {k: torch.as_tensor(v) for k, v in scored.per_image(self.thresholds.cpu()).items()}
        row.update(surface_distances(probs, mask, fov, self.thresholds.cpu(),
                                     batch["target"].get("spacing")))
        inside = fov.flatten(1).double()
        for key, value in maps.items():  # per image, the FOV's mean
            row[key] = (value.flatten(1).double() * inside).sum(1) / inside.sum(1).clamp_min(1)
        self._test_batches.append({"index": batch["index"], **row})
        for i in range(len(batch["index"])):
            if len(self.test_examples) < EXAMPLES:
                self.test_examples.append({
                    "index": int(batch["index"][i]), "image": batch["image"][i].cpu().numpy(),
                    "probs": probs[i].cpu().numpy(), "mask": mask[i].cpu().numpy(),
                    "fov": fov[i].cpu().numpy(), "entropy": maps["entropy"][i].cpu().numpy(),
                    "thresholds": self.thresholds.cpu().numpy()})

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.test_examples.clear()
        self.test_pixels.reset()

    def on_test_epoch_end(self) -> None:
        results = self.test_pixels.results(self.thresholds.cpu())
        thresholds = results.pop("thresholds")
        self.log_dict({f"test/{k}": float(v) for k, v in results.items()})
        self.log("test/threshold", float(np.mean(thresholds)))
        super().on_test_epoch_end()  # per-image rows of every rank, each image once
        for name in ("hd95", "asd"):
            distance = self.test_predictions[name]
            finite = torch.isfinite(distance)
            self.log(f"test/{name}",
                     float(distance[finite].mean()) if finite.any() else float("nan"))
            self.log(f"test/{name}_excluded", float((~finite).sum()))
        self.log_uncertainty_means()
        self.test_predictions["examples"] = list(self.test_examples)  # for the overlays
