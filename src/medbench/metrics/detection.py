"""Detection metrics: COCO mAP (torchmetrics), and what it does not give: detections matched at
IoU 0.5, precision / recall / F1 at a score threshold chosen on validation, FROC, per image.

- mAP@[.5:.95], mAP@0.5, mAP@0.75, AR@100 and per-class AP@0.5: torchmetrics'
  ``MeanAveragePrecision`` (COCO's evaluation; backend ``faster_coco_eval``, which agrees with
  ``pycocotools``: tested).
- Matches: per image and class, detections in descending score each take the unmatched true
  box of their class with the highest IoU >= 0.5 (Pascal VOC's greedy rule). Written here
  because torchmetrics and the COCO evaluators keep their per-detection matches internal, and
  the counts per image are what the leaderboard's paired test over images needs.
- Precision, recall, F1: pooled over images and classes at a score threshold: on validation
  the one of the highest F1 (chosen, never on test), on test the validation's.
- FROC: sensitivity (share of true boxes found) against false positives per image, over all
  detections by descending score; its sensitivity at 1, 2, 4 and 8 FP per image (the best
  reached at or below that rate: a curve that stops earlier keeps its last value) and their
  mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_iou

FPPI = (1, 2, 4, 8)


@dataclass
class ImageMatches:
    """One image's detections (score, class, matched at IoU 0.5) and its true boxes' classes."""

    scores: np.ndarray
    labels: np.ndarray
    matched: np.ndarray
    true_labels: np.ndarray


def match_image(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                true_boxes: torch.Tensor, true_labels: torch.Tensor,
                iou: float = 0.5) -> ImageMatches:
    """Greedy matching of one image's detections to its true boxes (same class, IoU >= iou)."""
    scores_np, labels_np = scores.detach().cpu().double().numpy(), labels.cpu().numpy()
    true_np = true_labels.cpu().numpy()
    matched = np.zeros(len(scores_np), bool)
    if len(scores_np) and len(true_np):
        overlaps = box_iou(boxes.detach().cpu().float(), true_boxes.cpu().float()).numpy()
        taken = np.zeros(len(true_np), bool)
        for d in np.argsort(-scores_np, kind="stable"):
            allowed = (true_np == labels_np[d]) & ~taken & (overlaps[d] >= iou)
            if allowed.any():
                g = int(np.argmax(np.where(allowed, overlaps[d], -1.0)))
                taken[g], matched[d] = True, True
    return ImageMatches(scores_np, labels_np, matched, true_np)


def counts_at(images: Sequence[ImageMatches], threshold: float) -> np.ndarray:
    """(images, 3) true positives, false positives, false negatives at a score threshold."""
    rows = []
    for m in images:
        kept = m.scores >= threshold
        tp = int((m.matched & kept).sum())
        rows.append((tp, int((~m.matched & kept).sum()), len(m.true_labels) - tp))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """Precision, recall and F1 of pooled counts (NaN where undefined)."""
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return precision, recall, f1


def best_threshold(images: Sequence[ImageMatches]) -> float:
    """The score threshold of the highest pooled F1 (the highest such threshold on ties)."""
    scores = np.concatenate([m.scores for m in images]) if images else np.zeros(0)
    if not len(scores):
        return 0.5
    matched = np.concatenate([m.matched for m in images])
    n_true = sum(len(m.true_labels) for m in images)
    order = np.argsort(-scores, kind="stable")
    tp, fp = np.cumsum(matched[order]), np.cumsum(~matched[order])
    last = np.r_[scores[order][1:] != scores[order][:-1], True]  # ties: all or none kept
    f1 = np.where(last, 2 * tp / (tp + fp + n_true), -1.0)
    return float(scores[order][int(np.argmax(f1))])


def froc(images: Sequence[ImageMatches], rates: Sequence[float] = FPPI) -> dict[str, float]:
    """Sensitivity at each false-positive rate per image, and their mean (``froc``)."""
    n_true = sum(len(m.true_labels) for m in images)
    scores = np.concatenate([m.scores for m in images]) if images else np.zeros(0)
    matched = np.concatenate([m.matched for m in images]) if images else np.zeros(0, bool)
    order = np.argsort(-scores, kind="stable")
    sensitivity = np.r_[0.0, np.cumsum(matched[order]) / max(n_true, 1)]
    fppi = np.r_[0.0, np.cumsum(~matched[order]) / max(len(images), 1)]
    out = {f"froc_{rate:g}": float(sensitivity[fppi <= rate].max()) for rate in rates}
    out["froc"] = float(np.mean(list(out.values())))
    return out


def image_ap50(m: ImageMatches) -> float:
    """One image's AP@0.5: Pascal VOC's all-point AP of each class it holds, their mean (NaN
    for an image without true boxes)."""
    aps = []
    for c in np.unique(m.true_labels):
        mine = m.labels == c
        order = np.argsort(-m.scores[mine], kind="stable")
        hits = m.matched[mine][order]
        tp = np.cumsum(hits)
        recall = np.r_[0.0, tp / np.sum(m.true_labels == c), 1.0]
        precision = np.r_[0.0, tp / np.arange(1, len(hits) + 1), 0.0]
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        aps.append(float(np.sum(np.diff(recall) * precision[1:])))
    return float(np.mean(aps)) if aps else float("nan")


class DetectionScores:
    """Accumulates predictions and targets (lists of torchvision-style dicts, class indices
    from 0) and scores them; ``results(threshold)`` chooses the threshold when not given."""

    def __init__(self, label_names: Sequence[str], iou: float = 0.5,
                 backend: str = "faster_coco_eval") -> None:
        self.label_names, self.iou, self.backend = list(label_names), iou, backend
        self.reset()

    def reset(self) -> None:
        self.images: list[ImageMatches] = []
        self.preds: list[dict[str, torch.Tensor]] = []
        self.targets: list[dict[str, torch.Tensor]] = []

    def update(self, preds: Sequence[dict[str, torch.Tensor]],
               targets: Sequence[dict[str, torch.Tensor]]) -> list[ImageMatches]:
        new = []
        for p, t in zip(preds, targets, strict=True):
            p = {k: p[k].detach().cpu() for k in ("boxes", "scores", "labels")}
            t = {k: t[k].detach().cpu() for k in ("boxes", "labels")}
            new.append(match_image(p["boxes"], p["scores"], p["labels"], t["boxes"],
                                   t["labels"], self.iou))
            self.preds.append(p)
            self.targets.append(t)
        self.images += new
        return new

    def coco(self) -> dict[str, float]:
        """COCO mAP (torchmetrics) and the per-class AP@0.5 (``ap50_<class>``)."""
        out: dict[str, float] = {}
        overall = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend=self.backend)
        per_class = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=[0.5],
                                         class_metrics=True, backend=self.backend)
        for metric in (overall, per_class):
            metric.update(self.preds, self.targets)
        scores = overall.compute()
        for ours, theirs in (("map", "map"), ("map50", "map_50"), ("map75", "map_75"),
                             ("mar100", "mar_100")):
            out[ours] = _defined(float(scores[theirs]))
        by_class = per_class.compute()
        present = dict(zip(torch.atleast_1d(by_class["classes"]).tolist(),
                           torch.atleast_1d(by_class["map_per_class"]).tolist(), strict=True))
        for i, name in enumerate(self.label_names):
            out[f"ap50_{name}"] = _defined(present.get(i, -1.0))
        return out

    def results(self, threshold: float | None = None) -> dict[str, float]:
        """Every scalar: COCO mAPs, per-class AP@0.5, P/R/F1 at the threshold, FROC."""
        if threshold is None:
            threshold = best_threshold(self.images)
        tp, fp, fn = counts_at(self.images, threshold).sum(0)
        precision, recall, f1 = prf(tp, fp, fn)
        out = {**self.coco(), "precision": precision, "recall": recall, "f1": f1,
               "threshold": float(threshold), **froc(self.images)}
        return out


def score_entropy(scores: np.ndarray) -> float:
    """The mean binary entropy (nats) of an image's detection scores, every detection the
    detector returned (0 without any): boxes scored near 0.5 are the undecided ones."""
    p = np.clip(np.asarray(scores, dtype=np.float64), 1e-12, 1 - 1e-12)
    return float(np.mean(-p * np.log(p) - (1 - p) * np.log1p(-p))) if len(p) else 0.0


def per_image(images: Sequence[ImageMatches], threshold: float) -> dict[str, np.ndarray]:
    """Per image: true boxes, detections kept, TP / FP / FN at IoU 0.5, F1, AP@0.5, and the
    scores' mean binary entropy (``entropy``, the image's referral confidence, negated)."""
    counts = counts_at(images, threshold)
    tp, fp, fn = counts.T
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return {"n_true": tp + fn, "n_pred": tp + fp, "tp": tp, "fp": fp, "fn": fn, "f1": f1,
            "ap50": np.array([image_ap50(m) for m in images], dtype=np.float64),
            "entropy": np.array([score_entropy(m.scores) for m in images], dtype=np.float64)}


def _defined(value: float) -> float:
    """torchmetrics' -1 (no true box of the kind) as NaN."""
    return float("nan") if value == -1 else value
