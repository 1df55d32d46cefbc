"""Grad-CAM and Grad-CAM++ of signals (N, C, L) and volumes (N, C, D, H, W) through MONAI's
``monai.visualize`` (any spatial dimensionality; ``grad-cam`` handles 2D images), scoring the
same per-item targets as ``grad-cam`` does (``pytorch_grad_cam.utils.model_targets``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.visualize import GradCAM, GradCAMpp
from monai.visualize.class_activation_maps import CAMBase, ModelWithHooks
from torch import nn

METHODS: dict[str, type[CAMBase]] = {"gradcam": GradCAM, "gradcam_pp": GradCAMpp}


class TargetHooks(ModelWithHooks):
    """MONAI's model wrapper, changed where it does not fit here (written by hand for that):

    - the score back-propagated is each item's own target (a class, a masked class map), not
      one ``class_idx`` for the whole batch;
    - MONAI's ``GradCAMpp`` multiplies the gradients by ``exp(score)``: a positive factor per
      item that the per-item scaling to [0, 1] cancels, but that overflows for a score summed
      over a mask, and that a squeezed (N,) score broadcasts against the last spatial axis;
      it reads a zero score of shape (N, 1, ...) instead (a factor of 1);
    - the hooks are removed after use (:meth:`release`): MONAI's stay on the model for good,
      and its full backward hook turns the layer's in-place operations off. The gradient is
      taken by a hook on the layer's output tensor, as ``grad-cam`` takes it."""

    def __init__(self, net: nn.Module, layer: str, targets: Sequence[Callable]) -> None:
        super().__init__(net, layer, register_forward=False, register_backward=False)
        self.register_forward = self.register_backward = True
        self.layer, self.targets = layer, list(targets)
        self.handle = net.get_submodule(layer).register_forward_hook(self._record)

    def _record(self, _module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        self.activations[self.layer] = output
        if output.requires_grad:
            output.register_hook(lambda grad: self.gradients.__setitem__(self.layer, grad))

    def class_score(self, logits: torch.Tensor, class_idx: object) -> torch.Tensor:
        scores = torch.stack([target(item) for target, item in zip(self.targets, logits,
                                                                   strict=True)])
        return scores.view(-1, *[1] * (self.activations[self.layer].dim() - 1))

    def __call__(self, x: torch.Tensor, class_idx: object = None, retain_graph: bool = False,
                 **kwargs: object) -> tuple:
        out = super().__call__(x, class_idx, retain_graph, **kwargs)
        self.score = torch.zeros_like(self.score)  # what GradCAMpp reads (class docstring)
        return out

    def release(self) -> None:
        self.handle.remove()
        self.activations.clear()
        self.gradients.clear()


def unit_range(maps: torch.Tensor) -> torch.Tensor:
    """Each map min-max scaled to [0, 1] as ``grad-cam`` scales its maps (a constant map: 0).
    MONAI's default normaliser maps the maximum to 0 and the minimum to 1."""
    flat = maps.flatten(1)
    low = flat.min(1).values.view(-1, *[1] * (maps.dim() - 1))
    shifted = maps - low
    high = shifted.flatten(1).max(1).values.view(-1, *[1] * (maps.dim() - 1))
    return shifted / (high + 1e-7)


def saliency_maps(net: nn.Module, method: str, layer: str, inputs: torch.Tensor,
                  targets: Sequence[Callable]) -> np.ndarray:
    """Maps in [0, 1] of shape (N, *S), the inputs' spatial shape (MONAI upsamples them
    linearly: linear, bilinear, trilinear)."""
    hooks = TargetHooks(net, layer, targets)
    try:
        cam = METHODS[method](nn_module=hooks, target_layers=layer, postprocessing=unit_range)
        with torch.enable_grad():
            maps = cam(x=inputs)
        return maps[:, 0].detach().float().cpu().numpy()
    finally:
        hooks.release()
