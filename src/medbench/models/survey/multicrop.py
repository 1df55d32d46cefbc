"""Multi-crop CNN for lung nodule malignancy (survey section 4.1.4; Shen et al., 2017).

From the paper: three convolutional layers, randomised leaky ReLU (RReLU) activations, and a
multi-crop pooling layer after the first convolution: the central crops of the feature map at
full, 1/2 and 1/4 size are max-pooled to a common size (the smallest crop's) and concatenated
along channels, so the following layers see multi-scale nodule context. Chosen here (not given
by the survey): 64 channels of 3x3 kernels per convolution, a 2x2 max-pool after the second and
third convolutions, global max pooling, one 32-unit hidden dense layer, no normalisation.
"""

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from medbench.models.registry import register_model


class MultiCropPool(nn.Module):
    """Crop the centre of the map at each fraction, max-pool all to one size, concatenate."""

    def __init__(self, fractions: Sequence[float] = (1.0, 0.5, 0.25)) -> None:
        super().__init__()
        self.fractions = tuple(fractions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        crops = []
        for f in self.fractions:
            ch, cw = max(1, round(h * f)), max(1, round(w * f))
            top, left = (h - ch) // 2, (w - cw) // 2
            crops.append(x[..., top:top + ch, left:left + cw])
        size = min(c.shape[-2] for c in crops), min(c.shape[-1] for c in crops)
        return torch.cat([F.adaptive_max_pool2d(c, size) for c in crops], dim=1)


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.RReLU()]


@register_model(architecture="multicrop", source="paper", min_input_size=14)
def multicrop_cnn(in_chans: int = 1, num_classes: int = 2, width: int = 64, hidden: int = 32,
                  crops: Sequence[float] = (1.0, 0.5, 0.25)) -> nn.Module:
    """From 14 px the 1/4 crop rounds to 4 px, which the two later 2x2 max-pools reduce to 1 px."""
    return nn.Sequential(
        *_conv(in_chans, width),
        MultiCropPool(crops),
        *_conv(width * len(crops), width),
        nn.MaxPool2d(2),
        *_conv(width, width),
        nn.MaxPool2d(2),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(width, hidden),
        nn.RReLU(),
        nn.Linear(hidden, num_classes),
    )
