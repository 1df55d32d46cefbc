"""ResNet and DenseNet from timm, plus the MedMNIST 28 px ResNet variants."""

import timm
from torch import nn

from medbench.models.registry import register_model


def _timm(arch: str, in_chans: int, num_classes: int, **kwargs) -> nn.Module:
    return timm.create_model(arch, pretrained=False, in_chans=in_chans, num_classes=num_classes,
                             **kwargs)


def _small_input_stem(model: nn.Module, in_chans: int) -> nn.Module:
    """MedMNIST's 28 px ResNet: a 3x3 stride-1 stem and no max-pool (Yang et al., 2023)."""
    model.conv1 = nn.Conv2d(in_chans, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@register_model(family="resnet", source="timm", min_input_size=32)
def resnet18(in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    return _timm("resnet18", in_chans, num_classes, **kwargs)


@register_model(family="resnet", source="timm", min_input_size=32)
def resnet50(in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    return _timm("resnet50", in_chans, num_classes, **kwargs)


@register_model(family="resnet", source="timm", min_input_size=8)
def resnet18_28(in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    return _small_input_stem(_timm("resnet18", in_chans, num_classes, **kwargs), in_chans)


@register_model(family="resnet", source="timm", min_input_size=8)
def resnet50_28(in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    return _small_input_stem(_timm("resnet50", in_chans, num_classes, **kwargs), in_chans)


@register_model(family="densenet", source="timm", min_input_size=32)
def densenet121(in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    return _timm("densenet121", in_chans, num_classes, **kwargs)
