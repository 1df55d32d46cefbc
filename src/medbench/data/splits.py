"""Train/val/test assignment: stratified by label, grouped by patient when ids exist."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold


def _hold_out(labels: np.ndarray, groups: np.ndarray | None, fraction: float,
              seed: int) -> np.ndarray:
    """Boolean mask of about ``fraction`` of the samples, stratified, never splitting a group."""
    n_splits = max(2, round(1 / fraction))
    index = np.zeros(len(labels))
    if groups is None:
        folds = StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(index, labels)
    else:
        folds = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed).split(
            index, labels, groups
        )
    _, held = next(iter(folds))
    mask = np.zeros(len(labels), dtype=bool)
    mask[held] = True
    return mask


def assign_splits(labels: np.ndarray, groups: np.ndarray | None = None,
                  val_fraction: float = 0.1, test_fraction: float = 0.2,
                  seed: int = 0) -> np.ndarray:
    """Return an array of 'train' / 'val' / 'test', one per sample."""
    labels = np.asarray(labels)
    strata = labels if labels.ndim == 1 else labels.argmax(axis=1)
    out = np.full(len(strata), "train", dtype=object)
    test = _hold_out(strata, groups, test_fraction, seed)
    out[test] = "test"
    rest = np.flatnonzero(~test)
    val = _hold_out(strata[rest], None if groups is None else groups[rest],
                    val_fraction / (1 - test_fraction), seed)
    out[rest[val]] = "val"
    return out


def cross_validation_fold(labels: np.ndarray, groups: np.ndarray | None, folds: int, fold: int,
                          seed: int = 0) -> np.ndarray:
    """Boolean mask of the samples in fold ``fold`` of ``folds`` stratified folds (grouped by
    patient when ``groups`` is given, so no patient is on both sides)."""
    labels = np.asarray(labels)
    strata = labels if labels.ndim == 1 else labels.argmax(axis=1)
    index = np.zeros(len(strata))
    if groups is None:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(index, strata)
    else:
        splits = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(
            index, strata, groups)
    _, held = list(splits)[fold]
    mask = np.zeros(len(strata), dtype=bool)
    mask[held] = True
    return mask
