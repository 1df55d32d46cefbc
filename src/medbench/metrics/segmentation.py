"""Pixel metrics of segmentations inside a field of view, per image and pooled.

Every foreground class c is scored one-vs-rest: its probability map is binarised at a
threshold chosen on validation data (the pooled-Dice optimum; never on test). To choose it
without keeping every pixel, each image's in-FOV pixels are kept as two histograms of p_c (a
``bins``-bin grid on [0, 1]): reference-positive and reference-negative pixels. Any threshold on
the grid then gives exact confusion counts, and the pooled ROC AUC is integrated over the grid
(trapezoids, so pixels sharing a bin count as ties: at 1000 bins within 1e-3 of the exact AUC,
tested against scikit-learn). torchmetrics' binned AUROC needs the threshold fixed up front and
has no per-image counts, MONAI's metrics no field of view: hence this metric.

Empty references follow MONAI's ``ignore_empty=True``: an image whose reference has no
foreground pixel of a class has no Dice / IoU / sensitivity for it (NaN, left out of the
per-image mean and counted in ``<metric>_excluded``); pooled metrics use every pixel.

Under DDP the histograms of every rank are gathered (torchmetrics' ``sync_context``) before
scoring; given the items' dataset indices, the repeats a distributed sampler pads a split with
are dropped (each index counted once), so every rank scores exactly the whole split.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

# per-image metrics from confusion counts; the pooled ones add the suffix "_pooled"
PER_IMAGE = ("dice", "iou", "sensitivity", "specificity", "acc", "precision")


class FovPixelMetrics(Metric):
    """``update(probs (B, C, *S), mask (B, *S), fov (B, *S) bool)``; :meth:`results` scores at
    given thresholds (one per foreground class) or chooses them."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, num_classes: int, bins: int = 1000) -> None:
        super().__init__()
        self.num_classes, self.bins = num_classes, bins
        # one (classes - 1, 2, bins) histogram per image: [reference negative, positive]
        self.add_state("histograms", default=[], dist_reduce_fx="cat")
        self.add_state("indices", default=[], dist_reduce_fx="cat")  # dataset index per image

    def update(self, probs: torch.Tensor, mask: torch.Tensor, fov: torch.Tensor,
               index: torch.Tensor | None = None) -> None:
        """Add a batch; ``index`` (B,): the items' dataset indices, so that repeats (DDP
        padding) count once."""
        if index is not None:
            self.indices.append(torch.as_tensor(index, device=probs.device).long().view(-1))
        for p, m, f in zip(probs, mask, fov, strict=True):
            f = f.bool()
            rows = []
            for c in range(1, self.num_classes):
                scores, positive = p[c][f].float(), (m[f] == c)
                index = (scores * self.bins).long().clamp_(0, self.bins - 1)
                counts = torch.bincount(index + self.bins * positive.long(),
                                        minlength=2 * self.bins)
                rows.append(counts.view(2, self.bins))
            self.histograms.append(torch.stack(rows)[None].double())

    def compute(self) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v) for k, v in self.results().items()
                if np.ndim(v) == 0}

    def per_image(self, thresholds: torch.Tensor) -> dict[str, np.ndarray]:
        """(images,) arrays of each per-image metric at ``thresholds``, the mean over classes."""
        counts = _confusion(self._stacked(), thresholds, self.bins)  # (images, classes, 4)
        values = _metrics(counts)
        return {k: _nanmean_over_classes(v) for k, v in values.items()}

    def results(self, thresholds: torch.Tensor | None = None) -> dict[str, float | np.ndarray]:
        """Per-image means (NaN-free, with ``<m>_excluded`` counts), pooled metrics, pooled AUC
        and the thresholds (chosen here when not given), over every rank's images."""
        with self.sync_context(should_sync=not self._is_synced):
            return self._results(thresholds)

    def _results(self, thresholds: torch.Tensor | None) -> dict[str, float | np.ndarray]:
        hist = self._stacked()
        if thresholds is None:
            thresholds = self.best_thresholds()
        images = self.per_image(thresholds)
        out: dict[str, float | np.ndarray] = {"thresholds": thresholds.numpy()}
        for name, values in images.items():
            finite = np.isfinite(values)
            out[name] = float(values[finite].mean()) if finite.any() else float("nan")
            out[f"{name}_excluded"] = float((~finite).sum())
        pooled = _metrics(_confusion(hist.sum(0, keepdim=True), thresholds, self.bins))
        for name, values in pooled.items():
            out[f"{name}_pooled"] = float(np.nanmean(values))
        out["auc"] = float(np.nanmean([_binned_auc(hist[:, c].sum(0))
                                       for c in range(hist.shape[1])]))
        return out

    def best_thresholds(self) -> torch.Tensor:
        """Per foreground class, the grid threshold of the highest pooled Dice."""
        hist = self._stacked().sum(0)  # (classes, 2, bins)
        negative = hist[:, 0].flip(-1).cumsum(-1).flip(-1)  # predicted positive at each edge
        positive = hist[:, 1].flip(-1).cumsum(-1).flip(-1)
        dice = 2 * positive / (positive + negative + hist[:, 1].sum(-1, keepdim=True))
        best = torch.nan_to_num(dice, nan=-1.0).argmax(-1)
        return best.double() / self.bins

    def _stacked(self) -> torch.Tensor:
        """(images, classes - 1, 2, bins), one per dataset index (in index order) when the
        indices were given."""
        hist, index = _cat(self.histograms), _cat(self.indices)
        if hist is None:
            return torch.zeros(0, self.num_classes - 1, 2, self.bins, dtype=torch.float64)
        hist = hist.cpu()
        if index is None or len(index) != len(hist):
            return hist
        unique, inverse = torch.unique(index.cpu(), return_inverse=True)
        first = torch.full((len(unique),), len(index), dtype=torch.long)
        first.scatter_reduce_(0, inverse, torch.arange(len(index)), reduce="amin")
        return hist[first]


def _cat(state: list[torch.Tensor] | torch.Tensor) -> torch.Tensor | None:
    """A list state (before a sync) or a tensor (after one) as one tensor; None when empty."""
    if isinstance(state, list):
        return torch.cat(state) if state else None
    return state


def _confusion(hist: torch.Tensor, thresholds: torch.Tensor, bins: int) -> np.ndarray:
    """(images, classes, 4) counts tp, fp, fn, tn: a pixel is positive from its threshold up."""
    edges = (thresholds.double() * bins).round().long().clamp(0, bins)
    above = torch.arange(bins)[None, :] >= edges[:, None]  # (classes, bins)
    negative, positive = hist[:, :, 0], hist[:, :, 1]
    tp = (positive * above).sum(-1)
    fp = (negative * above).sum(-1)
    fn = positive.sum(-1) - tp
    tn = negative.sum(-1) - fp
    return torch.stack([tp, fp, fn, tn], -1).numpy()


def _metrics(counts: np.ndarray) -> dict[str, np.ndarray]:
    tp, fp, fn, tn = np.moveaxis(counts, -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        empty = (tp + fn) == 0  # no reference foreground: undefined (MONAI ignore_empty)
        return {"dice": np.where(empty, np.nan, 2 * tp / (2 * tp + fp + fn)),
                "iou": np.where(empty, np.nan, tp / (tp + fp + fn)),
                "sensitivity": np.where(empty, np.nan, tp / (tp + fn)),
                "specificity": tn / (tn + fp),
                "acc": (tp + tn) / (tp + fp + fn + tn),
                "precision": tp / (tp + fp)}


def _nanmean_over_classes(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore"):
        return np.where(finite.any(-1), np.nansum(np.where(finite, values, 0), -1)
                        / finite.sum(-1), np.nan)


def _binned_auc(hist: torch.Tensor) -> float:
    """ROC AUC from a (2, bins) histogram pair; NaN without both kinds of pixel."""
    negative, positive = hist[0].double(), hist[1].double()
    if negative.sum() == 0 or positive.sum() == 0:
        return float("nan")
    fpr = torch.cat([torch.zeros(1), negative.flip(0).cumsum(0)]) / negative.sum()
    tpr = torch.cat([torch.zeros(1), positive.flip(0).cumsum(0)]) / positive.sum()
    return float(torch.trapezoid(tpr, fpr))
