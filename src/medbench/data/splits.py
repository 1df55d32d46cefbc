"""Train/val/test assignment: stratified by label, grouped by patient when ids exist."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from medbench.data.label_checks import check_class_coverage
from medbench.errors import ConfigError, DataError


def _hold_out(labels: np.ndarray, groups: np.ndarray | None, fraction: float,
              seed: int, key: str = "data.test_fraction") -> np.ndarray:
    """Boolean mask of about ``fraction`` of the samples, stratified, never splitting a group
    (above one half: the complement of a fold, so 0.7 holds out about 0.7, not 0.5)."""
    if fraction > 0.5:
        return ~_hold_out(labels, groups, 1 - fraction, seed, key)
    n_splits = max(2, round(1 / fraction))
    return _fold_mask(labels, groups, n_splits, 0, seed,
                      f"{key}={fraction:g}: cannot hold out that share of")


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Each fraction in (0, 1) and their sum below 1 (the rest trains)."""
    for key, value in (("data.val_fraction", val_fraction),
                       ("data.test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ConfigError(f"{key}: expected a fraction between 0 and 1 (both excluded), "
                              f"got {value!r}")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(f"data.val_fraction + data.test_fraction = "
                          f"{val_fraction + test_fraction:g}: expected below 1 (the rest "
                          "trains)")


def assign_splits(labels: np.ndarray, groups: np.ndarray | None = None,
                  val_fraction: float = 0.1, test_fraction: float = 0.2,
                  seed: int = 0) -> np.ndarray:
    """Return an array of 'train' / 'val' / 'test', one per sample."""
    check_fractions(val_fraction, test_fraction)
    labels = np.asarray(labels)
    strata = labels if labels.ndim == 1 else labels.argmax(axis=1)
    out = np.full(len(strata), "train", dtype=object)
    test = _hold_out(strata, groups, test_fraction, seed)
    out[test] = "test"
    rest = np.flatnonzero(~test)
    val = _hold_out(strata[rest], None if groups is None else groups[rest],
                    val_fraction / (1 - test_fraction), seed, "data.val_fraction")
    out[rest[val]] = "val"
    return out


def cross_validation_fold(labels: np.ndarray, groups: np.ndarray | None, folds: int, fold: int,
                          seed: int = 0) -> np.ndarray:
    """Boolean mask of the samples in fold ``fold`` of ``folds`` stratified folds (grouped by
    patient when ``groups`` is given, so no patient is on both sides)."""
    labels = np.asarray(labels)
    strata = labels if labels.ndim == 1 else labels.argmax(axis=1)
    return _fold_mask(strata, groups, folds, fold, seed,
                      f"cv.folds={folds}: cannot make that many folds of")


def check_fold_classes(labels: np.ndarray, held: np.ndarray, groups: np.ndarray | None,
                       class_names: list[str], multilabel: bool, name: str, folds: int,
                       fold: int) -> None:
    """Fold ``fold``'s training and held-out parts hold every class, as fixed splits must
    (``label_checks.check_class_coverage``; the test split is not re-split, checked already).
    Stratification cannot promise it for a class of fewer images (or patients) than folds,
    nor for multi-label data (stratified by the first class of each item)."""
    def fix(split: str, index: int) -> str:
        members = labels[:, index] > 0 if multilabel else labels == index
        patients = "" if groups is None else f" of {len(set(groups[members]))} patient(s)"
        return (f"its {members.sum()} train+val image(s){patients} cannot reach both parts of "
                f"every fold: use fewer folds (cv.folds), or add images of it")

    check_class_coverage({"train": labels[~held], "val": labels[held]}, class_names,
                         multilabel, f"{name} (fold {fold} of cv.folds={folds})", fix)


def _fold_mask(strata: np.ndarray, groups: np.ndarray | None, folds: int, fold: int,
               seed: int, cannot: str) -> np.ndarray:
    """Boolean mask of fold ``fold`` of ``folds`` stratified (and grouped) folds; scikit-learn
    refusing the split (too few samples or patients) is one line starting ``cannot``."""
    index = np.zeros(len(strata))
    try:
        if groups is None:
            splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(index,
                                                                                   strata)
        else:
            splits = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(
                index, strata, groups)
        held = next(held for k, (_, held) in enumerate(splits) if k == fold)
    except ValueError as err:
        what = f"{len(strata)} images" + ("" if groups is None else
                                          f" of {len(set(groups))} patients")
        raise DataError(f"{cannot} {what} ({err})") from None
    mask = np.zeros(len(strata), dtype=bool)
    mask[held] = True
    return mask


def checked_cv(cv: dict[str, Any]) -> dict[str, Any]:
    """``cv.folds`` (None, or at least 2) and ``cv.fold`` (0 .. folds-1) validated."""
    folds, fold = cv.get("folds"), cv.get("fold")
    if folds is None:
        return {}
    if not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"cv.folds: expected an integer >= 2 or null, got {folds!r}")
    if not isinstance(fold, int) or not 0 <= fold < folds:
        raise ConfigError(f"cv.fold: expected an integer in 0..{folds - 1}, got {fold!r}")
    return dict(cv)
