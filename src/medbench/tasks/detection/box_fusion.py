"""A detector's stochastic passes fused into one set of boxes (``runner.uncertainty``).

Each pass (a flipped view, its boxes flipped back; or a Monte-Carlo dropout pass where the
detector has dropout) gives boxes, scores and labels. They are fused by weighted boxes fusion
(Solovyev et al. 2021; the ``ensemble-boxes`` package: boxes of one class overlapping at IoU
>= ``FUSION_IOU`` are averaged, weighted by score; a fused score is the mean over the passes,
a pass that missed the box adds 0). Per fused box the passes' own scores are read back
(the best-overlapping box of that class and pass, 0 where none): their disagreement is the
box's mutual information, binary entropy of the mean score minus the passes' mean entropy
(written here: the package returns fused boxes, not which pass gave what).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ensemble_boxes import weighted_boxes_fusion
from torchvision.ops import box_iou

FUSION_IOU = 0.55  # the package's default and its paper's


def unflip_boxes(prediction: dict[str, torch.Tensor], dims: Sequence[int], height: int,
                 width: int) -> dict[str, torch.Tensor]:
    """xyxy boxes of a view flipped along ``dims`` (-1: width, -2: height), in the image's
    frame."""
    boxes = prediction["boxes"].clone()
    if -1 in dims:
        boxes[:, [0, 2]] = width - prediction["boxes"][:, [2, 0]]
    if -2 in dims:
        boxes[:, [1, 3]] = height - prediction["boxes"][:, [3, 1]]
    return {**prediction, "boxes": boxes}


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -p * np.log(p) - (1 - p) * np.log1p(-p)


def fuse_passes(passes: Sequence[dict[str, torch.Tensor]], height: int, width: int
                ) -> tuple[dict[str, torch.Tensor], float]:
    """One image's passes (``boxes`` xyxy px, ``scores``, ``labels``) -> the fused detections
    and the image's mean box mutual information (nats; 0 without a box)."""
    scale = np.array([width, height, width, height], dtype=np.float64)
    boxes = [np.clip(p["boxes"].detach().cpu().double().numpy() / scale, 0, 1) for p in passes]
    scores = [p["scores"].detach().cpu().double().numpy() for p in passes]
    labels = [p["labels"].detach().cpu().numpy() for p in passes]
    if not sum(len(s) for s in scores):
        empty = passes[0]
        return {k: empty[k][:0].cpu() for k in ("boxes", "scores", "labels")}, 0.0
    fused, fused_scores, fused_labels = weighted_boxes_fusion(
        boxes, scores, labels, iou_thr=FUSION_IOU, skip_box_thr=0.0, conf_type="avg")
    fused_t = torch.as_tensor(fused * scale, dtype=torch.float32)
    per_pass = np.zeros((len(passes), len(fused)))
    for i, (b, s, lab) in enumerate(zip(boxes, scores, labels, strict=True)):
        if not len(s):
            continue
        overlap = box_iou(torch.as_tensor(fused), torch.as_tensor(b)).numpy()
        overlap[fused_labels[:, None] != lab[None, :]] = 0
        best = overlap.argmax(1)
        found = overlap[np.arange(len(fused)), best] >= FUSION_IOU
        per_pass[i, found] = s[best[found]]
    information = _binary_entropy(per_pass.mean(0)) - _binary_entropy(per_pass).mean(0)
    return ({"boxes": fused_t, "scores": torch.as_tensor(fused_scores, dtype=torch.float32),
             "labels": torch.as_tensor(fused_labels).long()},
            float(np.clip(information, 0, None).mean()))
