"""Paired-convolution CNN for breast mass sub-patches (survey section 4.4.3; Sun et al., 2017).

From the survey: the CNN takes sub-patches of the mass ROIs through three pairs of convolution
layers, max-pooling and a fully connected layer. Chosen here, where it is silent: 3x3 padded
convolutions with ReLU, 16/32/64 maps per pair, a 2x2 max-pool after each pair (a global
average pool after the last, so any input of 4 px or more goes through), dropout 0.5 and one
fully connected layer to the classes. The features a semi-supervised graph reads are the 64
pooled maps (the last Linear layer's input).
"""

from torch import nn

from medbench.models.registry import register_model


@register_model(architecture="paired_conv", source="paper", min_input_size=4)
def paired_conv_cnn(in_chans: int = 1, num_classes: int = 2, width: int = 16,
                    dropout: float = 0.5, batch_norm: bool = True) -> nn.Module:
    """Three (conv, conv, max-pool) pairs of ``width``, 2x and 4x maps, then one Linear."""
    layers: list[nn.Module] = []
    chans = in_chans
    for pair in range(3):
        out = width * 2 ** pair
        for conv_in in (chans, out):
            layers += [nn.Conv2d(conv_in, out, 3, padding=1, bias=not batch_norm),
                       *([nn.BatchNorm2d(out)] if batch_norm else []), nn.ReLU(inplace=True)]
        layers.append(nn.MaxPool2d(2) if pair < 2 else nn.AdaptiveAvgPool2d(1))
        chans = out
    return nn.Sequential(*layers, nn.Flatten(), nn.Dropout(dropout),
                         nn.Linear(chans, num_classes))
