"""How the leaderboard reads and compares localization runs (torch-free): each run's
``per_image_test.csv`` (one row per test image: true and predicted class and box, IoU, centre
error in px, hit at IoU 0.5) and a paired bootstrap over the test images.

Box metrics (``iou``, ``centre_error``, ``acc50``) are per-image means over the images with an
object: the test is on that mean, each row's runs averaged per image. Class metrics
(``sensitivity``, ``specificity``, ``class_acc``) are recomputed on every resample from the
resampled images' true and predicted classes, each run on its own.
"""

from __future__ import annotations

import numpy as np

from medbench.leaderboard.per_sample import PerSample, paired_mean_test
from medbench.leaderboard.stats import paired_bootstrap

PER_SAMPLE_FILE = "per_image_test.csv"
TEST_NOTE = ("a paired bootstrap over the test images, 1000 resamples: IoU, centre error and "
             "accuracy at IoU 0.5 as per-image means (runs averaged per image); sensitivity, "
             "specificity and class accuracy from the resampled images' classes")
PER_IMAGE = {"iou": "iou", "centre_error": "centre_error", "acc50": "hit50"}
CLASS_METRICS = ("sensitivity", "specificity", "class_acc")


class PerImage(PerSample):
    """One run's per-image values, ordered by image index."""

    def classes(self) -> np.ndarray:
        """(images, 2) true and predicted class."""
        return np.stack([self.values["label"], self.values["pred_label"]], axis=1)


def class_metric(metric: str):
    """``metric`` of (images, 2) true / predicted classes, as ``paired_bootstrap`` calls it."""
    def score(_: np.ndarray, classes: np.ndarray) -> float:
        label, pred = classes[:, 0], classes[:, 1]
        if metric == "class_acc":
            return float(np.mean(label == pred))
        rates = []
        for c in np.unique(label[label > 0]):  # the object classes the targets hold
            actual = label == c if metric == "sensitivity" else label != c
            if actual.any():
                rates.append(np.mean((pred[actual] == c) == (metric == "sensitivity")))
        return float(np.mean(rates)) if rates else float("nan")
    return score


def paired_test(metric: str, a: list[PerImage], b: list[PerImage]) -> float:
    """p-value of rows ``a`` and ``b`` differing on ``metric`` over the same test images; NaN
    when they were not scored on the same images or the metric has no per-image form."""
    if not np.array_equal(a[0].index, b[0].index):
        return float("nan")
    index = a[0].index
    if metric in CLASS_METRICS:
        return float(paired_bootstrap(index, [r.classes() for r in a],
                                      [r.classes() for r in b], class_metric(metric))[1])
    column = PER_IMAGE.get(metric)
    return float("nan") if column is None else paired_mean_test(column, a, b)
