"""What a saliency map explains, per family: the output a map is taken for, how sure the
model is of each item and which part of an item is explained. A family plugs in with
:func:`register_targets` (here: classification; ``<family>_targets.py`` beside this module,
imported when a run of that family is explained; or a plugin); shared code never names one."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
)
from torch import nn

from medbench.data.base import DatasetInfo
from medbench.errors import ConfigError
from medbench.registry import Registry


def check_crop(crop: Sequence[int], spatial: Sequence[int]) -> None:
    """A one-line error unless ``crop`` gives a size from 1 to the item's per spatial dim."""
    if len(crop) != len(spatial) or not all(
            1 <= c <= n for c, n in zip(crop, spatial, strict=True)):
        raise ConfigError(f"explain.crop={list(crop)}: expected {len(spatial)} size(s) from 1 "
                          f"to the test items' {list(spatial)}")


def centre_crop(tensor: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """The centred crop of ``tensor``'s last ``len(size)`` dims. Sliced by hand: images
    (N, C, *S) and masks (N, *S) alike, of any dimensionality (torchvision's crop is 2D)."""
    spatial = tensor.shape[tensor.dim() - len(size):]
    starts = [(n - s) // 2 for n, s in zip(spatial, size, strict=True)]
    return tensor[(..., *(slice(a, a + s) for a, s in zip(starts, size, strict=True)))]


class SaliencyTargets:
    """A family's saliency targets. ``scores(outputs, targets, info)`` returns per item the
    model's confidence in its prediction (``confidence``, higher: surer), its score on the true
    target (``true_score``, lowest: worst handled) and any other per-item columns of
    ``explained.csv`` (classification: ``predicted``)."""

    def prepare(self, batch: dict[str, Any], crop: Sequence[int] | None) -> dict[str, Any]:
        """The part of a test batch that is scored and explained: the whole items, or their
        centred crop (``explain.crop``, a size per spatial dim)."""
        if crop is None:
            return batch
        check_crop(crop, batch["image"].shape[2:])
        return {**batch, "image": centre_crop(batch["image"], crop)}

    def scores(self, outputs: torch.Tensor, targets: Any,
               info: DatasetInfo) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def predicted(self, outputs: torch.Tensor, targets: Any) -> torch.Tensor:
        """What :meth:`map_targets` explains, from the outputs of the explained items: the
        most probable class (per pixel for dense outputs)."""
        return outputs.argmax(1)

    def map_targets(self, predicted: torch.Tensor) -> list[Callable]:
        """The package's targets of the maps (gradients or scores of these outputs)."""
        raise NotImplementedError

    def faithfulness_targets(self, predicted: torch.Tensor) -> list[Callable]:
        """The targets whose change the faithfulness score measures (probabilities)."""
        raise NotImplementedError

    # hooks with the dense families' behaviour as default

    methods: tuple[str, ...] | None = None  # the methods the family supports (None: all)
    methods_note = ""  # why others are refused (the one-line error's tail)

    def use_checkpoint(self, path: str | Path | None) -> None:
        """Reads what the family keeps beside the network in the selected checkpoint (none)."""

    def check_network(self, net: nn.Module) -> None:
        """A one-line error for a network the targets cannot explain (none refused)."""

    def outputs(self, net: nn.Module, images: torch.Tensor) -> Any:
        """The network's outputs on a batch, as :meth:`scores` and :meth:`predicted` take
        them: the network called on the images."""
        return net(images)

    def default_layer(self, net: nn.Module) -> str | None:
        """The layer maps are taken at without ``explain.target_layer`` (None: the last
        module producing a spatial feature map, found on an example input)."""
        return None

    def reshape_transform(self, net: nn.Module) -> Callable | None:
        """The package's ``reshape_transform`` of the target layer's output into a (N, C,
        *S) feature map (None: it is one already)."""
        return None

    def annotate(self, picture: np.ndarray, predicted: Any, item: int) -> np.ndarray:
        """An overlay (H, W, 3 uint8) with what item ``item`` of ``predicted`` explains drawn
        on it (nothing drawn: the heat map alone)."""
        return picture


TARGETS = Registry("saliency target")
register_targets = TARGETS.register


@register_targets("classification")
class ClassTargets(SaliencyTargets):
    """Maps of the predicted class's logit; confidence its probability (sigmoid per label for
    multi-label data, softmax otherwise); the worst items those of lowest true-class
    probability (multi-label: of the mean probability of the true labels)."""

    def scores(self, outputs: torch.Tensor, targets: torch.Tensor,
               info: DatasetInfo) -> dict[str, torch.Tensor]:
        if info.label_type == "multilabel":
            probs = outputs.float().sigmoid()
            true = (probs * targets).sum(1) / targets.sum(1).clamp(min=1)
        else:
            probs = outputs.float().softmax(1)
            true = probs.gather(1, targets.long().view(-1, 1)).squeeze(1)
        confidence, predicted = probs.max(1)
        return {"predicted": predicted, "confidence": confidence, "true_score": true}

    def map_targets(self, predicted: torch.Tensor) -> list[Callable]:
        return [ClassifierOutputTarget(int(c)) for c in predicted]

    def faithfulness_targets(self, predicted: torch.Tensor) -> list[Callable]:
        return [ClassifierOutputSoftmaxTarget(int(c)) for c in predicted]


def targets_for(family: str) -> SaliencyTargets:
    """The saliency targets of ``family`` (its ``<family>_targets`` module beside this one
    imported first, if there is one); a one-line error for a family that has none."""
    if family not in TARGETS:
        try:
            importlib.import_module(f"medbench.explain.{family}_targets")
        except ModuleNotFoundError as err:
            if err.name != f"medbench.explain.{family}_targets":
                raise
    if family not in TARGETS:
        raise ConfigError(f"medbench explain: no saliency targets for the {family} family yet "
                          f"(available: {', '.join(TARGETS.names())})")
    return TARGETS.get(family).builder()
