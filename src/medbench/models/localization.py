"""Localizers: a registered CNN backbone with a class head and a box head, one tensor out.

The output is ``(B, 4 + C)`` (the localization family's contract): the box as logits of
centre x, centre y, width, height in 0..1 (the family applies the sigmoid), then C class
logits. The box head finds the centre by a soft-argmax over the backbone's last feature map
(a 1x1 conv scores each cell, a softmax over cells weights the cells' centres), which keeps
where the object is (a global pooling would drop it), and sizes the box from the features
pooled with the same weights; the class head sees the globally pooled features.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medbench.errors import ConfigError
from medbench.models.registry import MODELS, create_model, register_model

EPS = 1e-4  # centres are kept inside (EPS, 1 - EPS) before their logit


class Localizer(nn.Module):
    """``backbone.forward_features(x)`` (B, F, h, w) -> (B, 4 + classes)."""

    def __init__(self, backbone: nn.Module, features: int, classes: int, hidden: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.attention = nn.Conv2d(features, 1, 1)
        self.size = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, 2))
        self.classes = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone.forward_features(x)
        _, _, h, w = f.shape
        weights = self.attention(f).flatten(1).softmax(-1)  # (B, h*w)
        ys = (torch.arange(h, device=f.device, dtype=f.dtype) + 0.5) / h
        xs = (torch.arange(w, device=f.device, dtype=f.dtype) + 0.5) / w
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
        centre = (weights @ grid).clamp(EPS, 1 - EPS)
        pooled = (f.flatten(2) * weights[:, None]).sum(-1)
        return torch.cat([torch.logit(centre), self.size(pooled),
                          self.classes(f.mean((2, 3)))], dim=1)


@register_model(architecture="localizer", source="medbench", family="localization")
def localizer(in_chans: int = 3, num_classes: int = 6, backbone: str = "resnet18",
              hidden: int = 128, backbone_kwargs: dict[str, Any] | None = None) -> nn.Module:
    """``backbone``: a registered model with timm's ``forward_features`` and
    ``num_features`` (resnet18/34/50, densenet121, ...); ``num_classes``: 4 + the classes."""
    if backbone not in MODELS.names():
        raise ConfigError(f"model.kwargs.backbone: unknown model '{backbone}'")
    net = create_model(backbone, in_chans=in_chans, num_classes=0, **(backbone_kwargs or {}))
    if not hasattr(net, "forward_features") or not hasattr(net, "num_features"):
        raise ConfigError(f"model.kwargs.backbone: '{backbone}' has no forward_features / "
                          "num_features (pick a timm model: resnet18, resnet34, densenet121)")
    if num_classes < 5:
        raise ConfigError(f"localizer: {num_classes} outputs, expected 4 box values and at "
                          "least one class")
    return Localizer(net, int(net.num_features), num_classes - 4, hidden)
