"""Leaderboard statistics: DeLong's test, bootstrap CIs of a mean, the paired bootstrap."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from medbench.leaderboard.stats import (
    _auc_resampled,
    _delong_auc_cov,
    accuracy,
    delong_test,
    macro_auc,
    mean_ci,
    paired_bootstrap,
)


def _binary_data(rng: np.random.Generator, n: int, signal: float = 1.0):
    y = rng.integers(0, 2, n)
    return y, y * signal + rng.normal(size=n)


def _slow_delong(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong, DeLong & Clarke-Pearson (1988) from the definition: psi(x, y) = 1 if x > y,
    1/2 if x == y, else 0, over every (positive, negative) pair; structural components
    V10(X_i) = mean_j psi(X_i, Y_j), V01(Y_j) = mean_i psi(X_i, Y_j); S10, S01 their sample
    covariances over the positives / negatives; cov(AUC) = S10 / m + S01 / n."""
    k = scores.shape[0]
    x, z = scores[:, y == 1], scores[:, y == 0]
    m, n = x.shape[1], z.shape[1]
    v10, v01, aucs = np.zeros((k, m)), np.zeros((k, n)), np.zeros(k)
    for r in range(k):
        psi = np.zeros((m, n))
        for i in range(m):
            for j in range(n):
                psi[i, j] = 1.0 if x[r, i] > z[r, j] else 0.5 if x[r, i] == z[r, j] else 0.0
        aucs[r] = psi.sum() / (m * n)
        v10[r], v01[r] = psi.mean(axis=1), psi.mean(axis=0)
    s10 = np.array([[np.sum((v10[a] - aucs[a]) * (v10[b] - aucs[b])) / (m - 1)
                     for b in range(k)] for a in range(k)])
    s01 = np.array([[np.sum((v01[a] - aucs[a]) * (v01[b] - aucs[b])) / (n - 1)
                     for b in range(k)] for a in range(k)])
    return aucs, s10 / m + s01 / n


# --- DeLong ----------------------------------------------------------------------------------

def test_delong_aucs_equal_sklearn():
    rng = np.random.default_rng(1)
    y, a = _binary_data(rng, 300)
    b = np.round(a + rng.normal(size=300), 1)  # with ties
    auc_a, auc_b, _ = delong_test(y, a, b)
    assert auc_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert auc_b == pytest.approx(roc_auc_score(y, b), abs=1e-12)


def test_delong_matches_slow_reference_with_ties():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 120)
    a = rng.integers(0, 6, 120) + 1.5 * y  # few distinct values: many ties, across classes too
    b = rng.integers(0, 4, 120) + 1.0 * y
    aucs, cov = _delong_auc_cov(y, np.stack([a.astype(float), b.astype(float)]))
    ref_aucs, ref_cov = _slow_delong(y, np.stack([a, b]))
    np.testing.assert_allclose(aucs, ref_aucs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, rtol=0, atol=1e-12)

    ref_var = ref_cov[0, 0] + ref_cov[1, 1] - 2 * ref_cov[0, 1]
    ref_p = 2 * stats.norm.sf(abs(ref_aucs[0] - ref_aucs[1]) / np.sqrt(ref_var))
    auc_a, auc_b, p = delong_test(y, a, b)
    assert (auc_a, auc_b) == pytest.approx(tuple(ref_aucs), abs=1e-12)
    assert p == pytest.approx(ref_p, abs=1e-10)
    assert 1e-4 < p < 0.9  # a non-trivial case


def test_delong_identical_scores_p_is_one():
    rng = np.random.default_rng(3)
    y, a = _binary_data(rng, 200)
    auc_a, auc_b, p = delong_test(y, a, a.copy())
    assert auc_a == auc_b and p == 1.0


def test_delong_zero_variance_different_aucs():
    y = np.array([0, 0, 1, 1])
    # both separate perfectly -> equal AUCs, zero variance
    assert delong_test(y, np.array([0.1, 0.2, 0.8, 0.9]), np.array([1, 2, 3, 4]))[2] == 1.0
    # constant-score classifier: AUC 0.5, every structural component 1/2; the other perfect
    _, _, p = delong_test(y, np.array([0.1, 0.2, 0.8, 0.9]), np.zeros(4))
    assert p == 0.0


def test_delong_better_classifier_vs_random_is_significant():
    rng = np.random.default_rng(4)
    y, good = _binary_data(rng, 500, signal=2.0)
    auc_a, auc_b, p = delong_test(y, good, rng.random(500))
    assert auc_a > 0.85 and abs(auc_b - 0.5) < 0.1
    assert p < 1e-6


def test_delong_size_under_h0():
    rng = np.random.default_rng(5)
    n_sets, rejected = 200, 0
    for _ in range(n_sets):
        y = rng.integers(0, 2, 150)
        a = y + rng.normal(size=150)  # same signal, independent noise: equal true AUCs
        b = y + rng.normal(size=150)
        rejected += delong_test(y, a, b)[2] < 0.05
    assert 0.01 <= rejected / n_sets <= 0.10


def test_delong_rejects_bad_labels():
    with pytest.raises(ValueError, match="both classes"):
        delong_test(np.ones(5), np.arange(5.0), np.arange(5.0))
    with pytest.raises(ValueError, match="0/1"):
        delong_test(np.array([0, 1, 2]), np.arange(3.0), np.arange(3.0))


# --- mean_ci ---------------------------------------------------------------------------------

def test_mean_ci_contains_mean_and_narrows_with_more_runs():
    few = [0.80, 0.83, 0.86, 0.89]
    many = few * 6  # same spread, six times the runs
    lo, hi = mean_ci(few)
    assert lo < np.mean(few) < hi
    assert min(few) <= lo and hi <= max(few)
    lo6, hi6 = mean_ci(many)
    assert lo6 < np.mean(many) < hi6
    assert hi6 - lo6 < 0.6 * (hi - lo)


def test_mean_ci_deterministic_and_degenerate():
    vals = [0.712, 0.745, 0.688, 0.771, 0.723, 0.702, 0.739, 0.758]
    assert mean_ci(vals, seed=7) == mean_ci(vals, seed=7)
    assert mean_ci(vals, seed=7) != mean_ci(vals, seed=8)
    assert mean_ci([0.9]) == (0.9, 0.9)
    assert mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    lo90, hi90 = mean_ci(vals, confidence=0.90)
    lo95, hi95 = mean_ci(vals, confidence=0.95)
    assert lo95 <= lo90 and hi90 <= hi95


# --- metrics ---------------------------------------------------------------------------------

def test_accuracy_and_macro_auc_medmnist_convention():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, 90)
    probs = rng.dirichlet(np.ones(3), 90)
    assert accuracy(y[:, None], probs) == np.mean(probs.argmax(1) == y)
    ovr = np.mean([roc_auc_score(y == c, probs[:, c]) for c in range(3)])
    assert macro_auc(y, probs) == pytest.approx(ovr, abs=1e-15)
    yb = rng.integers(0, 2, 90)
    pb = np.stack([1 - probs[:, 0], probs[:, 0]], axis=1)
    assert macro_auc(yb, pb) == pytest.approx(roc_auc_score(yb, probs[:, 0]), abs=1e-15)


def test_resampled_auc_matches_sklearn_on_resamples():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 80)
    s = np.round(y + rng.normal(size=80), 1)  # ties
    idx = rng.integers(0, 80, size=(5, 80))
    counts = np.stack([np.bincount(i, minlength=80) for i in idx])
    got = _auc_resampled(y == 1, s, counts)
    want = [roc_auc_score(y[i], s[i]) for i in idx]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


# --- paired bootstrap ------------------------------------------------------------------------

def _probs(rng: np.random.Generator, y: np.ndarray, signal: float) -> np.ndarray:
    """(N, 2) probabilities from a noisy logit with the given signal."""
    p1 = 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(size=y.size))))
    return np.stack([1 - p1, p1], axis=1)


@pytest.mark.parametrize("metric", [accuracy, macro_auc])
def test_paired_bootstrap_identical_predictions(metric):
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 200)
    runs = [_probs(rng, y, 1.0) for _ in range(2)]
    diff, p = paired_bootstrap(y, runs, [r.copy() for r in runs], metric, n_resamples=300)
    assert diff == 0.0 and p == 1.0


@pytest.mark.parametrize("metric", [accuracy, macro_auc])
def test_paired_bootstrap_better_method_is_significant(metric):
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 400)
    good = [_probs(rng, y, 2.0) for _ in range(3)]
    weak = [_probs(rng, y, 0.3) for _ in range(3)]
    diff, p = paired_bootstrap(y, good, weak, metric)
    assert diff > 0.1 and p < 0.01
    diff_rev, p_rev = paired_bootstrap(y, weak, good, metric)
    assert diff_rev == pytest.approx(-diff) and p_rev == p


def test_paired_bootstrap_averages_runs():
    rng = np.random.default_rng(10)
    y = rng.integers(0, 3, 150)
    runs_a = [rng.dirichlet(np.ones(3), 150) for _ in range(3)]
    runs_b = [rng.dirichlet(np.ones(3), 150) for _ in range(2)]
    for metric in (accuracy, macro_auc):
        diff, _ = paired_bootstrap(y, runs_a, runs_b, metric, n_resamples=50)
        want = (np.mean([metric(y, p) for p in runs_a])
                - np.mean([metric(y, p) for p in runs_b]))
        assert diff == pytest.approx(want, abs=1e-15)


@pytest.mark.parametrize(("metric", "n_resamples"), [(accuracy, 300), (macro_auc, 20)])
def test_paired_bootstrap_fast_path_equals_per_resample_calls(metric, n_resamples):
    """The vectorised accuracy / macro_auc give what one metric call per resample gives
    (macro_auc via roc_auc_score costs milliseconds a call, hence few resamples)."""
    rng = np.random.default_rng(11)
    y = rng.integers(0, 3, 120)
    runs_a = [rng.dirichlet(np.ones(3), 120) + 0.1 * np.eye(3)[y] for _ in range(2)]
    runs_b = [np.round(rng.dirichlet(np.ones(3), 120) + 0.1 * np.eye(3)[y], 1)]  # ties
    fast = paired_bootstrap(y, runs_a, runs_b, metric, n_resamples=n_resamples, seed=3)
    slow = paired_bootstrap(y, runs_a, runs_b, lambda t, p: metric(t, p),
                            n_resamples=n_resamples, seed=3)
    assert fast[0] == slow[0]
    assert fast[1] == pytest.approx(slow[1], abs=1e-12)
    assert 0.0 < fast[1] < 1.0  # a non-trivial p-value, so the resampled differences agree


@pytest.mark.parametrize("metric", [accuracy, macro_auc])
def test_paired_bootstrap_is_fast(metric):
    rng = np.random.default_rng(12)
    y = rng.integers(0, 5, 600)
    runs = [[rng.dirichlet(np.ones(5), 600) for _ in range(3)] for _ in range(2)]
    start = time.perf_counter()
    paired_bootstrap(y, runs[0], runs[1], metric, n_resamples=1000)
    assert time.perf_counter() - start < 1.0


def test_paired_bootstrap_undefined_metric_on_a_resample_is_an_error():
    y = np.zeros(30, dtype=int)
    y[0] = 1  # one positive: most resamples lack it, where AUC is undefined
    probs = np.random.default_rng(13).dirichlet(np.ones(2), 30)
    with pytest.raises(ValueError, match="undefined"):
        paired_bootstrap(y, [probs], [probs[::-1].copy()], macro_auc, n_resamples=50)


def test_per_sample_readers_skip_the_sample_id_column(tmp_path):
    """The trailing sample_id (a file path, quoted by pandas when it holds a comma) is text:
    the numeric readers drop it and read the same values as without it."""
    from medbench.leaderboard.per_sample import read_per_sample_csv
    from medbench.tasks.classification.ranking import Predictions

    frame = pd.DataFrame({"index": [1, 0], "label": [0, 1], "prob_0": [0.75, 0.25],
                          "prob_1": [0.25, 0.75], "sample_id": ["b,1.png", 'a "x".png']})
    frame.to_csv(tmp_path / "with.csv", index=False)
    frame.drop(columns="sample_id").to_csv(tmp_path / "without.csv", index=False)
    with_id, without = (Predictions.read(tmp_path / f"{n}.csv") for n in ("with", "without"))
    assert (with_id.labels == [1, 0]).all() and np.array_equal(with_id.probs, without.probs)
    index, values = read_per_sample_csv(tmp_path / "with.csv")
    assert index.tolist() == [0, 1] and set(values) == {"label", "prob_0", "prob_1"}
    assert values["prob_1"].tolist() == [0.75, 0.25]

