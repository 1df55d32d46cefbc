"""How the leaderboard reads and compares detection runs (torch-free): each run's
``per_image_test.csv`` (one row per test image: true boxes, kept detections, TP / FP / FN at
IoU 0.5 and the score threshold chosen on validation, F1, AP@0.5 of the image alone), and a
paired bootstrap over the test images.

Pooled metrics (precision, recall, F1) are recomputed on every resample from the resampled
images' summed counts, so the test is on the corpus metric itself. mAP@0.5 is a corpus
statistic over every detection that the per-image file does not hold: its test is on the mean
per-image AP@0.5 (a proxy, said in the caption); mAP@[.5:.95] and FROC have none (NaN).
"""

from __future__ import annotations

import numpy as np

from medbench.leaderboard.per_sample import PerSample, paired_mean_test
from medbench.leaderboard.stats import paired_bootstrap

PER_SAMPLE_FILE = "per_image_test.csv"
TEST_NOTE = ("a paired bootstrap over the test images, 1000 resamples: F1, precision and "
             "recall from the resampled images' pooled TP/FP/FN at IoU 0.5; mAP@0.5 through "
             "the mean per-image AP@0.5 (a proxy)")
PROXIES = {"map50": "ap50"}  # corpus metric -> the per-image column its test uses


class PerImage(PerSample):
    """One run's per-image counts and scores, ordered by image index."""

    def counts(self) -> np.ndarray:
        """(images, 3) TP, FP, FN."""
        return np.stack([self.values[k] for k in ("tp", "fp", "fn")], axis=1)


def pooled(metric: str):
    """The pooled metric of (images, 3) TP/FP/FN counts, as ``paired_bootstrap`` calls it."""
    def score(_: np.ndarray, counts: np.ndarray) -> float:
        tp, fp, fn = counts.sum(axis=0)
        value = {"precision": (tp, tp + fp), "recall": (tp, tp + fn),
                 "f1": (2 * tp, 2 * tp + fp + fn)}[metric]
        return float(value[0] / value[1]) if value[1] else float("nan")
    return score


def paired_test(metric: str, a: list[PerImage], b: list[PerImage]) -> float:
    """p-value of rows ``a`` and ``b`` differing on ``metric`` over the same test images; NaN
    when they were not scored on the same images or the metric has no per-image form."""
    if not np.array_equal(a[0].index, b[0].index):
        return float("nan")
    index = a[0].index
    if metric in ("precision", "recall", "f1"):
        try:
            return float(paired_bootstrap(index, [r.counts() for r in a],
                                          [r.counts() for r in b], pooled(metric))[1])
        except ValueError:  # undefined on some resample (no detection and no true box)
            return float("nan")
    column = PROXIES.get(metric)
    return float("nan") if column is None else paired_mean_test(column, a, b)
