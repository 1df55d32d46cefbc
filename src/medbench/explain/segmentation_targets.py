"""Saliency targets of the segmentation family (imported by ``targets_for``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

from medbench.data.base import DatasetInfo
from medbench.errors import ConfigError
from medbench.explain.targets import SaliencyTargets, centre_crop, check_crop, register_targets


class MaskedProbabilityTarget:
    """The mean probability (softmax over classes) of ``category`` over ``mask``: the package
    has a segmentation target of summed logits only (``SemanticSegmentationTarget``)."""

    def __init__(self, category: int, mask: torch.Tensor) -> None:
        self.category, self.mask = category, mask.float()

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        mask = self.mask.to(output.device)
        return (output.softmax(0)[self.category] * mask).sum() / mask.sum().clamp(min=1)


@register_targets("segmentation")
class SegmentationTargets(SaliencyTargets):
    """Per image, on the part explained (a centred crop, below):

    - maps of the predicted foreground class's logits summed over its predicted mask
      (``SemanticSegmentationTarget``): the class predicted on most pixels, its mask the
      pixels predicted as it (each pixel's most probable class; background outside the field
      of view); an image predicted all background: class 1 over the whole crop;
    - confidence: the mean probability of the predicted class over the pixels predicted
      foreground in the FOV (0 when none); ``foreground``: their share of the FOV;
    - worst: the lowest Dice against the reference (``true_score``: in the FOV, mean over the
      foreground classes, at probability 0.5: the bare network carries no threshold chosen on
      validation); an image whose reference is empty (Dice undefined) is never the worst;
    - faithfulness: the mean probability of the explained class over its mask.

    A map needs one forward pass, so images are explained on a centred crop rather than by
    the runner's sliding windows: ``explain.crop``, else the largest crop whose sides are
    multiples of 32 (a depth-5 U-Net's stride; DRIVE's 584x565 -> 576x544, cutting the black
    rim outside the FOV). Scores, maps and overlays are all of that crop."""

    multiple = 32

    def prepare(self, batch: dict[str, Any], crop: Sequence[int] | None) -> dict[str, Any]:
        spatial = batch["image"].shape[2:]
        size = list(crop) if crop is not None else [
            n - n % self.multiple if n >= self.multiple else n for n in spatial]
        check_crop(size, spatial)
        target = batch["target"]
        if torch.is_tensor(target):  # a mask alone: every pixel scored
            target = {"mask": target, "fov": torch.ones_like(target, dtype=torch.bool)}
        target = {**target, "mask": centre_crop(target["mask"], size),
                  "fov": centre_crop(target["fov"], size).bool()}
        return {**batch, "image": centre_crop(batch["image"], size), "target": target}

    def scores(self, outputs: torch.Tensor, targets: dict[str, torch.Tensor],
               info: DatasetInfo) -> dict[str, torch.Tensor]:
        from medbench.metrics.segmentation import FovPixelMetrics

        mask, fov = targets["mask"], targets["fov"]
        if outputs.shape[2:] != mask.shape[1:]:
            raise ConfigError(f"explain: the model's output {list(outputs.shape[2:])} is not "
                              f"its input's size {list(mask.shape[1:])}: segmentation maps "
                              "need same-size outputs")
        probs = outputs.float().softmax(1)
        top, predicted = probs.max(1)
        foreground = (predicted > 0) & fov
        count = foreground.flatten(1).sum(1)
        metric = FovPixelMetrics(probs.shape[1])
        metric.update(probs, mask, fov)
        dice = metric.per_image(torch.full((probs.shape[1] - 1,), 0.5))["dice"]
        return {"confidence": (top * foreground).flatten(1).sum(1) / count.clamp(min=1),
                "true_score": torch.as_tensor(dice, dtype=torch.float32),
                "foreground": count / fov.flatten(1).sum(1).clamp(min=1)}

    def predicted(self, outputs: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        return outputs.argmax(1) * targets["fov"].to(outputs.device)

    @staticmethod
    def explained(predicted: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """Per image the class explained and its mask (docstring of the class)."""
        out = []
        for labels in predicted.cpu():
            counts = torch.bincount(labels.flatten())[1:]
            if counts.sum() > 0:
                category = int(counts.argmax()) + 1
                out.append((category, labels == category))
            else:
                out.append((1, torch.ones_like(labels, dtype=torch.bool)))
        return out

    def map_targets(self, predicted: torch.Tensor) -> list[Callable]:
        return [SemanticSegmentationTarget(c, mask.float().numpy())
                for c, mask in self.explained(predicted)]

    def faithfulness_targets(self, predicted: torch.Tensor) -> list[Callable]:
        return [MaskedProbabilityTarget(c, mask) for c, mask in self.explained(predicted)]
