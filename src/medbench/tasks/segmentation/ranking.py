"""How the leaderboard reads and compares segmentation runs (torch-free): each run's
``per_image_test.csv`` (one row per test image, its metrics in the field of view), and a
paired bootstrap over the test images of the per-image mean (runs of a row averaged)."""

from __future__ import annotations

from medbench.leaderboard.per_sample import PerSample, paired_mean_test

PER_SAMPLE_FILE = "per_image_test.csv"
TEST_NOTE = ("a paired bootstrap over the test images of the per-image mean, each row's runs "
             "averaged per image, 1000 resamples")


class PerImage(PerSample):
    """One run's per-image metrics, ordered by image index."""


def paired_test(metric: str, a: list[PerImage], b: list[PerImage]) -> float:
    """p-value of rows ``a`` and ``b`` differing in the per-image mean of ``metric``; NaN
    when they were not scored on the same images or lack the metric."""
    return paired_mean_test(metric, a, b)
