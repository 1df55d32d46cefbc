"""The ``rcnn`` runner of the detection family: the original R-CNN (Girshick et al., CVPR 2014).

Stages, as in the paper: (1) selective search proposes regions per image (cached,
:mod:`.rcnn_regions`); (2) the CNN is fine-tuned as a (classes + background)-way classifier of
warped regions: a region is its best true box's class at IoU >= 0.5, else background, each
mini-batch a quarter foreground; (3) its features (the input of its last Linear layer, the
paper's fc7) feed one linear SVM per class, negatives mined; (4) class-specific ridge box
regression; (5) per-class NMS. The SVM scores are what detections are ranked by, not the
fine-tuned softmax. Validation picks the score threshold of precision / recall / F1 (as the
Lightning runner's validation does); the test split is scored with the family's metrics and
files, so rows compare with Faster R-CNN's on the leaderboard.

Chosen here, not the paper's: the CNN is the config's registry model from random init (the
paper fine-tuned an ImageNet AlexNet at 227 px; nothing is downloaded here), warped regions
are ``runner.warp.size`` px, regions are sampled per image (``regions_per_image``,
``images_per_batch`` images per step) with random flips, and the true boxes join the
proposals as training regions. Seconds per test image are the selective search's (measured
when computed, kept in the cache) plus warping, CNN, SVMs, regression and NMS.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torch.nn import functional as F

from medbench.errors import ConfigError, TrainingError
from medbench.metrics.detection import DetectionScores
from medbench.models.registry import MODELS
from medbench.tasks.detection.module import EXAMPLES, check_scoring_options, scored_split
from medbench.tasks.detection.rcnn_heads import RcnnHeads, RegionSet
from medbench.tasks.detection.rcnn_regions import (
    best_truth,
    class_overlap,
    encode,
    proposals,
    warp,
)
from medbench.tasks.runner import RunContext, RunOutcome, finish


class Images:
    """A split's images, targets and cached proposals, read in order."""

    def __init__(self, ctx: RunContext, split: str, options: dict[str, Any]) -> None:
        self.loader = ctx.datamodule.eval_dataloader(split)
        self.options, self.seed = options, int(ctx.cfg.seed)
        self.search: dict[int, tuple[float, bool]] = {}  # at first read: seconds, cached

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, dict[str, torch.Tensor],
                                         torch.Tensor]]:
        for batch in self.loader:
            for i, image in enumerate(batch["image"]):
                boxes, seconds, cached = proposals(image, self.options, self.seed)
                index = int(batch["index"][i])
                self.search.setdefault(index, (seconds, cached))
                yield index, image, batch["target"][i], boxes

    @property
    def search_seconds(self) -> float:
        return sum(s for s, _ in self.search.values())

    @property
    def cached_seconds(self) -> float:
        """Search seconds of the images whose proposals were read from the cache."""
        return sum(s for s, cached in self.search.values() if cached)

    @property
    def cached(self) -> int:
        return sum(cached for _, cached in self.search.values())


def penultimate(net: nn.Module) -> nn.Linear:
    linear = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ConfigError(f"runner=rcnn needs a CNN with a Linear output layer (its input is "
                          f"the region feature); model '{type(net).__name__}' has none")
    return linear[-1]


@torch.no_grad()
def features(net: nn.Module, crops: torch.Tensor, batch: int) -> torch.Tensor:
    """The input of the net's last Linear layer for each crop (N, D)."""
    store: list[torch.Tensor] = []
    hook = penultimate(net).register_forward_hook(lambda _m, inputs, _o: store.append(inputs[0]))
    try:
        net.eval()
        for start in range(0, len(crops), batch):
            net(crops[start:start + batch])
    finally:
        hook.remove()
    return torch.cat(store) if store else crops.new_zeros((0, penultimate(net).in_features))


def finetune(ctx: RunContext, train: Images, run: dict[str, Any]) -> float:
    """Fine-tune the CNN on warped regions (returns the last epoch's mean loss)."""
    options, net = run["finetune"], ctx.net
    size, context = int(run["warp"]["size"]), float(run["warp"]["context"])
    optimizer = instantiate(OmegaConf.create(options["optimizer"]))(net.parameters())
    per_image, fg_share = int(options["regions_per_image"]), float(options["positive_fraction"])
    rng = np.random.default_rng(int(ctx.cfg.seed))
    loss_value = float("nan")
    for _ in range(int(options["epochs"])):
        net.train()
        losses, crops, labels = [], [], []
        for _, image, target, boxes in train:
            regions = torch.cat([target["boxes"].float(), boxes])
            iou, _, label = best_truth(regions, target["boxes"], target["labels"])
            label = torch.where(iou >= float(options["fg_iou"]), label + 1, 0)
            fg, bg = np.flatnonzero(label.numpy() > 0), np.flatnonzero(label.numpy() == 0)
            n_fg = min(len(fg), round(per_image * fg_share))
            pick = np.r_[rng.choice(fg, n_fg, replace=False),
                         rng.choice(bg, min(len(bg), per_image - n_fg), replace=False)]
            crops.append(warp(image, regions[pick], size, context))
            labels.append(label[pick])
            if len(crops) < int(options["images_per_batch"]):
                continue
            losses.append(_step(net, optimizer, torch.cat(crops), torch.cat(labels),
                                bool(options.get("flip", True))))
            crops, labels = [], []
        if crops:
            losses.append(_step(net, optimizer, torch.cat(crops), torch.cat(labels),
                                bool(options.get("flip", True))))
        loss_value = float(np.mean(losses))
        if not np.isfinite(loss_value):
            raise TrainingError(f"R-CNN fine-tuning loss is {loss_value}: lower "
                                "runner.finetune.optimizer.lr")
    return loss_value


def _step(net: nn.Module, optimizer: torch.optim.Optimizer, crops: torch.Tensor,
          labels: torch.Tensor, flip: bool) -> float:
    if flip:  # random horizontal and vertical flips of the warped regions
        h, v = torch.rand(len(crops)) < 0.5, torch.rand(len(crops)) < 0.5
        crops = torch.where(h[:, None, None, None], crops.flip(-1), crops)
        crops = torch.where(v[:, None, None, None], crops.flip(-2), crops)
    loss = F.cross_entropy(net(crops), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def region_set(ctx: RunContext, train: Images, run: dict[str, Any]) -> RegionSet:
    """Features, boxes and overlaps of every training image's true boxes and proposals."""
    size, context, batch = int(run["warp"]["size"]), float(run["warp"]["context"]), \
        int(run["feature_batch"])
    k = ctx.datamodule.info.num_classes
    parts: dict[str, list] = {n: [] for n in RegionSet.__dataclass_fields__}
    for _, image, target, boxes in train:
        truth, truth_labels = target["boxes"].float(), target["labels"]
        regions = torch.cat([truth, boxes])
        iou, index, label = best_truth(regions, truth, truth_labels)
        parts["features"].append(features(ctx.net, warp(image, regions, size, context), batch))
        parts["boxes"].append(regions)
        parts["overlap"].append(class_overlap(regions, truth, truth_labels, k))
        parts["is_truth"].append(torch.arange(len(regions)) < len(truth))
        parts["truth_label"].append(torch.cat([truth_labels, torch.full((len(boxes),), -1)]))
        deltas = encode(regions, truth[index]) if len(truth) else regions.new_zeros((0, 4))
        parts["target_deltas"].append(deltas.reshape(-1, 4))
        parts["best_label"].append(label)
        parts["best_iou"].append(iou)
    return RegionSet(**{n: torch.cat(v).numpy() for n, v in parts.items()})


def evaluate(ctx: RunContext, heads: RcnnHeads, images: Images, run: dict[str, Any],
             threshold: float | None) -> tuple[dict[str, float], dict[str, Any], float]:
    """Scores of a split (threshold: None chooses it), per-image rows, seconds per image."""
    size, context = int(run["warp"]["size"]), float(run["warp"]["context"])
    scores = DetectionScores(ctx.datamodule.info.label_names, float(run["match_iou"]),
                             str(run["map_backend"]))
    indices, matches, examples, seconds = [], [], [], 0.0
    for index, image, target, boxes in images:
        start = time.perf_counter()
        feats = features(ctx.net, warp(image, boxes, size, context), int(run["feature_batch"]))
        pred = heads.detect(feats, boxes, tuple(image.shape[-2:]), float(run["nms_iou"]),
                            int(run["detections_per_image"]))
        seconds += time.perf_counter() - start
        matches += scores.update([pred], [target])
        indices.append(index)
        if len(examples) < EXAMPLES:
            examples.append({"index": index, "image": image.numpy(), "pred": pred,
                             "true_boxes": target["boxes"].numpy(),
                             "true_labels": target["labels"].numpy()})
    results, rows = scored_split(scores, matches, indices, examples, threshold,
                                 ctx.datamodule.info.label_names)
    per_image_s = (seconds + images.search_seconds) / max(len(indices), 1)
    return results, rows, per_image_s


def check_options(ctx: RunContext, run: dict[str, Any]) -> None:
    """One-line errors for runner options that cannot work."""
    check_scoring_options(run)
    minimum = int(MODELS.get(ctx.cfg.model.name).meta.get("min_input_size", 1))
    if int(run["warp"]["size"]) < minimum:
        raise ConfigError(f"runner.warp.size={run['warp']['size']} is below the {minimum} px "
                          f"model '{ctx.cfg.model.name}' needs: set runner.warp.size={minimum} "
                          "or more")
    if not 0 <= float(run["warp"]["context"]) < 0.5:
        raise ConfigError(f"runner.warp.context: expected a share of the warped size in "
                          f"[0, 0.5), got {run['warp']['context']}")
    if not 0 < float(run["finetune"]["positive_fraction"]) <= 1:
        raise ConfigError("runner.finetune.positive_fraction: expected a value in (0, 1], got "
                          f"{run['finetune']['positive_fraction']}")
    if int(run["proposals"]["max_proposals"]) < 1:
        raise ConfigError("runner.proposals.max_proposals: expected at least 1, got "
                          f"{run['proposals']['max_proposals']}")


def fit_rcnn(ctx: RunContext) -> RunOutcome:
    """Fit R-CNN's stages on the train split, choose the threshold on val, score the test."""
    run = OmegaConf.to_container(ctx.cfg.runner, resolve=True)
    check_options(ctx, run)
    options = run["proposals"]
    train = Images(ctx, "train", options)
    start = time.perf_counter()
    loss = finetune(ctx, train, run)
    info = ctx.datamodule.info
    heads, tags = RcnnHeads.fit(region_set(ctx, train, run), info.num_classes, run["svm"],
                                run["regression"], int(ctx.cfg.seed), list(info.label_names))
    # the training's seconds count the search of proposals read from the cache too
    fit_seconds = time.perf_counter() - start + train.cached_seconds
    metrics = {"train/loss": loss}
    val_results, _, _ = evaluate(ctx, heads, Images(ctx, "val", options), run, None)
    metrics.update({f"val/{k}": float(v) for k, v in val_results.items()})
    test = Images(ctx, "test", options)
    start = time.perf_counter()
    test_results, rows, per_image_s = evaluate(ctx, heads, test, run, val_results["threshold"])
    wall = time.perf_counter() - start
    metrics.update({f"test/{k}": float(v) for k, v in test_results.items()})
    n_test = len(rows["index"])
    search_s = test.search_seconds / n_test
    tags.update({"rcnn.test_search_s_per_image": f"{search_s:.3f}",
                 "rcnn.test_detect_s_per_image": f"{per_image_s - search_s:.3f}",
                 "rcnn.test_proposals_cached": f"{test.cached}/{n_test}",
                 "rcnn.feature_dim": str(heads.weights.shape[1])})
    tags["rcnn.test_wall_s"] = f"{wall:.2f}"  # this pass, cache reads and scoring included
    return finish(ctx, RunOutcome(metrics, rows, tags=tags, fit_seconds=fit_seconds,
                                  test_seconds=per_image_s * n_test))
