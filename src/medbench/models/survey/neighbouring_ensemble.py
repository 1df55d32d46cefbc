"""Softmax CNN with a neighbouring ensemble predictor (survey section 4.7.1; Sirinukunwattana
et al., 2016: locality-sensitive classification of nuclei at detected centres).

From the survey: a standard softmax CNN on small patches, combined with a neighbouring
ensemble predictor (NEP): the class of a point is the average of the CNN's predictions on
patches centred at locations near it, so a centre found a few pixels off is still classified
well; dropout. Chosen here where it is silent: 27 px patches into two convolutions (4x4, 36
maps; 3x3, 48 maps, each ReLU and 2x2 max-pooling) and two 512-unit dense layers with dropout
0.5 (a layout after the paper's softmax CNN); the input is the patch plus ``radius`` px on
each side; training sees the crop at one random offset within the radius (the neighbours the
ensemble will average), evaluation averages the softmax of every crop whose centre lies within
``radius`` of the point, on a grid of ``stride`` px, with equal weights (the paper weights
them by the detector's confidence; here the points are given). The output is the log of that
mean, so the softmax a classification run applies gives the mean back.
"""

from __future__ import annotations

import torch
from torch import nn

from medbench.models.registry import register_model


class NeighbouringEnsemble(nn.Module):
    """``net`` on ``patch`` px crops of a (patch + 2 radius) px input: one random offset in
    training, the mean softmax of the offsets within ``radius`` otherwise."""

    def __init__(self, net: nn.Module, patch: int, radius: int, stride: int) -> None:
        super().__init__()
        self.net, self.patch, self.radius = net, patch, radius
        steps = range(-radius, radius + 1, stride)
        self.offsets = [(dy, dx) for dy in steps for dx in steps
                        if dy * dy + dx * dx <= radius ** 2]

    def crop(self, x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
        """The ``patch`` px crop centred ``(dy, dx)`` px off the input's centre."""
        top, left = (x.shape[-2] - self.patch) // 2 + dy, (x.shape[-1] - self.patch) // 2 + dx
        return x[..., top:top + self.patch, left:left + self.patch]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.patch + 2 * self.radius:
            raise ValueError(f"nep_softmax_cnn: input of {list(x.shape[-2:])} px; the patch and "
                             f"its neighbourhood need {self.patch + 2 * self.radius} px")
        if self.training:
            dy, dx = self.offsets[int(torch.randint(len(self.offsets), ()))]
            return self.net(self.crop(x, dy, dx))
        probs = torch.stack([self.net(self.crop(x, dy, dx)).softmax(1)
                             for dy, dx in self.offsets]).mean(0)
        return probs.clamp_min(1e-12).log()


@register_model(architecture="neighbouring_ensemble", source="paper", min_input_size=35)
def nep_softmax_cnn(in_chans: int = 3, num_classes: int = 3, patch: int = 27, radius: int = 4,
                    stride: int = 2, dropout: float = 0.5) -> nn.Module:
    """The softmax CNN on ``patch`` px crops inside a neighbouring ensemble predictor; the
    input (the data's ``patch``) at least ``patch + 2 * radius`` px: 35 by default."""
    side = ((patch - 3) // 2 - 2) // 2  # after conv 4x4, pool 2, conv 3x3, pool 2
    net = nn.Sequential(
        nn.Conv2d(in_chans, 36, 4), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(36, 48, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(48 * side * side, 512), nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(512, 512), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(512, num_classes))
    return NeighbouringEnsemble(net, patch, radius, stride)
