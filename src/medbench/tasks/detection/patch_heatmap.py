"""The ``patch_heatmap`` runner of the detection family: the survey's patch-classifier detectors
(Table 13: 6.1.1 Wang et al. 2016, 6.2.1 van Grinsven et al. 2016, 6.3.1 Shkolyar et al. 2015).

Stages: (1) every image is downscaled by ``runner.scale``; training patches of
``runner.patch`` px are centred on true box centres (positives, the box's class, jittered by
up to ``jitter`` of the box's side) and on background (negatives: centres outside the central
half of every true box); (2) the config's registry CNN (random init) is trained as a
(classes + background) classifier of patches; with ``selective_sampling`` (6.2.1) each image
keeps a pool of negatives whose sampling weights, after every epoch, become their current loss,
so later epochs see misclassified (hard) negatives more often; (3) at test time windows every
``stride`` px give a dense class-probability heatmap; with ``otsu`` (6.1.1) windows centred on
background (brighter than Otsu's threshold of the grey image, holes filled) are zeroed;
(4) each class's local maxima (``skimage.feature.peak_local_max``) above ``min_score`` are
detections, each a box of that class's median training box size centred on the peak, scored by
the peak's probability. Validation picks the score threshold of precision / recall / F1; the
test split is scored with the family's metrics and files, as the other detection runners.

Chosen here, not the papers': one runner for the three designs (switches ``otsu`` and
``selective_sampling``), images downscaled, random init (nothing is downloaded), candidates are
the heatmap's own peaks (6.3.1 took them from a separate detector), and a box is the class's
median training size (no box regression), which caps mAP at stricter IoUs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from scipy.ndimage import binary_fill_holes
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from torch.nn import functional as F

from medbench.errors import ConfigError, TrainingError
from medbench.metrics.detection import DetectionScores
from medbench.models.registry import MODELS
from medbench.tasks.detection.module import EXAMPLES, check_scoring_options, scored_split
from medbench.tasks.runner import RunContext, RunOutcome, finish


def read_split(ctx: RunContext, split: str, scale: float) -> list[dict[str, Any]]:
    """A split's images downscaled by ``scale`` (targets at full size; the full image is kept
    for the first ``EXAMPLES`` only, the ones drawn)."""
    items = []
    for batch in ctx.datamodule.eval_dataloader(split):
        for i, image in enumerate(batch["image"]):
            small = F.interpolate(image[None].float(), scale_factor=scale, mode="bilinear",
                                  antialias=True, align_corners=False)[0]
            items.append({"index": int(batch["index"][i]), "small": small,
                          "image": image if len(items) < EXAMPLES else None,
                          "shape": tuple(image.shape[-2:]), "target": batch["target"][i]})
    return items


def crops(small: torch.Tensor, centres: np.ndarray, patch: int) -> torch.Tensor:
    """(N, C, patch, patch) windows of an image centred on (x, y) pixels (reflect-padded)."""
    padded = _pad(small, patch)
    if not len(centres):
        return small.new_zeros((0, small.shape[0], patch, patch))
    xy = np.clip(np.round(centres).astype(int), 0, [small.shape[2] - 1, small.shape[1] - 1])
    return torch.stack([padded[:, y:y + patch, x:x + patch] for x, y in xy])


def _pad(small: torch.Tensor, patch: int) -> torch.Tensor:
    """Reflect-padded so the window starting at pixel p of the result is centred on p."""
    half = patch // 2
    return F.pad(small[None], (half, patch - half - 1, half, patch - half - 1),
                 mode="reflect")[0]


def heatmap(net: torch.nn.Module, small: torch.Tensor, patch: int, stride: int,
            batch: int = 1024) -> torch.Tensor:
    """(classes + 1, gh, gw) softmax of windows centred every ``stride`` px from (0, 0)."""
    padded = _pad(small, patch)
    windows = padded.unfold(1, patch, stride).unfold(2, patch, stride)  # C, gh, gw, P, P
    grid = windows.shape[1:3]
    windows = windows.permute(1, 2, 0, 3, 4).reshape(-1, small.shape[0], patch, patch)
    net.eval()
    with torch.no_grad():
        probs = torch.cat([F.softmax(net(windows[s:s + batch]), 1)
                           for s in range(0, len(windows), batch)])
    return probs.T.reshape(-1, *grid)


def otsu_foreground(small: torch.Tensor, grid: tuple[int, int], stride: int) -> np.ndarray:
    """Window centres on foreground: darker than Otsu's threshold of the grey image, holes
    filled (a cell's pale centre inside its darker rim is foreground)."""
    grey = small.mean(0).numpy()
    mask = binary_fill_holes(grey < threshold_otsu(grey))
    return mask[::stride, ::stride][:grid[0], :grid[1]]  # the windows' grid (ceil(side/stride))


def detect(heat: torch.Tensor, sizes: np.ndarray, run: dict[str, Any],
           foreground: np.ndarray | None, image_shape: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Peaks of each class's map as boxes of the class's median size (full-image pixels)."""
    stride, scale = int(run["stride"]), float(run["scale"])
    boxes, scores, labels = [], [], []
    for c, size in enumerate(sizes):
        grid = heat[c + 1].numpy()
        if foreground is not None:
            grid = np.where(foreground, grid, 0.0)
        distance = max(1, int(round(float(run["peak_distance"]) * size.min() * scale / stride)))
        peaks = peak_local_max(grid, min_distance=distance, threshold_abs=float(run["min_score"]),
                               exclude_border=False)
        centres = (peaks[:, ::-1] * stride + 0.5) / scale  # (x, y) in full-image pixels
        boxes.append(np.c_[centres - size / 2, centres + size / 2])
        scores.append(grid[peaks[:, 0], peaks[:, 1]])
        labels.append(np.full(len(peaks), c))
    h, w = image_shape
    out = np.concatenate(boxes).reshape(-1, 4).clip(0, [w, h, w, h])
    score, label = np.concatenate(scores), np.concatenate(labels)
    keep = np.argsort(-score, kind="stable")[:int(run["detections_per_image"])]
    return {"boxes": torch.as_tensor(out[keep], dtype=torch.float32),
            "scores": torch.as_tensor(score[keep], dtype=torch.float32),
            "labels": torch.as_tensor(label[keep], dtype=torch.int64)}


def sample_patches(item: dict[str, Any], run: dict[str, Any], count: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positive centres and labels (jittered box centres) and ``count`` negative centres."""
    scale, jitter = float(run["scale"]), float(run["jitter"])
    boxes = item["target"]["boxes"].numpy() * scale
    centre, size = (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]
    positives = centre + rng.uniform(-jitter, jitter, centre.shape) * size
    h, w = item["small"].shape[1:]
    candidates = rng.uniform([0, 0], [w, h], (count * 4, 2))
    inside = (np.abs(candidates[:, None] - centre[None]) < size[None] / 4).all(2).any(1)
    return positives, item["target"]["labels"].numpy() + 1, candidates[~inside][:count]


def train(ctx: RunContext, items: list[dict[str, Any]], run: dict[str, Any]) -> float:
    """Train the CNN on positive and negative patches (returns the last epoch's mean loss)."""
    net, patch, options = ctx.net, int(run["patch"]), run["train"]
    optimizer = instantiate(OmegaConf.create(options["optimizer"]))(net.parameters())
    rng = np.random.default_rng(int(ctx.cfg.seed))
    per_image, pool = int(options["negatives_per_image"]), int(options["negative_pool"])
    selective = bool(run["selective_sampling"])
    negatives = [sample_patches(item, run, pool if selective else 0, rng)[2] for item in items]
    weights = [np.ones(len(n)) for n in negatives]
    loss_value, batch = float("nan"), int(options["batch_size"])
    for _ in range(int(options["epochs"])):
        windows, labels = [], []
        for i, item in enumerate(items):
            pos, pos_labels, fresh = sample_patches(item, run, per_image, rng)
            if selective and len(negatives[i]):  # 6.2.1: hard negatives drawn more often
                p = weights[i] / weights[i].sum()
                fresh = negatives[i][rng.choice(len(p), min(per_image, len(p)), replace=False,
                                                p=p)]
            windows.append(crops(item["small"], np.r_[pos, fresh], patch))
            labels.append(torch.as_tensor(np.r_[pos_labels, np.zeros(len(fresh), int)]))
        x, y = torch.cat(windows), torch.cat(labels)
        order, losses = torch.randperm(len(y)), []
        net.train()
        for s in range(0, len(y), batch):
            pick = order[s:s + batch]
            loss = F.cross_entropy(net(_flip(x[pick])), y[pick])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        loss_value = float(np.mean(losses))
        if not np.isfinite(loss_value):
            raise TrainingError(f"patch_heatmap training loss is {loss_value}: lower "
                                "runner.train.optimizer.lr")
        if selective:  # every pool negative's weight becomes its loss now (floored)
            net.eval()
            with torch.no_grad():
                for i, item in enumerate(items):
                    logits = net(crops(item["small"], negatives[i], patch))
                    loss = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long),
                                           reduction="none")
                    weights[i] = loss.numpy().astype(float) + float(options["weight_floor"])
    return loss_value


def _flip(x: torch.Tensor) -> torch.Tensor:
    h, v = torch.rand(len(x)) < 0.5, torch.rand(len(x)) < 0.5
    x = torch.where(h[:, None, None, None], x.flip(-1), x)
    return torch.where(v[:, None, None, None], x.flip(-2), x)


def evaluate(ctx: RunContext, items: list[dict[str, Any]], sizes: np.ndarray,
             run: dict[str, Any], threshold: float | None
             ) -> tuple[dict[str, float], dict[str, Any], float]:
    """Scores of a split (threshold: None chooses it), per-image rows, seconds per image."""
    scores = DetectionScores(ctx.datamodule.info.label_names, float(run["match_iou"]),
                             str(run["map_backend"]))
    indices, matches, examples, seconds = [], [], [], 0.0
    patch, stride = int(run["patch"]), int(run["stride"])
    for item in items:
        start = time.perf_counter()
        heat = heatmap(ctx.net, item["small"], patch, stride)
        foreground = (otsu_foreground(item["small"], tuple(heat.shape[1:]), stride)
                      if run["otsu"] else None)
        pred = detect(heat, sizes, run, foreground, item["shape"])
        seconds += time.perf_counter() - start
        matches += scores.update([pred], [item["target"]])
        indices.append(item["index"])
        if item["image"] is not None:
            examples.append({"index": item["index"], "image": item["image"].numpy(),
                             "pred": pred, "true_boxes": item["target"]["boxes"].numpy(),
                             "true_labels": item["target"]["labels"].numpy()})
    results, rows = scored_split(scores, matches, indices, examples, threshold,
                                 ctx.datamodule.info.label_names)
    return results, rows, seconds / max(len(indices), 1)


def median_sizes(items: list[dict[str, Any]], classes: int) -> np.ndarray:
    """(classes, 2) median training box width and height per class (full-image px)."""
    boxes = np.concatenate([i["target"]["boxes"].numpy() for i in items]).reshape(-1, 4)
    labels = np.concatenate([i["target"]["labels"].numpy() for i in items])
    sizes = boxes[:, 2:] - boxes[:, :2]
    fallback = np.median(sizes, 0) if len(sizes) else np.array([1.0, 1.0])
    return np.array([np.median(sizes[labels == c], 0) if (labels == c).any() else fallback
                     for c in range(classes)])


def check_options(ctx: RunContext, run: dict[str, Any]) -> None:
    """One-line errors for runner options that cannot work."""
    check_scoring_options(run)
    if not 0 < float(run["scale"]) <= 1:
        raise ConfigError(f"runner.scale: expected a factor in (0, 1], got {run['scale']}")
    minimum = int(MODELS.get(ctx.cfg.model.name).meta.get("min_input_size", 1))
    if int(run["patch"]) < minimum:
        raise ConfigError(f"runner.patch={run['patch']} is below the {minimum} px model "
                          f"'{ctx.cfg.model.name}' needs: set runner.patch={minimum} or more")
    if int(run["stride"]) < 1:
        raise ConfigError(f"runner.stride: expected at least 1 px, got {run['stride']}")


def fit_patch_heatmap(ctx: RunContext) -> RunOutcome:
    """Train the patch classifier on train, choose the threshold on val, score the test."""
    run = OmegaConf.to_container(ctx.cfg.runner, resolve=True)
    check_options(ctx, run)
    scale, info = float(run["scale"]), ctx.datamodule.info
    items = read_split(ctx, "train", scale)
    start = time.perf_counter()
    loss = train(ctx, items, run)
    sizes = median_sizes(items, info.num_classes)
    fit_seconds = time.perf_counter() - start
    metrics = {"train/loss": loss}
    val, _, _ = evaluate(ctx, read_split(ctx, "val", scale), sizes, run, None)
    metrics.update({f"val/{k}": float(v) for k, v in val.items()})
    test, rows, per_image_s = evaluate(ctx, read_split(ctx, "test", scale), sizes, run,
                                       val["threshold"])
    metrics.update({f"test/{k}": float(v) for k, v in test.items()})
    tags = {f"patch_heatmap.box_{name}": f"{w:.0f}x{h:.0f}"
            for name, (w, h) in zip(info.label_names, sizes, strict=True)}
    return finish(ctx, RunOutcome(metrics, rows, tags=tags, fit_seconds=fit_seconds,
                                  test_seconds=per_image_s * len(rows["index"])))
