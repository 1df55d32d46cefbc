"""Saliency maps by method name: ``grad-cam`` for 2D images (N, C, H, W), MONAI for signals
(N, C, L) and volumes (N, C, D, H, W) (``monai_cam.py``), chosen by the input's dimensionality;
the target layer found on the example input (or named in config)."""

from __future__ import annotations

import difflib
import functools
import math
import weakref
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
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from pytorch_grad_cam.base_cam import BaseCAM
from torch import nn

from medbench.errors import ConfigError
from medbench.explain import monai_cam

# method name (an MLflow key part: no '+') -> the package's class
METHODS: dict[str, type[BaseCAM]] = {"gradcam": GradCAM, "gradcam_pp": GradCAMPlusPlus,
                                     "scorecam": ScoreCAM, "ablationcam": AblationCAM}
GRADIENT_FREE = ("scorecam", "ablationcam")
# the methods explain.methods=null runs, per input dimensionality (2D images: grad-cam's)
DEFAULT_METHODS = ("gradcam", "gradcam_pp", "scorecam")
# other spellings accepted in explain.methods
ALIASES = {"gradcam++": "gradcam_pp", "gradcampp": "gradcam_pp", "score-cam": "scorecam",
           "ablation-cam": "ablationcam", "grad-cam": "gradcam"}
# channels the gradient-free methods score per forward pass (the package's default: 16, 32)
PERTURBATION_BATCH = 64
IMAGE_DIMS = 4  # (N, C, H, W): grad-cam's inputs; any other dimensionality goes to MONAI
SHAPES = {3: "(N, C, L)", 4: "(N, C, H, W)", 5: "(N, C, D, H, W)"}

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


def methods_for(names: Sequence[str] | None, example: torch.Tensor,
                family: Sequence[str] | None = None, note: str = "") -> list[str]:
    """The methods run on inputs shaped like ``example``: ``names``, or with None the defaults
    the input supports (and the family's targets, ``family``, when they name theirs); a
    one-line error for a method either does not (``note``: why the family refuses it)."""
    if family is not None and example.dim() == IMAGE_DIMS:
        if names is None:
            return [m for m in DEFAULT_METHODS if m in family]
        refused = [m for m in names if m not in family]
        if refused:
            raise ConfigError(f"explain.methods: {refused[0]} is not available for this "
                              f"family's models (supported: {', '.join(family)}"
                              + (f"; {note}" if note else "") + ")")
        return list(names)
    if example.dim() == IMAGE_DIMS:
        return list(names or DEFAULT_METHODS)
    supported = [m for m in DEFAULT_METHODS if m in monai_cam.METHODS]
    if names is None:
        return supported
    refused = [m for m in names if m not in monai_cam.METHODS]
    if refused:
        raise ConfigError(f"explain.methods: {refused[0]} is not available for "
                          f"{SHAPES.get(example.dim(), f'{example.dim()}D')} inputs "
                          f"(supported: {', '.join(monai_cam.METHODS)}; the gradient-free "
                          "methods are grad-cam's, for 2D images only)")
    return list(names)


def spatial_layers(net: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the modules whose output is a feature map shaped like the input (as many
    dims, the same batch, more than one position), in the order their outputs are complete (a
    block after its last layer); never the network's output itself (a dense model's logits)."""
    found: list[tuple[str, weakref.ref]] = []

    def hook(name: str) -> Callable:
        def record(_module, _inputs, output) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == example.dim() and \
                    output.shape[0] == example.shape[0] and math.prod(output.shape[2:]) > 1:
                found.append((name, weakref.ref(output)))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in net.named_modules() if n]
    try:
        was_training = net.training
        net.eval()
        with torch.no_grad():
            final = net(example)
        net.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    # a freed output's weak reference is dead: only modules passing the output on match
    return list(dict.fromkeys(name for name, ref in found if ref() is not final))


def target_layer_name(net: nn.Module, example: torch.Tensor, wanted: str | None = None,
                      default: str | None = None) -> str:
    """The layer maps are taken at: ``wanted`` (``explain.target_layer``, with or without the
    LightningModule's ``net.`` prefix), else the family's ``default`` (its targets' choice),
    else the last module producing a spatial feature map."""
    if default is not None and (not wanted or wanted.removeprefix("net.") == default):
        return default
    candidates = spatial_layers(net, example)
    shape = SHAPES.get(example.dim(), f"{example.dim()}D")
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
            raise ConfigError(f"explain.target_layer: '{wanted}' gives no {shape} feature map "
                              f"(candidates, last first: "
                              f"{', '.join(reversed(candidates[-8:])) or 'none'})")
        return name
    if not candidates:
        raise ConfigError(f"explain: the model has no layer with a {shape} feature map (the "
                          "input's shape, more than one position) to take a saliency map at")
    return candidates[-1]


class LevelActivations(ActivationsAndGradients):
    """The package's activations and gradients, also of a layer whose output is a dict of
    tensors (torchvision's FPN levels): the package registers gradient hooks on a tensor
    output only. Each level's gradient is kept (zeros for a level the target does not
    reach) and the dict made one map by the reshape transform, as the activations are."""

    @property
    def gradients(self) -> list[torch.Tensor]:
        if self._levels is None:
            return self._plain
        grads = {k: self._pending.get(k, torch.zeros_like(v)) for k, v in self._levels.items()}
        grads = self.reshape_transform(grads) if self.reshape_transform else grads
        return [grads.cpu().detach()]

    @gradients.setter
    def gradients(self, value: list[torch.Tensor]) -> None:
        self._plain, self._pending, self._levels = value, {}, None

    def save_gradient(self, module, inputs, output) -> None:
        if not isinstance(output, dict):
            super().save_gradient(module, inputs, output)
            return
        self._levels = {k: v.detach() for k, v in output.items()}
        for key, value in output.items():
            if torch.is_tensor(value) and value.requires_grad:
                value.register_hook(lambda grad, k=key: self._pending.__setitem__(k, grad))


def saliency_maps(net: nn.Module, method: str, layer: str, images: torch.Tensor,
                  targets: Sequence[Callable],
                  reshape_transform: Callable | None = None) -> np.ndarray:
    """Maps in [0, 1] of the inputs' spatial shape (N, *S) for ``images``; the target layer's
    output made an (N, C, *S) map by ``reshape_transform`` (the family's), if given."""
    if images.dim() != IMAGE_DIMS:
        return monai_cam.saliency_maps(net, method, layer, images, targets)
    cam = METHODS[method](model=net, target_layers=[net.get_submodule(layer)],
                          reshape_transform=reshape_transform)
    if reshape_transform is not None:
        cam.activations_and_grads.release()
        cam.activations_and_grads = LevelActivations(net, cam.target_layers,
                                                     reshape_transform)
    if method in GRADIENT_FREE:
        cam.batch_size = PERTURBATION_BATCH
    try:  # not `with`: BaseCAM.__exit__ swallows an IndexError
        return np.asarray(cam(input_tensor=images, targets=list(targets)), dtype=np.float32)
    finally:
        cam.activations_and_grads.release()
