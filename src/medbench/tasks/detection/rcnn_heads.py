"""R-CNN's heads on the CNN's region features: one linear SVM per class with hard-negative
mining, one ridge box regressor per class, and detection (scores, regression, NMS).

From the paper (Girshick et al. 2014, section 2.3 and appendices B, C):
- SVM positives are the true boxes of the class alone; negatives are proposals whose IoU with
  every true box of the class is below 0.3 (proposals in between are ignored); the negatives
  are mined: train, add the negatives the SVM gets wrong or inside the margin, retrain.
- Box regression: class-specific ridge regression (lambda 1000) from a proposal's features to
  the offsets of the true box it overlaps most, trained on proposals with IoU >= 0.6; applied
  once to each scored proposal.
- Greedy per-class non-maximum suppression of the scored (and regressed) boxes.
Chosen here: features are scaled to a mean L2 norm of 20 over the training features and the
SVM weighs positives twice (as the authors' released code does); scikit-learn's ``LinearSVC``
(squared hinge); mining starts from a random ``initial_negatives`` negatives and runs
``mining_rounds`` rounds, each adding at most ``max_new_negatives`` of the hardest
negatives scoring above ``hard_margin`` (the cache only grows; the paper also drops easy
ones); regression uses the same (penultimate-layer) features as the SVMs, where the paper
regressed from pool5; detection scores are the SVM's decision values through a logistic, so
they lie in (0, 1) like the other detectors' (the order, all that mAP reads, is the SVM's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import Ridge
from sklearn.svm import LinearSVC
from torchvision.ops import batched_nms, clip_boxes_to_image

from medbench.errors import TrainingError
from medbench.tasks.detection.rcnn_regions import decode


@dataclass
class RegionSet:
    """Training regions of every image, pooled: features (N, D), boxes (N, 4), per-class
    highest IoU with a true box (N, K), and whether a row is a true box itself."""

    features: np.ndarray
    boxes: np.ndarray
    overlap: np.ndarray
    is_truth: np.ndarray
    truth_label: np.ndarray  # class of a true-box row (-1 for proposals)
    target_deltas: np.ndarray  # (N, 4) offsets to the best-overlapping true box
    best_label: np.ndarray  # class of that true box (-1: none)
    best_iou: np.ndarray


def feature_scale(features: np.ndarray, norm: float) -> float:
    """The factor that brings the features' mean L2 norm to ``norm``."""
    mean = float(np.linalg.norm(features, axis=1).mean()) if len(features) else 1.0
    return norm / max(mean, 1e-12)


def train_svm(positives: np.ndarray, negatives: np.ndarray, options: Mapping[str, Any],
              rng: np.random.Generator,
              name: str = "a class") -> tuple[np.ndarray, float, dict[str, int]]:
    """One class's linear SVM (weights, bias) with hard-negative mining, and its counts."""
    if not len(positives) or not len(negatives):
        raise TrainingError(f"the R-CNN SVM of {name} needs positives and negatives: got "
                            f"{len(positives)} and {len(negatives)} (more training images?)")
    initial = min(int(options["initial_negatives"]), len(negatives))
    cache = np.zeros(len(negatives), bool)
    cache[rng.choice(len(negatives), initial, replace=False)] = True
    svm = None
    for _ in range(int(options["mining_rounds"]) + 1):
        x = np.concatenate([positives, negatives[cache]])
        y = np.r_[np.ones(len(positives)), np.zeros(int(cache.sum()))]
        svm = LinearSVC(C=float(options["C"]), class_weight={1: float(options["positive_weight"]),
                                                            0: 1.0},
                        max_iter=int(options.get("max_iter", 2000)), random_state=0)
        svm.fit(x, y)
        scores = svm.decision_function(negatives)
        hard = np.flatnonzero(~cache & (scores > float(options["hard_margin"])))
        if not len(hard):
            break
        hard = hard[np.argsort(-scores[hard])][:int(options["max_new_negatives"])]
        cache[hard] = True
    counts = {"positives": len(positives), "negatives": int(cache.sum()),
              "negative_pool": len(negatives)}
    return svm.coef_[0].astype(np.float32), float(svm.intercept_[0]), counts


@dataclass
class RcnnHeads:
    """Per-class SVMs (K, D) + (K,), ridge regressors (K, 4, D) + (K, 4) (None: no
    regression), and the feature scale both were trained at."""

    weights: np.ndarray
    bias: np.ndarray
    reg_weights: np.ndarray | None
    reg_bias: np.ndarray | None
    scale: float

    @classmethod
    def fit(cls, regions: RegionSet, num_classes: int, svm: Mapping[str, Any],
            regression: Mapping[str, Any], seed: int = 0,
            names: list[str] | None = None) -> tuple[RcnnHeads, dict[str, str]]:
        scale = feature_scale(regions.features, float(svm["feature_norm"]))
        x = regions.features * scale
        rng = np.random.default_rng(seed)
        weights, bias, reg_w, reg_b, tags = [], [], [], [], {}
        for c in range(num_classes):
            positive = regions.is_truth & (regions.truth_label == c)
            negative = ~regions.is_truth & (regions.overlap[:, c] < float(svm["negative_iou"]))
            name = f"class '{names[c]}'" if names else f"class {c}"
            w, b, counts = train_svm(x[positive], x[negative], svm, rng, name)
            weights.append(w)
            bias.append(b)
            tags.update({f"rcnn.svm{c}.{k}": str(v) for k, v in counts.items()})
            if regression.get("enabled", True):
                pairs = ~regions.is_truth & (regions.best_label == c) & (
                    regions.best_iou >= float(regression["min_iou"]))
                tags[f"rcnn.regression{c}.pairs"] = str(int(pairs.sum()))
                ridge = Ridge(alpha=float(regression["alpha"]))
                if pairs.sum() >= 2:
                    ridge.fit(x[pairs], regions.target_deltas[pairs])
                    reg_w.append(ridge.coef_.astype(np.float32))
                    reg_b.append(ridge.intercept_.astype(np.float32))
                else:  # too few pairs: this class's boxes stay as proposed
                    reg_w.append(np.zeros((4, x.shape[1]), np.float32))
                    reg_b.append(np.zeros(4, np.float32))
        regressed = bool(regression.get("enabled", True))
        return cls(np.stack(weights), np.asarray(bias, np.float32),
                   np.stack(reg_w) if regressed else None,
                   np.stack(reg_b) if regressed else None, scale), tags

    def detect(self, features: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int],
               nms_iou: float, limit: int) -> dict[str, torch.Tensor]:
        """One image's detections from its proposals' features (N, D) and boxes (N, 4)."""
        k = len(self.bias)
        x = features.float() * self.scale
        decision = x @ torch.as_tensor(self.weights).T + torch.as_tensor(self.bias)
        if self.reg_weights is not None:
            deltas = torch.einsum("nd,kjd->nkj", x, torch.as_tensor(self.reg_weights))
            deltas = deltas + torch.as_tensor(self.reg_bias)
            moved = torch.stack([decode(boxes, deltas[:, c]) for c in range(k)], dim=1)
        else:
            moved = boxes[:, None, :].expand(-1, k, -1)
        moved = clip_boxes_to_image(moved.reshape(-1, 4), image_size)
        scores = torch.sigmoid(decision).reshape(-1)
        labels = torch.arange(k).repeat(len(boxes))
        valid = (moved[:, 2] > moved[:, 0]) & (moved[:, 3] > moved[:, 1])
        moved, scores, labels = moved[valid], scores[valid], labels[valid]
        keep = batched_nms(moved, scores, labels, nms_iou)[:limit]
        return {"boxes": moved[keep], "scores": scores[keep], "labels": labels[keep]}
