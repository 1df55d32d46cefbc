"""ResNet, DenseNet, Inception and Xception from timm, plus MedMNIST's 28 px ResNets."""

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


@register_model(architecture="resnet", source="timm")
def resnet18(in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    return _timm("resnet18", in_chans, num_classes, **kwargs)


@register_model(architecture="resnet", source="timm")
def resnet34(in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    return _timm("resnet34", in_chans, num_classes, **kwargs)


@register_model(architecture="resnet", source="timm")
def resnet50(in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    return _timm("resnet50", in_chans, num_classes, **kwargs)


@register_model(architecture="resnet", source="timm")
def resnet18_28(in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    return _small_input_stem(_timm("resnet18", in_chans, num_classes, **kwargs), in_chans)


@register_model(architecture="resnet", source="timm")
def resnet50_28(in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    return _small_input_stem(_timm("resnet50", in_chans, num_classes, **kwargs), in_chans)


@register_model(architecture="densenet", source="timm", min_input_size=29)
def densenet121(in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    return _timm("densenet121", in_chans, num_classes, **kwargs)


@register_model(architecture="densenet", source="timm", min_input_size=29)
def densenet201(in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    return _timm("densenet201", in_chans, num_classes, **kwargs)


@register_model(architecture="inception", source="timm", min_input_size=75)
def inception_v3(in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    return _timm("inception_v3", in_chans, num_classes, **kwargs)


@register_model(architecture="inception", source="timm", min_input_size=75)
def inception_v4(in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    return _timm("inception_v4", in_chans, num_classes, **kwargs)


@register_model(architecture="xception", source="timm", min_input_size=7)
def xception(in_chans: int = 3, num_classes: int = 1000, **kwargs) -> nn.Module:
    """Chollet's original Xception (timm's ``legacy_xception``)."""
    return _timm("legacy_xception", in_chans, num_classes, **kwargs)
