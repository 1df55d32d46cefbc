"""How the leaderboard reads and compares segmentation runs (torch-free): each run's
``per_image_test.csv`` (one row per test image, its metrics in the field of view), and a
paired bootstrap over the test images of the per-image mean (runs of a row averaged)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medbench.leaderboard.per_sample import read_per_sample_csv
from medbench.leaderboard.stats import paired_bootstrap

PER_SAMPLE_FILE = "per_image_test.csv"
TEST_NOTE = ("a paired bootstrap over the test images of the per-image mean, each row's runs "
             "averaged per image, 1000 resamples")


@dataclass(frozen=True)
class PerImage:
    """One run's per-image metrics, ordered by image index."""

    index: np.ndarray
    values: dict[str, np.ndarray]

    @classmethod
    def read(cls, path: Path) -> PerImage:
        return cls(*read_per_sample_csv(path))


def _mean(_: np.ndarray, values: np.ndarray) -> float:
    return float(np.nanmean(values))


def paired_test(metric: str, a: list[PerImage], b: list[PerImage]) -> float:
    """p-value of rows ``a`` and ``b`` differing in the per-image mean of ``metric``; NaN
    when they were not scored on the same images or lack the metric."""
    if not np.array_equal(a[0].index, b[0].index) or metric not in a[0].values:
        return float("nan")
    mean_a = np.nanmean([r.values[metric] for r in a], axis=0)
    mean_b = np.nanmean([r.values[metric] for r in b], axis=0)
    keep = np.isfinite(mean_a) & np.isfinite(mean_b)
    if keep.sum() < 2:
        return float("nan")
    return float(paired_bootstrap(a[0].index[keep], [mean_a[keep]], [mean_b[keep]], _mean)[1])
