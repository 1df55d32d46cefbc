"""CVR-Net style multi-scale multi-encoder ensemble (survey section 4.2.4; Hasan et al., 2020).

From the survey: several encoders whose feature maps at different scales are ensembled, each
encoder built of residual and convolutional blocks (ResNet-like, against vanishing gradients)
with depth-wise separable convolutions for a light network, the encoders' features concatenated
channel-wise. Chosen here (not given by the survey): one encoder per input scale (1x and 0.5x by
default), each a 3x3 stem and three stages of a residual block of two separable 3x3 convolutions
(timm ``SeparableConvNormAct``; stride 2 and a 1x1 projection on the shortcut from the second
stage), globally average-pooled, then concatenated (or averaged), dropout 0.5 and a linear layer.
No transfer learning: the encoders start from random weights.
"""

from collections.abc import Sequence

import torch
from timm.layers import ConvNormAct, SeparableConvNormAct
from torch import nn
from torch.nn import functional as F

from medbench.models.registry import register_model


class SeparableResBlock(nn.Module):
    """Two depthwise separable 3x3 conv-BN layers plus an identity or 1x1 projected shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            SeparableConvNormAct(cin, cout, 3, stride=stride),
            SeparableConvNormAct(cout, cout, 3, apply_act=False),
        )
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else ConvNormAct(cin, cout, 1, stride=stride, apply_act=False))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def _encoder(in_chans: int, widths: Sequence[int]) -> nn.Sequential:
    blocks: list[nn.Module] = [ConvNormAct(in_chans, widths[0], 3)]
    for i, width in enumerate(widths):
        blocks.append(SeparableResBlock(widths[max(i - 1, 0)], width, stride=1 if i == 0 else 2))
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class CVRNet(nn.Module):
    def __init__(self, in_chans: int, num_classes: int, scales: Sequence[float] = (1.0, 0.5),
                 widths: Sequence[int] = (32, 64, 128), fusion: str = "concat",
                 dropout: float = 0.5) -> None:
        super().__init__()
        if fusion not in ("concat", "mean"):
            raise ValueError(f"fusion must be 'concat' or 'mean', got {fusion!r}")
        self.scales, self.fusion = tuple(scales), fusion
        self.encoders = nn.ModuleList(_encoder(in_chans, widths) for _ in self.scales)
        features = widths[-1] * (len(self.scales) if fusion == "concat" else 1)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [
            enc(x if s == 1 else F.interpolate(x, scale_factor=s, mode="bilinear",
                                               align_corners=False, antialias=s < 1))
            for s, enc in zip(self.scales, self.encoders, strict=True)
        ]
        fused = torch.cat(feats, dim=1) if self.fusion == "concat" else torch.stack(feats).mean(0)
        return self.head(fused)


@register_model(architecture="cvr_net", source="paper", min_input_size=2)
def cvr_net(in_chans: int = 3, num_classes: int = 2, scales: Sequence[float] = (1.0, 0.5),
            widths: Sequence[int] = (32, 64, 128), fusion: str = "concat",
            dropout: float = 0.5) -> nn.Module:
    """Padded strided convolutions accept any size; the 0.5x copy needs 2 px to keep 1 px."""
    return CVRNet(in_chans, num_classes, scales, widths, fusion, dropout)
