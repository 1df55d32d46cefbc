"""LeNet-5 (LeCun et al., 1998), written from the paper: no library provides it."""

from torch import nn

from medbench.models.registry import register_model


@register_model(architecture="lenet", source="paper", min_input_size=12)
def lenet5(in_chans: int = 1, num_classes: int = 10) -> nn.Module:
    """Two 5x5 conv + avg-pool stages, then 120-84-classes; an adaptive pool keeps any size."""
    return nn.Sequential(
        nn.Conv2d(in_chans, 6, kernel_size=5, padding=2),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.AdaptiveAvgPool2d(5),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.Tanh(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, num_classes),
    )
