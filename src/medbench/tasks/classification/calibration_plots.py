"""A run's calibration and selective-prediction files: the reliability diagram, and accuracy
(and AUC, where defined) against coverage as a CSV and a plot.

Confidence and correctness per item come from ``metrics/selective.py`` (the same the test
metrics use); the diagram's bins are the ECE's (``metrics/calibration.N_BINS``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from medbench.metrics.calibration import N_BINS  # noqa: E402
from medbench.metrics.selective import (  # noqa: E402
    confidence_and_correct,
    retained,
    retained_order,
)
from medbench.tasks.referral import COVERAGES, CURVE_FILE, plot_coverage  # noqa: E402


def metric_inputs(probs: torch.Tensor, labels: torch.Tensor, label_type: str,
                  positive_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities and targets as the metric collections take them."""
    if label_type == "binary":
        return probs[:, positive_class], (labels == positive_class).long()
    return probs, labels.long()


def _bins(which: np.ndarray, confidence: np.ndarray, correct: np.ndarray,
          n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    counts = np.bincount(which, minlength=n)
    return (counts, np.bincount(which, correct, n) / np.maximum(counts, 1),
            np.bincount(which, confidence, n) / np.maximum(counts, 1))


def _ece(which: np.ndarray, confidence: np.ndarray, correct: np.ndarray, n: int) -> float:
    counts, accuracy, mean_conf = _bins(which, confidence, correct, n)
    return float(np.sum(counts * np.abs(accuracy - mean_conf)) / max(len(confidence), 1))


def plot_reliability(confidence: np.ndarray, correct: np.ndarray, path: Path) -> Path:
    """Accuracy against mean confidence per equal-width bin, with the bins' counts below."""
    edges = np.linspace(0, 1, N_BINS + 1)
    # bins [e_j, e_j+1) and confidence 1 apart, as torchmetrics bins them (the ECE in the
    # title is test/ece); confidence 1 is drawn in the last bin
    which = np.digitize(confidence, edges) - 1
    ece = _ece(which, confidence, correct, N_BINS + 1)
    which = np.minimum(which, N_BINS - 1)
    counts, accuracy, mean_conf = _bins(which, confidence, correct, N_BINS)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.5, 5.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    width, filled = 1 / N_BINS, counts > 0
    top.bar(edges[:-1][filled], accuracy[filled], width=width, align="edge",
            edgecolor="black", linewidth=0.5, label="accuracy")
    top.bar(edges[:-1][filled], (mean_conf - accuracy)[filled], bottom=accuracy[filled],
            width=width, align="edge", color="tab:red", alpha=0.3, label="gap to confidence")
    top.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    top.set_ylabel("accuracy")
    top.set_title(f"ECE {ece:.4f} ({N_BINS} equal-width bins)", fontsize=9)
    top.legend(fontsize=7, loc="upper left")
    bottom.bar(edges[:-1], counts, width=width, align="edge", color="grey")
    bottom.set_xlabel("confidence (predicted class's probability)")
    bottom.set_ylabel("items")
    # fixed margins: tight_layout's extra draw costs as much as the figure (0.1 s)
    fig.subplots_adjust(left=0.15, right=0.97, top=0.94, bottom=0.09, hspace=0.08)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _auc(scores: np.ndarray, target: np.ndarray, label_type: str) -> float:
    """The family's AUC on the retained items; NaN where a class (or label) is absent."""
    if label_type == "binary":
        return float(roc_auc_score(target, scores)) if len(np.unique(target)) == 2 else np.nan
    if label_type == "multilabel":
        if np.any(target.min(0) == target.max(0)):
            return np.nan
        return float(roc_auc_score(target, scores, average="macro"))
    if len(np.unique(target)) < scores.shape[1]:
        return np.nan
    return float(roc_auc_score(target, scores, multi_class="ovr", average="macro"))


def selective_curve(scores: torch.Tensor, target: torch.Tensor, label_type: str
                    ) -> pd.DataFrame:
    """Coverage, retained items, their accuracy and AUC, the least confident referred."""
    confidence, correct = confidence_and_correct(scores.double(), target, label_type)
    order = retained_order(confidence).numpy()
    scores_np, target_np, correct_np = scores.numpy(), target.numpy(), correct.numpy()
    rows = []
    for coverage in COVERAGES:
        kept = order[:retained(len(order), coverage)]
        rows.append({"coverage": coverage, "retained": len(kept),
                     "min_confidence": float(confidence[kept[-1]]),
                     "accuracy": float(correct_np[kept].mean()),
                     "auc": _auc(scores_np[kept], target_np[kept], label_type)})
    return pd.DataFrame(rows)


def write_trust_outputs(probs: torch.Tensor, labels: torch.Tensor, label_type: str,
                        folder: Path, positive_class: int = 1) -> list[Path]:
    """reliability.png, selective_prediction.csv and selective_prediction.png."""
    scores, target = metric_inputs(probs.float(), labels, label_type, positive_class)
    confidence, correct = confidence_and_correct(scores.double(), target, label_type)
    curve = selective_curve(scores, target, label_type)
    csv = folder / CURVE_FILE
    curve.to_csv(csv, index=False, float_format="%.6g")
    return [plot_reliability(confidence.numpy(), correct.numpy(), folder / "reliability.png"),
            csv, plot_coverage(curve, ["accuracy", "auc"], csv.with_suffix(".png"),
                               {"auc": "AUC"})]
