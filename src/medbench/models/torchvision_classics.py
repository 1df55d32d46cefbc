"""AlexNet, VGG and GoogLeNet from torchvision, first convolution adapted to any channel count."""

from torch import nn
from torchvision import models as tvm
from torchvision.models.googlenet import BasicConv2d

from medbench.models.registry import register_model


def _adapt_first_conv(features: nn.Sequential, in_chans: int) -> None:
    conv = features[0]
    if conv.in_channels != in_chans:
        features[0] = nn.Conv2d(
            in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding
        )


@register_model(architecture="alexnet", source="torchvision", min_input_size=63)
def alexnet(in_chans: int = 3, num_classes: int = 1000, dropout: float = 0.5) -> nn.Module:
    model = tvm.alexnet(weights=None, num_classes=num_classes, dropout=dropout)
    _adapt_first_conv(model.features, in_chans)
    return model


def _vgg(arch: str):
    def build(in_chans: int = 3, num_classes: int = 1000, dropout: float = 0.5) -> nn.Module:
        model = getattr(tvm, arch)(weights=None, num_classes=num_classes, dropout=dropout)
        _adapt_first_conv(model.features, in_chans)
        return model

    return build


# the VGG variants differ only in torchvision's builder: one factory, a registration each
for _arch in ("vgg11", "vgg11_bn", "vgg16", "vgg16_bn", "vgg19"):
    register_model(_arch, architecture="vgg", source="torchvision", min_input_size=32)(_vgg(_arch))


@register_model(architecture="inception", source="torchvision", min_input_size=15)
def googlenet(in_chans: int = 3, num_classes: int = 1000, dropout: float = 0.2) -> nn.Module:
    """GoogLeNet (Inception-v1) without the auxiliary heads."""
    model = tvm.googlenet(weights=None, num_classes=num_classes, aux_logits=False,
                          init_weights=True, dropout=dropout)
    model.conv1 = BasicConv2d(in_chans, 64, kernel_size=7, stride=2, padding=3)
    return model
