"""Retinal-vessel CNNs of the survey's segmentation and detection sections.

``multilabel_fcn`` (5.3.2; Dasgupta & Singh, 2017). From the survey: the green channel of the
fundus image is the input (the data config keeps it: ``data.channels=[1]``), the network is
upsampled at its sixth layer to restore the spatial size, and its output is a vector of labels
(every pixel of the patch at once: structured, multi-label prediction) rather than one scalar.
Chosen here, where the survey is silent: 3x3 convolutions with 32 and 64 filters, ReLU, one
2x2 max-pool (layer 3), bilinear upsampling as layer 6, a 1x1 classifier per pixel, dropout
0.25 before it; 28x28 patches in the preset.

``vessel_cnn`` (6.2.2; Maji, Santara & Mitra, 2016): a member of the 12-CNN ensemble whose
per-pixel vessel probabilities are averaged (``model=ensemble``). The survey gives only the
ensemble and the averaging; each member here is a small fully convolutional network (5x5, 3x3,
3x3 convolutions of 32, 48, 64 filters, a 1x1 classifier), members differing by their seed.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from medbench.models.registry import register_model


class MultilabelFCN(nn.Module):
    def __init__(self, in_chans: int, num_classes: int, width: int = 32,
                 dropout: float = 0.25) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(in_chans, w, 3, padding=1), nn.ReLU(inplace=True),  # 1
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True),  # 2
            nn.MaxPool2d(2),  # 3
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),  # 4
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True))  # 5
        self.decoder = nn.Sequential(  # after the upsampling (6)
            nn.Conv2d(2 * w, w, 3, padding=1), nn.ReLU(inplace=True),  # 7
            nn.Dropout2d(dropout), nn.Conv2d(w, num_classes, 1))  # 8: a label per pixel

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.encoder(images)
        features = F.interpolate(features, size=images.shape[-2:], mode="bilinear",
                                 align_corners=False)  # layer 6: back to the input size
        return self.decoder(features)


@register_model(architecture="vessel_fcn", source="paper", family="segmentation",
                min_input_size=2)
def multilabel_fcn(in_chans: int, num_classes: int, width: int = 32,
                   dropout: float = 0.25) -> nn.Module:
    return MultilabelFCN(in_chans, num_classes, width, dropout)


@register_model(architecture="vessel_fcn", source="paper", family="segmentation")
def vessel_cnn(in_chans: int, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_chans, 32, 5, padding=2), nn.ReLU(inplace=True),
        nn.Conv2d(32, 48, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(48, 64, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(64, num_classes, 1))
