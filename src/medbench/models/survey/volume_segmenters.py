"""The survey's 3-D lesion-segmentation CNNs (5.1.3, 5.1.6; Table 11), 2-D or 3-D.

Both papers are 3-D; ``spatial_dims`` builds either, so they run on 3-D volumes (NIfTI) and,
as labelled proxies, on 2-D images. Outputs keep the input size (``same`` padding), so they
train on patches and predict whole images or volumes by sliding windows.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from medbench.models.registry import register_model


def _layers(spatial_dims: int) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module]]:
    if spatial_dims == 3:
        return nn.Conv3d, nn.ConvTranspose3d, nn.AvgPool3d
    return nn.Conv2d, nn.ConvTranspose2d, nn.AvgPool2d


class ConvEncoderShortcut(nn.Module):
    """Brosch's 7-layer convolutional encoder network with a shortcut: convolution, average
    pooling, convolution (the convolutional pathway), then deconvolution, unpooling and
    deconvolution (the deconvolutional pathway); the first layer's features reach the output
    through their own deconvolution (the shortcut), summed before the output activation."""

    def __init__(self, in_chans: int, num_classes: int, spatial_dims: int, width: int,
                 kernels: tuple[int, int], pool: int) -> None:
        super().__init__()
        conv, deconv, avgpool = _layers(spatial_dims)
        first, second = kernels
        self.conv1 = conv(in_chans, width, first, padding=first // 2)
        self.pool = avgpool(pool)
        self.conv2 = conv(width, width, second, padding=second // 2)
        self.deconv2 = deconv(width, width, second, padding=second // 2)
        self.deconv1 = deconv(width, num_classes, first, padding=first // 2)
        self.shortcut = deconv(width, num_classes, first, padding=first // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = F.relu(self.conv1(x))
        deep = F.relu(self.deconv2(F.relu(self.conv2(self.pool(features)))))
        deep = F.interpolate(deep, size=features.shape[2:], mode="nearest")  # unpooling
        return self.deconv1(deep) + self.shortcut(features)


@register_model(architecture="conv_encoder_shortcut", source="paper", family="segmentation",
                spatial_dims=3, min_input_size=2)
def conv_encoder_shortcut(in_chans: int, num_classes: int, spatial_dims: int = 3,
                          width: int = 32, kernels: tuple[int, int] = (9, 5),
                          pool: int = 2) -> nn.Module:
    """Survey 5.1.3 (Brosch et al. 2016): a convolutional pathway of alternating conv and
    pooling layers, a deconvolutional pathway of alternating deconv and unpooling layers, a
    shortcut joining them for multi-scale features; MS lesions in 3-D MRI; DSC, TPR, FPR.
    From the paper: 9^3 then 5^3 kernels, 32 maps, 2^3 average pooling, ReLU, the shortcut
    from the first convolution to the output. Not built: the convolutional-RBM pretraining
    (random initialisation here) and the sensitivity/specificity-weighted loss
    (``runner.loss`` picks a MONAI loss instead). Chosen: ``same`` padding, so the output
    keeps the input size."""
    return ConvEncoderShortcut(in_chans, num_classes, spatial_dims, width, tuple(kernels), pool)


class Pathway(nn.Sequential):
    """A stack of kernel-3 convolutions with PReLU, one per width, keeping the size."""

    def __init__(self, in_chans: int, widths: tuple[int, ...], spatial_dims: int) -> None:
        conv = _layers(spatial_dims)[0]
        layers: list[nn.Module] = []
        for width in widths:
            layers += [conv(in_chans, width, 3, padding=1), nn.PReLU(width)]
            in_chans = width
        super().__init__(*layers)


class DeepMedic(nn.Module):
    """DeepMedic: a normal-resolution pathway over the image and a low-resolution pathway over
    a ``factor``-times downsampled copy (wider context at the same cost), upsampled back,
    concatenated, and classified by fully connected (kernel-1) layers."""

    def __init__(self, in_chans: int, num_classes: int, spatial_dims: int,
                 widths: tuple[int, ...], dense: tuple[int, ...], factor: int,
                 dropout: float) -> None:
        super().__init__()
        conv, _, avgpool = _layers(spatial_dims)
        self.factor = factor
        self.normal = Pathway(in_chans, widths, spatial_dims)
        self.low = Pathway(in_chans, widths, spatial_dims)
        self.downsample = avgpool(factor, ceil_mode=True)
        layers: list[nn.Module] = []
        channels = 2 * widths[-1]
        for width in dense:
            layers += [conv(channels, width, 1), nn.PReLU(width), nn.Dropout(dropout)]
            channels = width
        self.head = nn.Sequential(*layers, conv(channels, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.low(self.downsample(x))
        low = F.interpolate(low, size=x.shape[2:], mode="nearest")
        return self.head(torch.cat([self.normal(x), low], dim=1))


@register_model(architecture="deepmedic", source="paper", family="segmentation",
                spatial_dims=3, min_input_size=3)
def deepmedic(in_chans: int, num_classes: int, spatial_dims: int = 3,
              widths: tuple[int, ...] = (30, 30, 40, 40, 40, 40, 50, 50),
              dense: tuple[int, ...] = (150, 150), factor: int = 3,
              dropout: float = 0.5) -> nn.Module:
    """Survey 5.1.6 (Kamnitsas et al. 2016, DeepMedic): small kernels for local neighbours,
    parallel convolutional pathways for multi-scale processing, 3-D, a fully connected 3-D CRF
    after the CNN; first at ISLES-SISS 2015. From the paper: eight 3^3 layers of 30 to 50 maps
    per pathway, a low-resolution pathway on a 3x downsampled copy, two fully connected layers
    of 150, PReLU, dropout. Not built: the 3-D CRF (the hard labels come from the validation
    threshold), the residual connections of the 2016 BRATS version. Chosen: ``same`` padding
    and nearest upsampling, so the output keeps the input size."""
    return DeepMedic(in_chans, num_classes, spatial_dims, tuple(widths), tuple(dense), factor,
                     dropout)
