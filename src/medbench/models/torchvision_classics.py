"""AlexNet and VGG from torchvision, with the first convolution adapted to any channel count."""

from torch import nn
from torchvision import models as tvm

from medbench.models.registry import register_model


def _adapt_first_conv(features: nn.Sequential, in_chans: int) -> None:
    conv = features[0]
    if conv.in_channels != in_chans:
        features[0] = nn.Conv2d(
            in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding
        )


@register_model(family="alexnet", source="torchvision", min_input_size=63)
def alexnet(in_chans: int = 3, num_classes: int = 1000, dropout: float = 0.5) -> nn.Module:
    model = tvm.alexnet(weights=None, num_classes=num_classes, dropout=dropout)
    _adapt_first_conv(model.features, in_chans)
    return model


@register_model(family="vgg", source="torchvision", min_input_size=32)
def vgg16(in_chans: int = 3, num_classes: int = 1000, dropout: float = 0.5) -> nn.Module:
    model = tvm.vgg16(weights=None, num_classes=num_classes, dropout=dropout)
    _adapt_first_conv(model.features, in_chans)
    return model


@register_model(family="vgg", source="torchvision", min_input_size=32)
def vgg16_bn(in_chans: int = 3, num_classes: int = 1000, dropout: float = 0.5) -> nn.Module:
    model = tvm.vgg16_bn(weights=None, num_classes=num_classes, dropout=dropout)
    _adapt_first_conv(model.features, in_chans)
    return model
