"""Parallel-dilated CNN (survey section 4.2.3; Chowdhury et al., 2020, PDCOVIDNet).

From the survey: parallel convolution branches with different dilation rates whose feature maps
are concatenated and fed to a further convolution ("concatenation-convolution") before the
classifier. Chosen here (not given by the survey): a shared 3x3 stem and 2x2 max-pool, two 3x3
conv-BN-ReLU layers per branch with a 2x2 max-pool between them, dilation rates 1, 2 and 3,
a 3x3 fusion convolution, global average pooling, dropout 0.5 and one linear layer.
"""

from collections.abc import Sequence

import torch
from timm.layers import ConvNormAct
from torch import nn

from medbench.models.registry import register_model


class ParallelDilatedCNN(nn.Module):
    def __init__(self, in_chans: int, num_classes: int, dilations: Sequence[int] = (1, 2, 3),
                 width: int = 32, dropout: float = 0.5) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvNormAct(in_chans, width, 3), nn.MaxPool2d(2))
        self.branches = nn.ModuleList(
            nn.Sequential(
                ConvNormAct(width, 2 * width, 3, dilation=d),
                nn.MaxPool2d(2),
                ConvNormAct(2 * width, 4 * width, 3, dilation=d),
            )
            for d in dilations
        )
        self.fuse = ConvNormAct(4 * width * len(self.branches), 8 * width, 3)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(8 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.head(self.fuse(x))


@register_model(architecture="dilated", source="paper", min_input_size=4)
def parallel_dilated_cnn(in_chans: int = 3, num_classes: int = 3,
                         dilations: Sequence[int] = (1, 2, 3), width: int = 32,
                         dropout: float = 0.5) -> nn.Module:
    """Padding keeps every branch the same size; two 2x2 max-pools need 4 px."""
    return ParallelDilatedCNN(in_chans, num_classes, dilations, width, dropout)
