"""cuda-convnet's CIFAR-10 layout, as Bayramoglu et al. (2015) used for HEp-2 cells (survey 4.3.1).

The survey says only "CUDA ConvNet model architecture" run in Caffe. Caffe ships that model as
its CIFAR-10 "full" example, Krizhevsky's cuda-convnet ``layers-18pct`` layout, which is what
this follows: three 5x5 convolutions (32, 32, 64 maps, padding 2), each followed by a 3x3
stride-2 pooling (max after the first, average after the others; Caffe rounds the pooled size
up, hence ``ceil_mode``), ReLUs, local response normalisation within each map over 3x3
neighbourhoods after the first two blocks (alpha 5e-5, beta 0.75; Caffe's ``WITHIN_CHANNEL``),
then one dense layer to the classes. Chosen here: an adaptive
average pooling to the 4x4 map the layout has at its 32 px input, so that other sizes (28 px
MedMNIST: 3x3) reach the same dense layer; at 32 px it changes nothing.
"""

import torch
import torch.nn.functional as F
from torch import nn

from medbench.models.registry import register_model


class WithinMapNorm(nn.Module):
    """Caffe's ``WITHIN_CHANNEL`` response normalisation, ``x / (1 + alpha * mean(x^2))^beta``
    over each pixel's ``size`` x ``size`` neighbourhood in its own map (zero padded). Written
    here because torch's ``LocalResponseNorm`` (and timm, MONAI) normalise across maps only."""

    def __init__(self, size: int = 3, alpha: float = 5e-5, beta: float = 0.75) -> None:
        super().__init__()
        self.size, self.alpha, self.beta = size, alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = F.avg_pool2d(x * x, self.size, stride=1, padding=self.size // 2,
                            count_include_pad=True)
        return x / (1 + self.alpha * mean).pow(self.beta)


@register_model(architecture="cuda_convnet", source="paper", min_input_size=8)
def cuda_convnet(in_chans: int = 3, num_classes: int = 6, width: int = 32) -> nn.Module:
    """``width`` is the maps of the first two convolutions (the third has twice as many)."""
    def pool(kind: type[nn.Module]) -> nn.Module:
        return kind(3, stride=2, ceil_mode=True)

    return nn.Sequential(
        nn.Conv2d(in_chans, width, 5, padding=2), pool(nn.MaxPool2d), nn.ReLU(),
        WithinMapNorm(),
        nn.Conv2d(width, width, 5, padding=2), nn.ReLU(), pool(nn.AvgPool2d),
        WithinMapNorm(),
        nn.Conv2d(width, 2 * width, 5, padding=2), nn.ReLU(), pool(nn.AvgPool2d),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(2 * width * 4 * 4, num_classes),
    )
