"""The survey's brain-segmentation CNNs (section 5.1, Table 11), as dense per-pixel networks.

The papers classify the centre pixel of a patch. Here each patch classifier is evaluated
densely, the exact equivalent of sliding it over every pixel: poolings keep stride 1 and the
layers after a (formerly strided) pooling are dilated by its stride (the *a trous* trick), and
the dense layers become convolutions over the receptive field then 1x1 convolutions. So one
network trains on patches with a mask and predicts whole images by sliding windows, like every
segmentation model here; only borders differ (zero padding instead of cropping).

What came from the papers (as the survey and their abstracts give them) and what was chosen is
in each builder's docstring. None of the papers' pre- or post-processing (MRF, CRF, RBM
pretraining, bias-field correction) is built: the experiments say so.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from medbench.models.registry import register_model


def _conv(spatial_dims: int) -> type[nn.Module]:
    return nn.Conv3d if spatial_dims == 3 else nn.Conv2d


def _same(kernel: int, dilation: int = 1) -> int:
    return dilation * (kernel - 1) // 2


class Maxout(nn.Module):
    """A convolution to ``k`` candidate maps per output map, reduced by their maximum."""

    def __init__(self, in_chans: int, out_chans: int, kernel: int, k: int = 2) -> None:
        super().__init__()
        self.k, self.conv = k, nn.Conv2d(in_chans, out_chans * k, kernel, padding=_same(kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y.view(y.shape[0], -1, self.k, *y.shape[2:]).amax(dim=2)


def _dense_head(in_chans: int, widths: tuple[int, ...], num_classes: int,
                dropout: float) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Conv2d(in_chans, width, 1), nn.LeakyReLU(0.333, inplace=True),
                   nn.Dropout2d(dropout)]
        in_chans = width
    return [*layers, nn.Conv2d(in_chans, num_classes, 1)]


@register_model(architecture="small_kernel_patch_cnn", source="paper", family="segmentation")
def small_kernel_patch_cnn(in_chans: int, num_classes: int, widths: tuple[int, int] = (64, 128),
                           convs_per_block: int = 3, dense: tuple[int, ...] = (256, 256),
                           dropout: float = 0.1) -> nn.Module:
    """Survey 5.1.1 (Pereira et al. 2015): 3x3 kernels only, so depth grows while the
    receptive field stays that of larger kernels; max-pooling; dropout in the dense layers;
    eight conv layers and three dense layers (high-grade model; the low-grade one has four).
    From the paper: 33x33 patches, leaky ReLU (0.333), two 3x3/2 max-poolings. Chosen: the
    high-grade layout as blocks of ``convs_per_block`` convolutions (3 + 3 here, widths 64 and
    128; the paper's fourth-of-eight convolutions are folded into ``convs_per_block``), so the
    receptive field is 33 px, as the paper's patch."""
    layers: list[nn.Module] = []
    channels, dilation = in_chans, 1
    for width in widths:
        for _ in range(convs_per_block):
            layers += [nn.Conv2d(channels, width, 3, padding=_same(3, dilation),
                                 dilation=dilation), nn.LeakyReLU(0.333, inplace=True)]
            channels = width
        # MaxPool2d refuses padding over half its kernel: pad by replicating the border
        layers += [nn.ReplicationPad2d(_same(3, dilation)),
                   nn.MaxPool2d(3, stride=1, dilation=dilation)]
        dilation *= 2  # the pooling was 3x3 stride 2
    # the first dense layer sees the 3x3 map left of a 33x33 patch
    layers += [nn.Conv2d(channels, dense[0], 3, padding=_same(3, dilation), dilation=dilation),
               nn.LeakyReLU(0.333, inplace=True), nn.Dropout2d(dropout)]
    layers += _dense_head(dense[0], tuple(dense[1:]), num_classes, dropout)
    return nn.Sequential(*layers)


class TwoPathway(nn.Module):
    """Havaei's TwoPathCNN: a local path (7x7 then 3x3 maxout convolutions, stride-1 max
    pooling 4x4 and 2x2) and a global path (one 13x13 maxout convolution), concatenated and
    classified by one 21x21 convolution."""

    def __init__(self, in_chans: int, num_classes: int, local: int = 64,
                 global_: int = 160) -> None:
        super().__init__()
        self.local = nn.Sequential(
            Maxout(in_chans, local, 7), nn.MaxPool2d(4, stride=1),
            Maxout(local, local, 3), nn.MaxPool2d(2, stride=1))
        self.global_ = Maxout(in_chans, global_, 13)
        self.classify = nn.Conv2d(local + global_, num_classes, 21, padding=10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.local(x)
        # unpadded stride-1 poolings of 4 and 2 take 4 px: pad 2 a side, centred again
        local = F.pad(local, (2, 2, 2, 2))
        return self.classify(torch.cat([local, self.global_(x)], dim=1))


class InputCascade(nn.Module):
    """Havaei's InputCascadeCNN: the first TwoPathCNN's class probabilities enter the second
    as extra input channels."""

    def __init__(self, in_chans: int, num_classes: int, **kwargs: int) -> None:
        super().__init__()
        self.first = TwoPathway(in_chans, num_classes, **kwargs)
        self.second = TwoPathway(in_chans + num_classes, num_classes, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.cat([x, self.first(x).softmax(dim=1)], dim=1))


@register_model(architecture="two_pathway_cnn", source="paper", family="segmentation",
                min_input_size=5)
def two_pathway_cnn(in_chans: int, num_classes: int, cascade: bool = True, local: int = 64,
                    global_: int = 160) -> nn.Module:
    """Survey 5.1.4 (Havaei et al. 2017): global context and local detail learned at once by
    two pathways; the cascaded variant (ranked second at BRATS-2013) feeds a first network's
    output to a second; slice-by-slice 2D. From the paper: the TwoPathCNN layout above (33x33
    inputs, maxout with 2 candidates, 64 local and 160 global maps). Chosen: the input
    cascade, both networks trained jointly end to end (the paper trains in two phases to
    handle class imbalance; ``runner.loss`` with class-balanced patches stands in)."""
    if cascade:
        return InputCascade(in_chans, num_classes, local=local, global_=global_)
    return TwoPathway(in_chans, num_classes, local, global_)


class MultiScaleBranches(nn.Module):
    """One branch per patch size, each a 3-layer CNN whose receptive field is that patch,
    the branches' features joined by shared dense (1x1) layers."""

    def __init__(self, in_chans: int, num_classes: int, patch_sizes: tuple[int, ...],
                 width: int, kernel: int, dense: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        self.branches = nn.ModuleList()
        for size in patch_sizes:
            # three kernel-k convolutions of dilations (d, 2d, 3d): field 1 + 6d(k-1)/2 ~ size
            d = max(1, round((size - 1) / (3 * (kernel - 1))))
            layers: list[nn.Module] = []
            channels = in_chans
            for step in (1, 2, 3):
                layers += [nn.Conv2d(channels, width, kernel, dilation=d * step,
                                     padding=_same(kernel, d * step)), nn.ReLU(inplace=True)]
                channels = width
            self.branches.append(nn.Sequential(*layers))
        self.head = nn.Sequential(*_dense_head(width * len(patch_sizes), dense, num_classes,
                                               dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([branch(x) for branch in self.branches], dim=1))


@register_model(architecture="multiscale_patch_cnn", source="paper", family="segmentation")
def multiscale_patch_cnn(in_chans: int, num_classes: int,
                         patch_sizes: tuple[int, ...] = (12, 28, 48), width: int = 32,
                         kernel: int = 3, dense: tuple[int, ...] = (128,),
                         dropout: float = 0.25) -> nn.Module:
    """Survey 5.1.5 (Zhao & Jia 2016): three patch sizes (48x48, 28x28, 12x12) into three
    CNNs, all features into the fully connected layer; 2D instead of 3D for speed. Also
    5.1.6's second paper (Moeskops et al. 2016: a branch per patch size, only the output layer
    shared, larger kernels for larger patches; ``patch_sizes=[25, 51, 75]``, ``kernel=5``).
    Chosen: each branch is three convolutions with dilations growing so that its receptive
    field is about its patch size (13, 29, 49 px for the defaults), 32 maps, one shared dense
    layer of 128."""
    return MultiScaleBranches(in_chans, num_classes, tuple(patch_sizes), width, kernel,
                              tuple(dense), dropout)
