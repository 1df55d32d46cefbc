"""R-CNN's regions: cached selective search proposals, warped region crops, the box
regression's parametrisation (Girshick et al. 2014).

- Proposals: :func:`medbench.tasks.detection.selective_search.selective_search` on the image
  min-max scaled to [0, 1], cached under the project cache (``rcnn_proposals/``) in a file
  keyed by the SHA-1 of the image tensor's bytes and of the proposal options, so a changed
  image or option computes anew. The file keeps the seconds the search took, so a run that
  reads the cache still reports the search's time per image.
- Warping (the paper's "warp" with context): each box is enlarged around its centre so that,
  once warped to ``size`` x ``size``, ``context`` x ``size`` pixels of image surround it on
  every side (the paper: 16 of 227 px), then resampled anisotropically; pixels outside the
  image are 0 (after the data's normalisation: its mean, as the paper's mean padding).
  Chosen here: torchvision's ``roi_align`` (bilinear, 2x2 samples per output pixel) does the
  resampling, for all of an image's boxes at once.
- Box regression targets (the paper's appendix C): ``t_x = (G_x - P_x) / P_w``,
  ``t_y = (G_y - P_y) / P_h``, ``t_w = log(G_w / P_w)``, ``t_h = log(G_h / P_h)`` over box
  centres and sizes.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou, roi_align

from medbench.data.cache import cache_dir
from medbench.tasks.detection.selective_search import selective_search

CACHE_FOLDER = "rcnn_proposals"
PROPOSAL_OPTIONS = ("scales", "colour_spaces", "sigma", "min_size", "max_side", "min_box",
                    "max_proposals")


def search_image(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) normalised tensor -> (H, W, C) float64 in [0, 1] (per-image min-max)."""
    array = image.detach().cpu().double().permute(1, 2, 0).numpy()
    low, high = float(array.min()), float(array.max())
    return (array - low) / max(high - low, 1e-12)


def proposal_key(image: torch.Tensor, options: Mapping[str, Any]) -> str:
    digest = hashlib.sha1(image.detach().cpu().float().contiguous().numpy().tobytes())
    digest.update(json.dumps(options, sort_keys=True).encode())
    return digest.hexdigest()


def proposals(image: torch.Tensor, options: Mapping[str, Any],
              seed: int = 0) -> tuple[torch.Tensor, float, bool]:
    """An image's proposals (N, 4) xyxy px, the seconds the search took, and whether they
    came from the cache."""
    chosen = {k: options[k] for k in PROPOSAL_OPTIONS if k in options}
    chosen = {k: list(v) if isinstance(v, list | tuple) else v for k, v in chosen.items()}
    chosen["seed"] = seed
    path = cache_dir(CACHE_FOLDER) / f"{proposal_key(image, chosen)}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return torch.as_tensor(stored["boxes"]), float(stored["seconds"]), True
    start = time.perf_counter()
    boxes = selective_search(search_image(image), **chosen)
    seconds = time.perf_counter() - start
    partial = path.with_suffix(".tmp.npz")
    np.savez(partial, boxes=boxes, seconds=seconds)
    partial.replace(path)  # another process reading the cache never sees half a file
    return torch.as_tensor(boxes), seconds, False


def context_boxes(boxes: torch.Tensor, size: int, context: float) -> torch.Tensor:
    """Boxes enlarged so that ``context * size`` px of the warped crop surround the box."""
    scale = 1.0 / max(1.0 - 2.0 * context, 1e-3)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * scale
    return torch.cat([centre - half, centre + half], dim=1)


def warp(image: torch.Tensor, boxes: torch.Tensor, size: int, context: float) -> torch.Tensor:
    """(N, C, size, size) warped crops of (C, H, W) ``image`` at ``boxes`` (N, 4) xyxy px."""
    if not len(boxes):
        return image.new_zeros((0, image.shape[0], size, size))
    rois = torch.cat([boxes.new_zeros(len(boxes), 1),
                      context_boxes(boxes.float(), size, context)], dim=1)
    return roi_align(image[None].float(), rois, (size, size), spatial_scale=1.0,
                     sampling_ratio=2, aligned=True)


def _centres(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-3)
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-3)
    return boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w, h


def encode(proposals_: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(N, 4) regression targets from proposals P to their true boxes G."""
    px, py, pw, ph = _centres(proposals_)
    gx, gy, gw, gh = _centres(truth)
    return torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw),
                        torch.log(gh / ph)], dim=1)


def decode(proposals_: torch.Tensor, deltas: torch.Tensor, max_log: float = 4.0) -> torch.Tensor:
    """Boxes from proposals moved by (N, 4) deltas (the inverse of :func:`encode`)."""
    px, py, pw, ph = _centres(proposals_)
    x, y = px + deltas[:, 0] * pw, py + deltas[:, 1] * ph
    w = pw * torch.exp(deltas[:, 2].clamp(max=max_log))
    h = ph * torch.exp(deltas[:, 3].clamp(max=max_log))
    return torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], dim=1)


def best_truth(boxes: torch.Tensor, truth: torch.Tensor, truth_labels: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per box: the IoU with its best-overlapping true box, that box's index and class
    (IoU 0, index 0 and class -1 when the image has no true box)."""
    if not len(truth):
        n = len(boxes)
        return boxes.new_zeros(n), torch.zeros(n, dtype=torch.long), torch.full((n,), -1)
    overlaps = box_iou(boxes.float(), truth.float())
    best, index = overlaps.max(dim=1)
    return best, index, truth_labels[index]


def class_overlap(boxes: torch.Tensor, truth: torch.Tensor, truth_labels: torch.Tensor,
                  num_classes: int) -> torch.Tensor:
    """(N, classes) the highest IoU of each box with a true box of each class."""
    out = boxes.new_zeros((len(boxes), num_classes))
    if len(truth) and len(boxes):
        overlaps = box_iou(boxes.float(), truth.float())
        for c in range(num_classes):
            mine = truth_labels == c
            if mine.any():
                out[:, c] = overlaps[:, mine].max(dim=1).values
    return out
