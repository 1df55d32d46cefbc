"""3D classifiers of volumes (N, C, D, H, W): the ResNets MedMNIST v2 benchmarks on its 3D sets.

MedMNIST v2 (Yang et al., Sci Data 2023) builds its 28 px 2D ResNet-18/50 (3x3 stride-1 stem,
no max-pool) and turns it into a volume model three ways (its code: acsconv's converters):
**3D** (every 2D kernel a k^3 kernel), **2.5D** (every kernel (1, k, k): 2D convolutions slice
by slice along D, with 3D pooling and strides) and **ACS** (Yang et al., IEEE JBHI 2021: the
output channels of each 2D kernel split in three, applied in the axial, coronal and sagittal
planes). The 3D ResNets here are MONAI's (the same stem set by its options); 2.5D and ACS use
the acsconv package's operators (``ACSConv``, ``Conv2_5d``) on torchvision's ResNet.

The conversion is written here: acsconv 0.1.1's converter fails on torch 2.14.1 (it passes
every name of ``BatchNorm3d.__init__``'s arguments, which now include ``bias``, as attributes
of the 2D layer: the bias tensor reaches a boolean test). It copies the 2D weights (ACS keeps
their shape; 2.5D unsqueezes them), so a 2D checkpoint loads into the ACS model by name.
"""

from __future__ import annotations

import torch
from torch import nn

from medbench.errors import ConfigError
from medbench.models.registry import register_model

_POOLS_3D = {nn.MaxPool2d: nn.MaxPool3d, nn.AvgPool2d: nn.AvgPool3d}


def _medmnist_resnet_2d(depth: int, in_chans: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet-18/50 with MedMNIST's 28 px stem (3x3, stride 1, no max-pool)."""
    import torchvision

    model = getattr(torchvision.models, f"resnet{depth}")(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_chans, 64, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def _conv_3d(conv: nn.Conv2d, kind: str) -> nn.Module:
    from acsconv.operators import ACSConv, Conv2_5d

    if len(set(conv.kernel_size)) > 1 or len(set(conv.stride)) > 1 or len(
            set(conv.padding)) > 1 or len(set(conv.dilation)) > 1:
        raise ConfigError(f"{kind} conversion needs square 2D kernels, got {conv}")
    options = dict(stride=conv.stride[0], padding=conv.padding[0], dilation=conv.dilation[0],
                   groups=conv.groups, bias=conv.bias is not None)
    if kind == "acs":
        new = ACSConv(conv.in_channels, conv.out_channels, conv.kernel_size[0], **options)
        weight = conv.weight.detach()
    else:  # 2.5D: a (1, k, k) kernel, i.e. 2D convolution of every slice along D
        new = Conv2_5d(conv.in_channels, conv.out_channels, conv.kernel_size[0], **options)
        weight = conv.weight.detach().unsqueeze(2)
    with torch.no_grad():
        new.weight.copy_(weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias.detach())
    return new


def convert_to_3d(module: nn.Module, kind: str) -> nn.Module:
    """Replace, in place, every 2D layer of ``module`` by its ``kind`` ('acs' or '2.5d') 3D
    counterpart: Conv2d -> ACSConv / Conv2_5d, BatchNorm2d -> BatchNorm3d, pools -> 3D."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d):
            new = _conv_3d(child, kind)
        elif isinstance(child, nn.BatchNorm2d):
            new = nn.BatchNorm3d(child.num_features, child.eps, child.momentum, child.affine,
                                 child.track_running_stats)
            new.load_state_dict(child.state_dict())
        elif type(child) in _POOLS_3D:
            options = {k: getattr(child, k) for k in ("kernel_size", "stride", "padding",
                                                       "ceil_mode")}
            new = _POOLS_3D[type(child)](**options)
        elif isinstance(child, nn.AdaptiveAvgPool2d):
            size = child.output_size
            new = nn.AdaptiveAvgPool3d(size if isinstance(size, int) else (size[0],) * 3)
        elif "2d" in type(child).__name__.lower():
            raise ConfigError(f"{kind} conversion: no 3D counterpart for {type(child).__name__}")
        else:
            convert_to_3d(child, kind)
            continue
        setattr(module, name, new)
    return module


def _monai_resnet(depth: int, in_chans: int, num_classes: int, **kwargs) -> nn.Module:
    """MONAI's 3D ResNet with MedMNIST's small-input stem (3^3 stride 1, no max-pool) and
    torchvision's shortcut (1^3 conv without bias + BN)."""
    from monai.networks import nets

    options = dict(spatial_dims=3, n_input_channels=in_chans, num_classes=num_classes,
                   conv1_t_size=3, conv1_t_stride=1, no_max_pool=True, shortcut_type="B",
                   bias_downsample=False)
    return getattr(nets, f"resnet{depth}")(**{**options, **kwargs})


@register_model(architecture="resnet3d", source="monai", spatial_dims=3)
def resnet18_3d(in_chans: int = 1, num_classes: int = 2, **kwargs) -> nn.Module:
    return _monai_resnet(18, in_chans, num_classes, **kwargs)


@register_model(architecture="resnet3d", source="monai", spatial_dims=3)
def resnet50_3d(in_chans: int = 1, num_classes: int = 2, **kwargs) -> nn.Module:
    return _monai_resnet(50, in_chans, num_classes, **kwargs)


@register_model(architecture="resnet_acs", source="acsconv", spatial_dims=3)
def resnet18_acs(in_chans: int = 1, num_classes: int = 2) -> nn.Module:
    return convert_to_3d(_medmnist_resnet_2d(18, in_chans, num_classes), "acs")


@register_model(architecture="resnet_acs", source="acsconv", spatial_dims=3)
def resnet50_acs(in_chans: int = 1, num_classes: int = 2) -> nn.Module:
    return convert_to_3d(_medmnist_resnet_2d(50, in_chans, num_classes), "acs")


@register_model(architecture="resnet_2.5d", source="acsconv", spatial_dims=3)
def resnet18_2_5d(in_chans: int = 1, num_classes: int = 2) -> nn.Module:
    return convert_to_3d(_medmnist_resnet_2d(18, in_chans, num_classes), "2.5d")


@register_model(architecture="resnet_2.5d", source="acsconv", spatial_dims=3)
def resnet50_2_5d(in_chans: int = 1, num_classes: int = 2) -> nn.Module:
    return convert_to_3d(_medmnist_resnet_2d(50, in_chans, num_classes), "2.5d")
