"""Metric collections against scikit-learn, accumulated over several batches."""

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from medbench.metrics.classification import scalar_metrics


def _accumulate(collection, probs, target, batches=4):
    for p, t in zip(torch.chunk(probs, batches), torch.chunk(target, batches), strict=True):
        collection.update(p, t)
    return {k: v.item() for k, v in collection.compute().items()}


def test_binary_against_sklearn():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 2, 200)
    score = np.clip(target * 0.3 + rng.random(200) * 0.7, 0, 1)
    got = _accumulate(scalar_metrics("binary", 2), torch.tensor(score), torch.tensor(target))
    pred = (score >= 0.5).astype(int)
    assert got["auc"] == pytest.approx(skm.roc_auc_score(target, score), abs=1e-6)
    assert got["acc"] == pytest.approx(skm.accuracy_score(target, pred))
    assert got["sensitivity"] == pytest.approx(skm.recall_score(target, pred))
    assert got["specificity"] == pytest.approx(skm.recall_score(1 - target, 1 - pred))
    assert got["precision"] == pytest.approx(skm.precision_score(target, pred))
    assert got["f1"] == pytest.approx(skm.f1_score(target, pred))
    assert got["kappa"] == pytest.approx(skm.cohen_kappa_score(target, pred), abs=1e-6)


@pytest.mark.parametrize("task", ["multiclass", "ordinal"])
def test_multiclass_auc_is_mean_one_vs_rest(task):
    rng = np.random.default_rng(1)
    target = rng.integers(0, 4, 300)
    logits = rng.normal(size=(300, 4)) + np.eye(4)[target]
    probs = torch.tensor(logits).softmax(1).numpy()
    got = _accumulate(scalar_metrics(task, 4), torch.tensor(probs), torch.tensor(target))
    pred = probs.argmax(1)
    assert got["auc"] == pytest.approx(
        skm.roc_auc_score(target, probs, multi_class="ovr", average="macro"), abs=1e-6)
    assert got["acc"] == pytest.approx(skm.accuracy_score(target, pred))
    assert got["f1"] == pytest.approx(skm.f1_score(target, pred, average="macro"), abs=1e-6)
    weights = "quadratic" if task == "ordinal" else None
    assert got["kappa"] == pytest.approx(
        skm.cohen_kappa_score(target, pred, weights=weights), abs=1e-6)


def test_multilabel_against_sklearn():
    rng = np.random.default_rng(2)
    target = rng.integers(0, 2, (150, 3))
    probs = np.clip(target * 0.4 + rng.random((150, 3)) * 0.6, 0, 1)
    got = _accumulate(scalar_metrics("multilabel", 3), torch.tensor(probs),
                      torch.tensor(target))
    pred = (probs >= 0.5).astype(int)
    assert got["auc"] == pytest.approx(skm.roc_auc_score(target, probs, average="macro"),
                                       abs=1e-6)
    assert got["acc"] == pytest.approx(np.mean([(pred[:, i] == target[:, i]).mean()
                                                for i in range(3)]))
    assert got["kappa"] == pytest.approx(np.mean(
        [skm.cohen_kappa_score(target[:, i], pred[:, i]) for i in range(3)]), abs=1e-6)
