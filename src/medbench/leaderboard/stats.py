"""Statistics for leaderboards: CIs of a mean over runs, and tests between two methods.

- :func:`mean_ci`: percentile bootstrap CI of the mean of per-run values (seeds x folds).
- :func:`delong_test`: DeLong's test of two correlated ROC AUCs on the same samples.
- :func:`paired_bootstrap`: paired bootstrap over test samples of any metric, for methods with
  one or more runs each.
- :func:`accuracy`, :func:`macro_auc`: the MedMNIST metrics on (N, C) probabilities.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

Metric = Callable[[np.ndarray, np.ndarray], float]

# paired_bootstrap works on blocks of resamples of at most this many (resample, sample) cells,
# so that memory stays bounded on large test sets (e.g. ChestMNIST's 22k images)
_BLOCK_CELLS = 2_000_000


# --- metrics ---------------------------------------------------------------------------------

def _labels_1d(labels: np.ndarray) -> np.ndarray:
    """Class indices as a 1-D array; MedMNIST's (N, 1) label arrays are accepted."""
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"labels must have shape (N,) or (N, 1), got {np.shape(labels)}")
    return arr


def _probs_2d(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = _labels_1d(labels)
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, C) with C >= 2, got {p.shape}")
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"{y.shape[0]} labels but {p.shape[0]} rows of probs")
    return y, p


def accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    """Argmax accuracy of (N, C) class probabilities (binary tasks as (N, 2))."""
    y, p = _probs_2d(labels, probs)
    return float(np.mean(p.argmax(axis=1) == y))


def macro_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC by the MedMNIST convention: binary (C = 2) -> AUC of the class-1 probability;
    multi-class -> mean over classes of the one-vs-rest AUCs.

    Raises ValueError (from scikit-learn) when a class is absent from ``labels``.
    """
    y, p = _probs_2d(labels, probs)
    if p.shape[1] == 2:
        return float(roc_auc_score(y == 1, p[:, 1]))
    return float(np.mean([roc_auc_score(y == c, p[:, c]) for c in range(p.shape[1])]))


# --- CI of a mean over runs ------------------------------------------------------------------

def mean_ci(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 2000,
            seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of per-run values (seeds / folds).

    One value, or all values equal, gives (v, v). Deterministic for a given ``seed``.
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"mean_ci got non-finite values: {x.tolist()}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    # by hand rather than scipy.stats.bootstrap, which draws anew at every call: a leaderboard
    # computes thousands of these, and rows with the same run count share one seeded draw
    means = x[_mean_draws(x.size, n_resamples, seed)].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


@functools.lru_cache(maxsize=16)
def _mean_draws(n: int, n_resamples: int, seed: int) -> np.ndarray:
    draws = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    draws.flags.writeable = False
    return draws


# --- DeLong's test ---------------------------------------------------------------------------
# Written by hand: no maintained Python package provides DeLong's test (scikit-learn and scipy
# do not; the R package pROC does). This is the O(n log n) algorithm of Sun & Xu (2014), "Fast
# implementation of DeLong's algorithm for comparing the areas under correlated ROC curves",
# IEEE Signal Processing Letters 21(11): 1389-1393, which replaces DeLong et al.'s (1988)
# O(m n) pairwise comparisons by midranks.

def _scores_1d(scores: np.ndarray, n: int, name: str) -> np.ndarray:
    s = np.asarray(scores, dtype=float)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) like labels, got {np.shape(scores)}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} has non-finite values")
    return s


def _delong_auc_cov(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance (k, k) for k score vectors ``scores`` (k, N) on the
    same binary ``labels`` (N,), by Sun & Xu's midrank algorithm."""
    pos = labels == 1
    x, y = scores[:, pos], scores[:, ~pos]  # (k, m) positives, (k, n) negatives
    m, n = x.shape[1], y.shape[1]
    tx = stats.rankdata(x, axis=1)  # midranks within the positives
    ty = stats.rankdata(y, axis=1)  # ... within the negatives
    tz = stats.rankdata(np.concatenate([x, y], axis=1), axis=1)  # ... within all samples
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n  # per positive: share of negatives below it (ties count 1/2)
    v01 = 1.0 - (tz[:, m:] - ty) / m  # per negative: share of positives above it
    s10 = np.atleast_2d(np.cov(v10))  # rows are variables, ddof = 1 as in DeLong (1988)
    s01 = np.atleast_2d(np.cov(v01))
    return aucs, s10 / m + s01 / n


def delong_test(labels: np.ndarray, scores_a: np.ndarray,
                scores_b: np.ndarray) -> tuple[float, float, float]:
    """DeLong's test of H0: AUC_a == AUC_b for two classifiers scored on the same samples.

    ``labels`` are binary 0/1 (both present); higher scores mean class 1. Returns
    ``(auc_a, auc_b, p)`` with a two-sided p-value. When the variance of the AUC difference is
    zero (e.g. identical scores) p is 1.0 if the AUCs are equal, else 0.0.
    """
    y = _labels_1d(labels)
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"labels must be 0/1, got values {np.unique(y).tolist()}")
    m = int(np.sum(y == 1))
    if m == 0 or m == y.size:
        raise ValueError("labels must contain both classes")
    a = _scores_1d(scores_a, y.size, "scores_a")
    b = _scores_1d(scores_b, y.size, "scores_b")
    aucs, cov = _delong_auc_cov(y, np.stack([a, b]))
    auc_a, auc_b = float(aucs[0]), float(aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if var <= 0.0:
        return auc_a, auc_b, 1.0 if auc_a == auc_b else 0.0
    z = (auc_a - auc_b) / np.sqrt(var)
    return auc_a, auc_b, float(min(1.0, 2.0 * stats.norm.sf(abs(z))))


# --- paired bootstrap ------------------------------------------------------------------------

def _accuracy_resampled(y: np.ndarray, p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """accuracy on each resample, given as per-sample draw counts (B, N)."""
    correct = (p.argmax(axis=1) == y).astype(float)
    return counts @ correct / y.size


def _mean_correct_resampled(y: np.ndarray, correct: np.ndarray,
                            counts: np.ndarray) -> np.ndarray:
    """accuracy on each resample from a (mean) per-sample correctness vector (N,)."""
    return counts @ correct / y.size


def _auc_resampled(pos: np.ndarray, s: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC AUC (ties count 1/2, as roc_auc_score) of scores ``s`` for binary ``pos`` on each
    resample given as integer draw counts (B, N): a Mann-Whitney statistic with the counts as
    weights, in exact integer arithmetic. NaN where a resample lacks one of the classes."""
    neg = np.flatnonzero(~pos)
    neg = neg[np.argsort(s[neg], kind="stable")]
    s_pos = s[pos]
    lo = np.searchsorted(s[neg], s_pos, side="left")  # negatives strictly below each positive
    hi = np.searchsorted(s[neg], s_pos, side="right")  # ... below or tied
    cum_neg = np.zeros((counts.shape[0], neg.size + 1), dtype=counts.dtype)
    np.cumsum(np.take(counts, neg, axis=1), axis=1, out=cum_neg[:, 1:])
    w_pos = np.take(counts, np.flatnonzero(pos), axis=1)
    # 2 x sum over positives of weight x (negative weight below + half the tied one)
    num2 = np.sum(w_pos * (np.take(cum_neg, lo, axis=1) + np.take(cum_neg, hi, axis=1)), axis=1)
    den2 = 2 * w_pos.sum(axis=1) * cum_neg[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den2 > 0, num2 / den2, np.nan)


def _macro_auc_resampled(y: np.ndarray, p: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """macro_auc on each resample, given as per-sample draw counts (B, N)."""
    if p.shape[1] == 2:
        return _auc_resampled(y == 1, p[:, 1], counts)
    return np.mean([_auc_resampled(y == c, p[:, c], counts) for c in range(p.shape[1])], axis=0)


# Vectorised forms of the known metrics: all resamples of a block at once, instead of one
# metric call per resample (roc_auc_score costs milliseconds a call in input checks alone).
_RESAMPLED: dict[Callable, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    accuracy: _accuracy_resampled,
    macro_auc: _macro_auc_resampled,
}


def _index_blocks(rng: np.random.Generator, n: int, n_resamples: int) -> Iterator[np.ndarray]:
    """Bootstrap indices (b, n), drawn with replacement, in blocks of bounded size."""
    block = max(1, _BLOCK_CELLS // n)
    for start in range(0, n_resamples, block):
        yield rng.integers(0, n, size=(min(block, n_resamples - start), n))


def _resamples(n: int, n_resamples: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks of bootstrap indices (b, n) and their per-sample draw counts (b, n). Seeded, so
    every pair of methods tested on one test set sees the same resamples; drawn once and
    reused across pairs when small enough to keep."""
    if n * n_resamples <= _BLOCK_CELLS:
        return iter(_kept_resamples(n, n_resamples, seed))
    return _drawn_resamples(n, n_resamples, seed)


@functools.lru_cache(maxsize=4)
def _kept_resamples(n: int, n_resamples: int, seed: int) -> tuple[tuple[np.ndarray, ...], ...]:
    blocks = tuple(_drawn_resamples(n, n_resamples, seed))
    for block in blocks:
        for array in block:
            array.flags.writeable = False
    return blocks


def _drawn_resamples(n: int, n_resamples: int, seed: int
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for idx in _index_blocks(np.random.default_rng(seed), n, n_resamples):
        rows = np.arange(idx.shape[0])[:, None]
        counts = np.bincount((idx + rows * n).ravel(), minlength=idx.size).reshape(idx.shape)
        yield idx, counts


def paired_bootstrap(labels: np.ndarray, preds_a: list[np.ndarray], preds_b: list[np.ndarray],
                     metric: Metric, n_resamples: int = 1000,
                     seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap test of two methods on the same test set, each with one or more runs.

    ``preds_a`` / ``preds_b`` are per-run predictions of the same samples as ``labels``;
    ``metric(labels, preds) -> float``. Each resample draws test-sample indices with
    replacement once and applies them to every run of both methods; its statistic is the mean
    over A's runs of the metric minus that over B's runs. Returns ``(diff, p)``: the observed
    difference on the full test set and the two-sided percentile-bootstrap p-value
    ``min(1, 2 * min(P(d* <= 0), P(d* >= 0)))``. :func:`accuracy` and :func:`macro_auc` run
    vectorised over resamples; any other metric is called once per resample and run.
    """
    y = np.asarray(labels)
    n = y.shape[0] if y.ndim else 0
    if n == 0:
        raise ValueError("paired_bootstrap needs at least one test sample")
    if not preds_a or not preds_b:
        raise ValueError("paired_bootstrap needs at least one run per method")
    runs_a = [np.asarray(p) for p in preds_a]
    runs_b = [np.asarray(p) for p in preds_b]
    for p in runs_a + runs_b:
        if p.shape[:1] != (n,):
            raise ValueError(f"predictions of shape {p.shape} do not match {n} labels")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")

    observed = (np.mean([metric(y, p) for p in runs_a])
                - np.mean([metric(y, p) for p in runs_b]))

    resampled = _RESAMPLED.get(metric)
    if metric is accuracy:
        # accuracy is linear in the per-sample correctness, so its mean over runs is the
        # accuracy of the runs' mean correctness: one product per resample, not one per run
        yv = _labels_1d(y)
        correct = [np.mean([p.argmax(axis=1) == yv for p in runs], axis=0)
                   for runs in (runs_a, runs_b)]
        runs_a, runs_b = [correct[0]], [correct[1]]
        resampled = _mean_correct_resampled
    diffs = []
    for idx, counts in _resamples(n, n_resamples, seed):
        if resampled is not None:
            yv = _labels_1d(y)
            mean_a = np.mean([resampled(yv, p, counts) for p in runs_a], axis=0)
            mean_b = np.mean([resampled(yv, p, counts) for p in runs_b], axis=0)
        else:
            mean_a = np.array([np.mean([metric(y[i], p[i]) for p in runs_a]) for i in idx])
            mean_b = np.array([np.mean([metric(y[i], p[i]) for p in runs_b]) for i in idx])
        diffs.append(mean_a - mean_b)
    d = np.concatenate(diffs)
    if not np.all(np.isfinite(d)):
        raise ValueError("the metric is undefined on some bootstrap resamples "
                         "(e.g. a class absent from a resample): too few test samples")
    p_value = min(1.0, 2.0 * min(np.mean(d <= 0.0), np.mean(d >= 0.0)))
    return float(observed), float(p_value)

