"""Small-kernel CNN for lung tissue patterns (survey section 4.1.2; Anthimopoulos et al., 2016).

From the paper: five 2x2 convolutions without padding, LeakyReLU (alpha 0.3), layer L having
k * (L + 1)^2 kernels (k = 4: 16, 36, 64, 100, 144), average pooling over the whole final map,
then three dense layers of 6x and 2x the last layer's kernels (864, 288) and the classes, with
dropout 0.5 before each. Chosen here: ReLU in the dense layers (the authors' code uses
LeakyReLU(0) there) and PyTorch's default initialisation (the paper used orthogonal/He).
"""

from torch import nn

from medbench.models.registry import register_model


@register_model(architecture="small_kernel", source="paper", min_input_size=6)
def small_kernel_cnn(in_chans: int = 1, num_classes: int = 7, k: int = 4, alpha: float = 0.3,
                     dropout: float = 0.5, num_conv: int = 5) -> nn.Module:
    """Five valid 2x2 convolutions shrink the input by 5 px, hence the 6 px minimum."""
    layers: list[nn.Module] = []
    chans = in_chans
    for depth in range(1, num_conv + 1):
        out = k * (depth + 1) ** 2
        layers += [nn.Conv2d(chans, out, kernel_size=2), nn.LeakyReLU(alpha)]
        chans = out
    return nn.Sequential(
        *layers,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(chans, 6 * chans),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(6 * chans, 2 * chans),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(2 * chans, num_classes),
    )
