"""Fused 2D + 3D CNN for volumes (survey section 4.8.1; Gao & Hui, SAI Computing 2016).

From the survey: a 2D CNN and a 3D CNN are fused; the 3D CNN keeps the information along Z
that matters in brain CT; the output of the 2D CNN's last convolutional layer is fused with the
3D-convolved data, and the fused features are classified (there: Alzheimer's, lesion, normal;
CT geometrically normalised first). The survey gives no layer counts, widths or fusion
operator, so these are chosen here: each branch has three conv-BN-ReLU blocks (widths ``width``,
2x, 4x; 3x3 or 3x3x3 kernels) with a 2x max-pool after the first two; the 2D branch runs on
every slice along D with shared weights and its feature maps are restacked along D; they are
average-pooled to the 3D branch's grid, concatenated with its features along channels, mixed by
a 1x1x1 conv-BN-ReLU, then global average pooling, dropout and a linear classifier.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from medbench.models.registry import register_model


def _blocks(conv: type, norm: type, pool: type, in_chans: int, width: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    widths = (width, 2 * width, 4 * width)
    for i, out in enumerate(widths):
        layers += [conv(in_chans if i == 0 else widths[i - 1], out, 3, padding=1, bias=False),
                   norm(out), nn.ReLU(inplace=True)]
        if i < len(widths) - 1:
            layers.append(pool(2))
    return nn.Sequential(*layers)


class Fused2D3DCNN(nn.Module):
    """Input (N, C, D, H, W); a 2D branch over the D slices and a 3D branch over the volume."""

    def __init__(self, in_chans: int, num_classes: int, width: int = 16,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.branch_2d = _blocks(nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, in_chans, width)
        self.branch_3d = _blocks(nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, in_chans, width)
        features = 4 * width
        self.fuse = nn.Sequential(nn.Conv3d(2 * features, features, 1, bias=False),
                                  nn.BatchNorm3d(features), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(features, num_classes))

    def slice_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 2D branch on every slice along D, restacked: (N, F, D, h, w)."""
        n, c, d, h, w = x.shape
        maps = self.branch_2d(x.transpose(1, 2).reshape(n * d, c, h, w))
        return maps.reshape(n, d, *maps.shape[1:]).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        volume = self.branch_3d(x)
        slices = F.adaptive_avg_pool3d(self.slice_features(x), volume.shape[2:])
        return self.head(self.fuse(torch.cat([slices, volume], dim=1)))


@register_model(architecture="fused_2d_3d", source="paper", spatial_dims=3, min_input_size=4)
def fused_2d_3d(in_chans: int = 1, num_classes: int = 2, width: int = 16,
                dropout: float = 0.5) -> nn.Module:
    return Fused2D3DCNN(in_chans, num_classes, width, dropout)
