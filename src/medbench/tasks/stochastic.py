"""Stochastic test passes any family can take (``runner.uncertainty``): ``mc_dropout`` runs
the network's own dropout layers in train mode for each of ``runner.uncertainty_passes``
passes (Gal & Ghahramani 2016; the survey's 4.2.2); ``tta`` passes the image flipped along
every subset of its spatial axes (4 views of an image, 8 of a volume), each output mapped
back by the family before averaging. Classification adds its own (quarter turns, ensembles:
``tasks/classification/uncertainty``). Pixel-wise summaries for segmentation live here too.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from medbench.errors import ConfigError

DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
           nn.FeatureAlphaDropout)
PASS_METHODS = ("mc_dropout", "tta")


def check_passes(method: str | None, net: nn.Module, model_name: str, family: str) -> None:
    """A one-line error, before training, for a method this family or model cannot take."""
    if method is None:
        return
    if method not in PASS_METHODS:
        raise ConfigError(f"runner.uncertainty: expected null or one of {', '.join(PASS_METHODS)}"
                          f" for {family}, got '{method}'")
    if method == "mc_dropout" and not any(isinstance(m, DROPOUT) for m in net.modules()):
        raise ConfigError(f"runner.uncertainty: 'mc_dropout' needs dropout layers and "
                          f"{model_name} has none (use 'tta', or a model with dropout)")


@contextlib.contextmanager
def dropout_active(net: nn.Module) -> Iterator[None]:
    """The network's dropout layers in train mode (everything else, e.g. batch norm, as is)."""
    layers = [m for m in net.modules() if isinstance(m, DROPOUT)]
    modes = [m.training for m in layers]
    try:
        for layer in layers:
            layer.train()
        yield
    finally:
        for layer, mode in zip(layers, modes, strict=True):
            layer.train(mode)


def flip_views(spatial_dims: int) -> list[tuple[int, ...]]:
    """The flipped axes of each view: every subset of the last ``spatial_dims`` axes, the
    identity first."""
    axes = tuple(range(-spatial_dims, 0))
    return [dims for r in range(len(axes) + 1) for dims in itertools.combinations(axes, r)]


def stochastic_passes(forward: Callable[[torch.Tensor], torch.Tensor], net: nn.Module,
                      images: torch.Tensor, method: str, passes: int,
                      undo: Callable[[torch.Tensor, Sequence[int]], torch.Tensor]
                      ) -> Iterator[torch.Tensor]:
    """The outputs of each pass, one at a time (a pass of a whole image may be large):
    ``undo(outputs, flipped_axes)`` maps a flipped view's outputs back to the image's frame
    (``mc_dropout`` passes are not flipped: axes ``()``)."""
    if method == "mc_dropout":
        with dropout_active(net):
            for _ in range(passes):
                yield forward(images)
        return
    for dims in flip_views(images.dim() - 2):
        view = images.flip(dims) if dims else images
        yield undo(forward(view), dims)


def class_entropy(probs: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Entropy (nats) over the class axis ``dim`` (0 log 0 = 0)."""
    return -torch.special.xlogy(probs, probs).sum(dim)


class PassSummary:
    """Running predictive mean and mean entropy over passes of class probabilities
    ((B, C, ...), classes on axis 1): ``mean``, ``entropy`` (of the mean) and
    ``mutual_info`` (entropy minus the passes' mean entropy, >= 0), without keeping every
    pass in memory."""

    def __init__(self) -> None:
        self.count, self._sum, self._entropy_sum = 0, None, None

    def add(self, probs: torch.Tensor) -> None:
        probs = probs.detach().double()
        entropy = class_entropy(probs)
        self._sum = probs if self._sum is None else self._sum + probs
        self._entropy_sum = entropy if self._entropy_sum is None else self._entropy_sum + entropy
        self.count += 1

    @property
    def mean(self) -> torch.Tensor:
        return (self._sum / self.count).float()

    @property
    def entropy(self) -> torch.Tensor:
        return class_entropy(self._sum / self.count).float()

    @property
    def mutual_info(self) -> torch.Tensor:
        total = class_entropy(self._sum / self.count)
        return (total - self._entropy_sum / self.count).clamp_min(0).float()
