"""Six-layer CNN for HEp-2 cell images (survey section 4.3.2; Gao et al., 2014/2017).

The survey names the six-layer CNN and its preprocessing/augmentation but no layer details;
these follow the cited paper: six feature layers (C1 6 maps of 7x7, S2 2x2 max-pool, C3 16 maps
of 4x4, S4 3x3 max-pool, C5 32 maps of 3x3, S6 3x3 max-pool), then a 150-unit dense layer and
the output, for 78x78 cell images. Chosen here: tanh activations; S4 rounds up (ceil mode) and
S6 is an adaptive max-pool to 3x3, which is exactly the paper's pooling at 78 px and lets
28 px MedMNIST images through (at 28 px C5 gives a 1x1 map that S6 repeats to 3x3).
"""

from torch import nn

from medbench.models.registry import register_model


@register_model(architecture="six_layer", source="paper", min_input_size=26)
def six_layer_cnn(in_chans: int = 1, num_classes: int = 6, hidden: int = 150) -> nn.Module:
    """Valid convolutions as in the paper; C5 needs a 3 px S4 map, i.e. a 26 px input."""
    return nn.Sequential(
        nn.Conv2d(in_chans, 6, 7), nn.Tanh(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 4), nn.Tanh(),
        nn.MaxPool2d(3, ceil_mode=True),
        nn.Conv2d(16, 32, 3), nn.Tanh(),
        nn.AdaptiveMaxPool2d(3),
        nn.Flatten(),
        nn.Linear(32 * 3 * 3, hidden), nn.Tanh(),
        nn.Linear(hidden, num_classes),
    )
