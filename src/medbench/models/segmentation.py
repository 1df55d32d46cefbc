"""Segmentation networks: U-Net with an encoder from segmentation-models-pytorch, MONAI's
plain U-Net for 2D or 3D, and torchvision's FCN. Random initialisation (no download:
``encoder_weights=None``); ``model.pretrained_path`` loads a local file of the whole network
like any model, ``model.kwargs.encoder_weights_path`` a file of the encoder alone (for example
a classification run's ResNet-18 checkpoint: its classifier is skipped)."""

from __future__ import annotations

import torch
from torch import nn

from medbench.errors import ConfigError
from medbench.models.registry import load_pretrained, register_model


@register_model(architecture="unet", source="segmentation-models-pytorch",
                family="segmentation")
def unet(in_chans: int, num_classes: int, encoder: str = "resnet18", encoder_depth: int = 5,
         decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
         encoder_weights_path: str | None = None) -> nn.Module:
    """U-Net (Ronneberger 2015) with a timm / torchvision encoder (any input size: pads)."""
    import segmentation_models_pytorch as smp

    model = smp.Unet(encoder_name=encoder, encoder_weights=None, encoder_depth=encoder_depth,
                     decoder_channels=list(decoder_channels), in_channels=in_chans,
                     classes=num_classes)
    if encoder_weights_path:  # tensors matched by name and shape; none matching is an error
        load_pretrained(model.encoder, encoder_weights_path,
                        key="model.kwargs.encoder_weights_path")
    return model


class _Logits(nn.Module):
    """torchvision's segmentation models return a dict: keep its ``out`` logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)["out"]


@register_model(architecture="fcn", source="torchvision", family="segmentation")
def fcn(in_chans: int, num_classes: int, backbone: str = "resnet50",
        encoder_weights_path: str | None = None) -> nn.Module:
    """Fully convolutional network (Long et al. 2015) as torchvision builds it: a dilated
    ResNet backbone (output stride 8), a 3x3 convolution head, bilinear upsampling."""
    from torchvision.models import segmentation

    builders = {"resnet50": segmentation.fcn_resnet50, "resnet101": segmentation.fcn_resnet101}
    if backbone not in builders:
        raise ConfigError(f"model.kwargs.backbone: '{backbone}' is not one of "
                          f"{', '.join(builders)}")
    model = builders[backbone](weights=None, weights_backbone=None, num_classes=num_classes,
                               aux_loss=False)
    if in_chans != 3:
        model.backbone.conv1 = nn.Conv2d(in_chans, 64, 7, stride=2, padding=3, bias=False)
    if encoder_weights_path:
        load_pretrained(model.backbone, encoder_weights_path,
                        key="model.kwargs.encoder_weights_path")
    return _Logits(model)


@register_model(architecture="unet", source="monai", family="segmentation", min_input_size=32)
def basic_unet(in_chans: int, num_classes: int, spatial_dims: int = 2,
               features: tuple[int, ...] = (32, 32, 64, 128, 256, 32)) -> nn.Module:
    """MONAI's BasicUNet: the original U-Net layout, 2D or 3D (inputs of 32 or more)."""
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=spatial_dims, in_channels=in_chans, out_channels=num_classes,
                     features=tuple(features))
