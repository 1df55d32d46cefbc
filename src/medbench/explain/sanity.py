"""The model-randomisation sanity check of saliency maps (Adebayo et al. 2018, cascading from
the top layer down) and a faithfulness score from the ``grad-cam`` package."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from scipy.stats import spearmanr
from torch import nn


def parameterised_layers(net: nn.Module) -> list[str]:
    """Names of the modules holding parameters of their own, top (output) layer first."""
    names = [n for n, m in net.named_modules() if any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


def randomised(net: nn.Module, layers: Sequence[str], seed: int) -> nn.Module:
    """A copy of ``net`` with ``layers`` re-initialised (``reset_parameters``, else a normal
    draw of std 0.02), seeded: the same seed gives the same weights."""
    clone = copy.deepcopy(net)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in layers:
            module = clone.get_submodule(name)
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            else:
                with torch.no_grad():
                    for parameter in module.parameters(recurse=False):
                        parameter.normal_(0.0, 0.02)
    return clone


def cascade_stages(layers: Sequence[str], count: int) -> list[int]:
    """How many of the top ``layers`` are randomised at each of ``count`` stages: the top layer
    alone first, all of them last, evenly between."""
    if count <= 1 or len(layers) <= 1:
        return [len(layers)]
    points = np.linspace(1, len(layers), num=min(count, len(layers)))
    return sorted({int(round(p)) for p in points})


def rank_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Spearman's rank correlation of two maps (flattened). A constant map ranks nothing: 1
    with the same constant map, else 0."""
    a, b = first.ravel(), second.ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float(np.array_equal(a, b))
    return float(spearmanr(a, b).statistic)


def mean_rank_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """The mean of :func:`rank_correlation` over items (N, *S): images, signals, volumes."""
    return float(np.mean([rank_correlation(a, b) for a, b in zip(first, second, strict=True)]))


def cascading_randomisation(net: nn.Module, maps_of: Callable[[nn.Module], np.ndarray],
                            trained: np.ndarray, stages: int = 3,
                            seed: int = 0) -> list[dict[str, float | int | str]]:
    """Per stage of the cascade (top layers re-initialised, down to all): how many layers and
    down to which, the mean rank correlation of its maps with the trained model's, and how
    many of its maps are constant (a map that vanished, all zero after the ReLU: 0)."""
    layers = parameterised_layers(net)
    out = []
    for count in cascade_stages(layers, stages):
        maps = maps_of(randomised(net, layers[:count], seed))
        out.append({"layers": count, "down_to": layers[count - 1],
                    "rank_corr": mean_rank_correlation(trained, maps),
                    "constant_maps": int(sum(np.ptp(m) == 0 for m in maps))})
    return out


def confidence_change(net: nn.Module, images: torch.Tensor, maps: np.ndarray,
                      targets: Sequence[Callable]) -> float:
    """The package's ``CamMultImageConfidenceChange``: the mean change of the explained
    target's probability when the input is multiplied by its map (N, *S), broadcast over the
    channels (higher: the map keeps what the model needs; near 0 or above is faithful,
    strongly negative is not)."""
    net.eval()
    change = CamMultImageConfidenceChange()(images, maps, list(targets), net)
    return float(np.mean(change))
