"""Segmentation networks: U-Net with an encoder from segmentation-models-pytorch, and MONAI's
plain U-Net for 2D or 3D. Random initialisation (no download: ``encoder_weights=None``);
``model.pretrained_path`` loads a local file like any model."""

from __future__ import annotations

from torch import nn

from medbench.models.registry import register_model


@register_model(architecture="unet", source="segmentation-models-pytorch",
                family="segmentation")
def unet(in_chans: int, num_classes: int, encoder: str = "resnet18", encoder_depth: int = 5,
         decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)) -> nn.Module:
    """U-Net (Ronneberger 2015) with a timm / torchvision encoder (any input size: pads)."""
    import segmentation_models_pytorch as smp

    return smp.Unet(encoder_name=encoder, encoder_weights=None, encoder_depth=encoder_depth,
                    decoder_channels=list(decoder_channels), in_channels=in_chans,
                    classes=num_classes)


@register_model(architecture="unet", source="monai", family="segmentation", min_input_size=32)
def basic_unet(in_chans: int, num_classes: int, spatial_dims: int = 2,
               features: tuple[int, ...] = (32, 32, 64, 128, 256, 32)) -> nn.Module:
    """MONAI's BasicUNet: the original U-Net layout, 2D or 3D (inputs of 32 or more)."""
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=spatial_dims, in_channels=in_chans, out_channels=num_classes,
                     features=tuple(features))
