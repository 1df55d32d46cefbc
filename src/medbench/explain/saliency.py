"""Saliency maps through the ``grad-cam`` package: its methods by name, the target layer found
on the example input (or named in config) and overlays of the input's size."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import numpy as np
import torch
import tqdm
from pytorch_grad_cam import (
    AblationCAM,
    GradCAM,
    GradCAMPlusPlus,
    ScoreCAM,
    ablation_cam,
    score_cam,
)
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from torch import nn

from medbench.errors import ConfigError

# method name (an MLflow key part: no '+') -> the package's class
METHODS: dict[str, type[BaseCAM]] = {"gradcam": GradCAM, "gradcam_pp": GradCAMPlusPlus,
                                     "scorecam": ScoreCAM, "ablationcam": AblationCAM}
GRADIENT_FREE = ("scorecam", "ablationcam")
# other spellings accepted in explain.methods
ALIASES = {"gradcam++": "gradcam_pp", "gradcampp": "gradcam_pp", "score-cam": "scorecam",
           "ablation-cam": "ablationcam", "grad-cam": "gradcam"}
# channels the gradient-free methods score per forward pass (the package's default: 16, 32)
PERTURBATION_BATCH = 64

# the gradient-free methods draw a progress bar per image on stderr: silenced
for _module in (score_cam, ablation_cam):
    _module.tqdm = SimpleNamespace(tqdm=functools.partial(tqdm.tqdm, disable=True))


def check_methods(names: Sequence[str]) -> list[str]:
    """``names`` (:data:`ALIASES` resolved) if each is a known method; a one-line error naming
    the first unknown one."""
    names = [ALIASES.get(name.lower(), name) for name in names]
    for name in names:
        if name not in METHODS:
            close = difflib.get_close_matches(name, list(METHODS), n=1)
            raise ConfigError(f"explain.methods: unknown method '{name}'"
                              + (f"; did you mean '{close[0]}'?" if close else "")
                              + f" (known: {', '.join(METHODS)})")
    return list(dict.fromkeys(names))  # each once


def spatial_layers(net: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the modules whose output is a 4D feature map larger than 1x1 on ``example``,
    in the order their outputs are complete (a block after its last layer)."""
    found: list[str] = []

    def hook(name: str) -> Callable:
        def record(_module, _inputs, output) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == 4 and \
                    output.shape[-1] * output.shape[-2] > 1:
                found.append(name)
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in net.named_modules() if n]
    try:
        was_training = net.training
        net.eval()
        with torch.no_grad():
            net(example)
        net.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(found))


def target_layer_name(net: nn.Module, example: torch.Tensor, wanted: str | None = None) -> str:
    """The layer maps are taken at: ``wanted`` (``explain.target_layer``, with or without the
    LightningModule's ``net.`` prefix) or the last module producing a spatial feature map."""
    candidates = spatial_layers(net, example)
    if wanted:
        name = wanted.removeprefix("net.")
        modules = dict(net.named_modules())
        if name not in modules:
            close = difflib.get_close_matches(name, candidates, n=1)
            raise ConfigError(f"explain.target_layer: the model has no layer '{wanted}'"
                              + (f"; did you mean '{close[0]}'?" if close else "")
                              + f" (layers with a spatial feature map, last first: "
                              f"{', '.join(reversed(candidates[-8:])) or 'none'})")
        if name not in candidates:
            raise ConfigError(f"explain.target_layer: '{wanted}' gives no spatial feature map "
                              f"(candidates, last first: {', '.join(reversed(candidates[-8:]))})")
        return name
    if not candidates:
        raise ConfigError("explain: the model has no layer with a spatial feature map (4D, "
                          "larger than 1x1) to take a saliency map at")
    return candidates[-1]


def saliency_maps(net: nn.Module, method: str, layer: str, images: torch.Tensor,
                  targets: Sequence[Callable]) -> np.ndarray:
    """Maps in [0, 1] of shape (N, H, W) (the input's height and width) for ``images``."""
    cam = METHODS[method](model=net, target_layers=[net.get_submodule(layer)])
    if method in GRADIENT_FREE:
        cam.batch_size = PERTURBATION_BATCH
    try:  # not `with`: BaseCAM.__exit__ swallows an IndexError
        return np.asarray(cam(input_tensor=images, targets=list(targets)), dtype=np.float32)
    finally:
        cam.activations_and_grads.release()


def display_image(image: torch.Tensor) -> np.ndarray:
    """A normalised input (C, H, W) as an RGB float image in [0, 1] (H, W, 3): min-max scaled,
    one channel repeated, more than three reduced to the first three."""
    pixels = image.detach().float().cpu().numpy()
    pixels = pixels[:3] if pixels.shape[0] >= 3 else np.repeat(pixels[:1], 3, axis=0)
    low, high = pixels.min(), pixels.max()
    pixels = (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)
    return np.ascontiguousarray(pixels.transpose(1, 2, 0), dtype=np.float32)


def overlay(image: torch.Tensor, saliency: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """The heat map over the image, uint8 RGB of the input's size (H, W, 3)."""
    return show_cam_on_image(display_image(image), saliency, use_rgb=True,
                             image_weight=image_weight)
