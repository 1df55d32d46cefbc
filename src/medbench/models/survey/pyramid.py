"""Survey 7.2.1 (Emad, Yassine, Fahmy 2015): pyramid-of-scales localization, as a labelled
proxy on BCCD's white blood cell (the paper localizes the left ventricle in cardiac MRI).

From the paper (as the survey states it): a CNN trained on patches (object vs not), applied
over a pyramid of scales so that objects of any size fit its patch, the best-scoring window
giving the localization; scored by patch accuracy, sensitivity and specificity.

Chosen here: the patch CNN (LeNet-like, ``width`` channels, valid convolutions) sees exactly a
``patch`` x ``patch`` window (32 px: three 5x5 convs, two 2x max-pools), so run fully
convolutionally on a scaled image it scores every window at a stride of 4 px; ``scales``
resize the input (bilinear, antialiased), each making windows of ``patch / scale`` input px.
Training windows with IoU >= ``positive_iou`` with the true box take its class, those below
``negative_iou`` (and every window of an image without object) are background (class 0), the
rest are ignored; the loss is the mean cross-entropy of the positives plus that of the
negatives (the classes balanced). The output is the family's ``(B, 4 + C)``: the best window
(highest object-vs-background logit margin) as box logits, then its class logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, box_iou

from medbench.errors import ConfigError
from medbench.models.registry import register_model

PATCH, STRIDE = 32, 4  # the patch CNN's window and its stride over a scaled image
EPS = 1e-4


def _patch_cnn(in_chans: int, classes: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chans, width, 5), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),                                               # 32 -> 28 -> 14
        nn.Conv2d(width, 2 * width, 5), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),                                               # 14 -> 10 -> 5
        nn.Conv2d(2 * width, 4 * width, 5), nn.BatchNorm2d(4 * width), nn.ReLU(inplace=True),
        nn.Conv2d(4 * width, classes, 1))                              # 5 -> 1


class PyramidPatchLocalizer(nn.Module):
    """A patch classifier scanned over an image pyramid; the best window localizes."""

    def __init__(self, in_chans: int, classes: int, scales: Sequence[float], width: int,
                 positive_iou: float, negative_iou: float) -> None:
        super().__init__()
        self.patch_cnn = _patch_cnn(in_chans, classes, width)
        self.scales = tuple(float(s) for s in scales)
        self.positive_iou, self.negative_iou = positive_iou, negative_iou

    def windows(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (B, N, C) of every window of every scale, and the windows (N, 4) as
        normalised cx, cy, w, h."""
        height, width = x.shape[-2:]
        logits, boxes = [], []
        for scale in self.scales:
            size = (max(PATCH, round(height * scale)), max(PATCH, round(width * scale)))
            scores = self.patch_cnn(F.interpolate(x, size=size, mode="bilinear",
                                                  antialias=True, align_corners=False))
            rows, cols = scores.shape[-2:]
            ys = (torch.arange(rows, device=x.device) * STRIDE + PATCH / 2) / size[0]
            xs = (torch.arange(cols, device=x.device) * STRIDE + PATCH / 2) / size[1]
            cy, cx = torch.meshgrid(ys, xs, indexing="ij")
            wh = torch.tensor([PATCH / size[1], PATCH / size[0]], device=x.device)
            boxes.append(torch.cat([torch.stack([cx, cy], -1).reshape(-1, 2),
                                    wh.expand(rows * cols, 2)], 1))
            logits.append(scores.flatten(2).transpose(1, 2))
        return torch.cat(logits, 1), torch.cat(boxes, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, boxes = self.windows(x)
        margin = logits[..., 1:].logsumexp(-1) - logits[..., 0]
        best = margin.argmax(1)
        box = boxes[best].clamp(EPS, 1 - EPS)
        return torch.cat([torch.logit(box), logits[torch.arange(len(x)), best]], 1)

    def training_loss(self, images: torch.Tensor, target: dict[str, torch.Tensor]
                      ) -> torch.Tensor:
        """Balanced patch cross-entropy: windows labelled by their IoU with the true box."""
        logits, boxes = self.windows(images)
        label = target["label"].long()
        iou = box_iou(box_convert(target["box"].float(), "cxcywh", "xyxy"),
                      box_convert(boxes, "cxcywh", "xyxy"))  # (B, N)
        iou = torch.where((label > 0)[:, None], iou, torch.zeros_like(iou))
        window_label = torch.full_like(iou, -1, dtype=torch.long)
        window_label[iou < self.negative_iou] = 0
        positive = iou >= self.positive_iou
        window_label[positive] = label[:, None].expand_as(iou)[positive]
        flat, labels = logits.reshape(-1, logits.shape[-1]), window_label.reshape(-1)
        loss = F.cross_entropy(flat[labels == 0], labels[labels == 0])
        if (labels > 0).any():
            loss = loss + F.cross_entropy(flat[labels > 0], labels[labels > 0])
        return loss


@register_model(architecture="pyramid_patch_cnn", source="paper", family="localization",
                min_input_size=PATCH)
def pyramid_patch_localizer(in_chans: int = 3, num_classes: int = 6,
                            scales: Sequence[float] = (0.29, 0.35, 0.42, 0.5, 0.62),
                            width: int = 32, positive_iou: float = 0.5,
                            negative_iou: float = 0.3) -> nn.Module:
    """``num_classes``: 4 + the classes (the localization family's output size)."""
    if num_classes < 5:
        raise ConfigError(f"pyramid_patch_localizer: {num_classes} outputs, expected 4 box "
                          "values and at least one class")
    if not scales or min(scales) <= 0:
        raise ConfigError(f"model.kwargs.scales: expected positive scales, got {list(scales)}")
    if not 0 <= negative_iou <= positive_iou <= 1:
        raise ConfigError("model.kwargs: expected 0 <= negative_iou <= positive_iou <= 1, got "
                          f"{negative_iou} and {positive_iou}")
    return PyramidPatchLocalizer(in_chans, num_classes - 4, scales, width, positive_iou,
                                 negative_iou)
