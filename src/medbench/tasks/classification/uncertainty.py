"""Several stochastic passes of a classifier over a batch (``runner.uncertainty``):
``mc_dropout`` runs the network's own dropout layers in train mode for each of
``runner.uncertainty_passes`` passes (Gal & Ghahramani 2016; the survey's 4.2.2); ``tta``
passes the dihedral views of each image (ttach's D4: flips and quarter turns, 8 views; the 4
flips of a non-square image); ``ensemble`` takes the members of ``model=ensemble`` as the
passes (a deep ensemble: e.g. the checkpoints of one configuration's seeds, Lakshminarayanan
et al. 2017). Their probabilities feed ``metrics/uncertainty.predictive_summary``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from medbench.errors import ConfigError
from medbench.tasks.stochastic import DROPOUT, dropout_active

METHODS = ("mc_dropout", "tta", "ensemble")


def check_uncertainty(method: str | None, net: nn.Module, spatial_dims: int,
                      model_name: str) -> None:
    """A one-line error, before training, for a method this model or data cannot take."""
    if method is None:
        return
    if method not in METHODS:
        raise ConfigError(f"runner.uncertainty: expected null or one of {', '.join(METHODS)}, "
                          f"got '{method}'")
    if hasattr(net, "mc_predict"):
        raise ConfigError(f"runner.uncertainty: {model_name} averages its own Monte-Carlo "
                          "dropout passes (model.mc_samples); use null")
    if method == "ensemble" and not hasattr(net, "member_probabilities"):
        raise ConfigError(f"runner.uncertainty: 'ensemble' takes the members of model=ensemble "
                          f"as its passes; {model_name} is one network (e.g. model=ensemble "
                          "with the checkpoints of a row's seeds as members)")
    if method == "mc_dropout" and not any(isinstance(m, DROPOUT) for m in net.modules()):
        raise ConfigError(f"runner.uncertainty: 'mc_dropout' needs dropout layers and "
                          f"{model_name} has none (use 'tta', or a model with dropout, e.g. "
                          "small_kernel_cnn, bayesian_cnn, alexnet, vgg16)")
    if method == "tta" and spatial_dims != 2:
        raise ConfigError(f"runner.uncertainty: 'tta' flips and turns 2D images; this data "
                          f"has {spatial_dims} spatial dimension(s) (use 'mc_dropout' or null)")


def _views(images: torch.Tensor) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """D4's 8 views of a square image; the 4 flips (none, horizontal, vertical, both) else."""
    import ttach

    square = images.shape[-1] == images.shape[-2]
    transforms = ttach.aliases.d4_transform() if square else ttach.aliases.flip_transform()
    return [t.augment_image for t in transforms]


def stochastic_logits(forward: Callable[[torch.Tensor], torch.Tensor], net: nn.Module,
                      images: torch.Tensor, method: str, passes: int) -> torch.Tensor:
    """Logits of each pass, (T, N, C)."""
    if method == "mc_dropout":
        with dropout_active(net):
            return torch.stack([forward(images) for _ in range(passes)])
    return torch.stack([forward(view(images)) for view in _views(images)])
