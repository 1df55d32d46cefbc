"""ZFNet (Zeiler & Fergus, 2014), written from the paper: neither timm nor torchvision has it.

AlexNet's layout with the first layer shrunk to 7x7 stride 2 and the second to stride 2, as the
paper's visualisations motivated. Local response normalisation follows the first two layers as
in the paper; an adaptive pool before the classifier accepts any input size above the minimum.
"""

from torch import nn

from medbench.models.registry import register_model


@register_model(architecture="zfnet", source="paper", min_input_size=53)
def zfnet(in_chans: int = 3, num_classes: int = 1000, dropout: float = 0.5) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_chans, 96, kernel_size=7, stride=2, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1), nn.LocalResponseNorm(5),
        nn.Conv2d(96, 256, kernel_size=5, stride=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2, padding=1), nn.LocalResponseNorm(5),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2),
        nn.AdaptiveAvgPool2d(6), nn.Flatten(),
        nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
        nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )
