"""Calibration (ECE, Brier, temperature scaling) and selective prediction: hand-computed values
on tiny tensors, and a LeNet-5 trained on the real BreastMNIST with temperature scaling on."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import open_dict
from scipy.stats import spearmanr
from sklearn.metrics import brier_score_loss

from medbench.config import compose_config
from medbench.errors import ConfigError
from medbench.family import get_family
from medbench.metrics.calibration import BrierScore, calibration_metrics, fit_temperature, nll
from medbench.metrics.classification import scalar_metrics
from medbench.metrics.selective import SelectiveAccuracy, SelectiveRisk
from medbench.repeats import config_hash
from medbench.train import train_run

# binary: positive-class probabilities; top-label confidences 0.9, 0.82, 0.7, 0.62, 0.88,
# right, wrong, right, right, right; bins of 1/15: 0.9 and 0.88 share [0.867, 0.933)
BINARY_P = torch.tensor([0.9, 0.82, 0.3, 0.62, 0.88])
BINARY_Y = torch.tensor([1, 0, 0, 1, 1])


def _computed(metric, preds, target, batches=2):
    for p, t in zip(torch.tensor_split(preds, batches), torch.tensor_split(target, batches),
                    strict=True):
        metric.update(p, t)
    return metric.compute().item()


def test_binary_ece_and_brier_by_hand():
    ece = calibration_metrics("binary", 2)["ece"]
    # (2 * |1 - 0.89| + |0 - 0.82| + |1 - 0.7| + |1 - 0.62|) / 5
    assert _computed(ece, BINARY_P, BINARY_Y) == pytest.approx(1.72 / 5, abs=1e-6)
    brier = (0.1 ** 2 + 0.82 ** 2 + 0.3 ** 2 + 0.38 ** 2 + 0.12 ** 2) / 5
    assert _computed(BrierScore("binary"), BINARY_P, BINARY_Y) == pytest.approx(brier)
    assert brier == pytest.approx(brier_score_loss(BINARY_Y.numpy(), BINARY_P.numpy()))


def test_multiclass_and_multilabel_ece_and_brier_by_hand():
    probs, target = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.25, 0.65]]), torch.tensor([0, 1])
    metrics = calibration_metrics("multiclass", 3)
    assert _computed(metrics["ece"], probs, target) == pytest.approx((0.3 + 0.65) / 2)
    # sum over classes: (0.09 + 0.04 + 0.01) and (0.01 + 0.5625 + 0.4225)
    assert _computed(metrics["brier"], probs, target) == pytest.approx((0.14 + 0.995) / 2)
    # multi-label: the mean of the labels' binary figures
    probs = torch.stack([BINARY_P, 1 - BINARY_P], dim=1)
    target = torch.stack([BINARY_Y, 1 - BINARY_Y], dim=1)
    metrics = calibration_metrics("multilabel", 2)
    assert _computed(metrics["ece"], probs, target) == pytest.approx(1.72 / 5, abs=1e-6)
    assert _computed(metrics["brier"], probs, target) == pytest.approx(
        brier_score_loss(BINARY_Y.numpy(), BINARY_P.numpy()))


def test_selective_risk_and_accuracy_by_hand():
    # by confidence: right, right, wrong, right, right -> accuracy 1, 1, 2/3, 3/4, 4/5
    risk = (0 + 0 + 1 / 3 + 1 / 4 + 1 / 5) / 5
    assert _computed(SelectiveRisk("binary"), BINARY_P, BINARY_Y) == pytest.approx(risk)
    assert _computed(SelectiveAccuracy("binary", 0.9), BINARY_P, BINARY_Y) == pytest.approx(0.8)
    assert _computed(SelectiveAccuracy("binary", 0.5), BINARY_P, BINARY_Y) == pytest.approx(2 / 3)
    assert _computed(SelectiveAccuracy("binary", 0.4), BINARY_P, BINARY_Y) == pytest.approx(1.0)
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.5, 0.1, 0.4]])
    target = torch.tensor([1, 1, 2, 0])  # confidences 0.8 right, 0.7 right, 0.6 wrong, 0.5 right
    assert _computed(SelectiveRisk("multiclass"), probs, target) == pytest.approx(
        (0 + 0 + 1 / 3 + 1 / 4) / 4)
    got = {k: v.item() for k, v in scalar_metrics("multiclass", 3)(probs, target).items()}
    assert {"ece", "brier", "aurc", "selective_acc_at_90"} <= set(got)


def test_temperature_lowers_the_nll_of_overconfident_logits_and_repeats():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (400,), generator=generator)
    logits = 8 * (torch.randn(400, 3, generator=generator) + torch.eye(3)[labels])
    fit = fit_temperature(logits, labels)
    assert fit.temperature > 1 and fit.nll_after < fit.nll_before
    scaled = logits.double() / fit.temperature
    assert fit.nll_after == pytest.approx(nll(scaled, labels, False).item())
    assert fit_temperature(logits, labels) == fit  # deterministic
    under = fit_temperature(logits / 40, labels)  # underconfident: T < 1
    assert under.temperature < 1 and under.nll_after < under.nll_before
    multilabel = fit_temperature(logits, torch.eye(3)[labels], multilabel=True)
    assert multilabel.nll_after <= multilabel.nll_before


def test_calibration_key_is_checked_and_off_keeps_the_config_hash(results_dir):
    with pytest.raises(ConfigError, match=r"^runner.calibration: expected null or "
                                          r"'temperature'.*got 'platt'$"):
        compose_config([f"paths.results_dir={results_dir}", "runner.calibration=platt"])
    default = compose_config([f"paths.results_dir={results_dir}"])
    off = default.copy()  # a config from before the key existed
    with open_dict(off):
        del off.runner.calibration
    on = compose_config([f"paths.results_dir={results_dir}", "runner.calibration=temperature"])
    assert config_hash(default) == config_hash(off) != config_hash(on)


def test_temperature_is_refused_for_monte_carlo_probabilities(results_dir):
    class MonteCarlo(torch.nn.Linear):
        def mc_predict(self, x):  # averages probabilities: no logits to scale
            return x, x

    cfg = compose_config([f"paths.results_dir={results_dir}", "runner.calibration=temperature"])
    with pytest.raises(ConfigError, match=r"^runner.calibration: 'temperature' needs logits"):
        get_family("classification").build_module(cfg, MonteCarlo(2, 2), None)


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory, mlflow_template):
    """LeNet-5, 10 epochs on BreastMNIST, tested with temperature scaling (about 15 s)."""
    results = tmp_path_factory.mktemp("calibrated") / "results"
    results.mkdir()
    shutil.copyfile(mlflow_template, results / "mlflow.db")
    cfg = compose_config([f"paths.results_dir={results}", "trainer.enable_progress_bar=false",
                          "model=lenet5", "trainer.max_epochs=10", "seed=0",
                          "runner.calibration=temperature"])
    run_id, metrics = train_run(cfg)
    return results / "runs" / run_id, metrics, MlflowClient(f"sqlite:///{results}/mlflow.db"
                                                           ).get_run(run_id)


def test_temperature_scaling_does_not_raise_validation_nll_on_breastmnist(calibrated_run):
    _, metrics, run = calibrated_run
    assert metrics["calibration/temperature"] > 0
    assert metrics["calibration/val_nll_after"] <= metrics["calibration/val_nll_before"]
    for key in ("test/ece", "test/brier", "test/aurc", "test/selective_acc_at_90",
                "calibration/temperature"):
        assert run.data.metrics[key] == pytest.approx(metrics[key])
    assert 0 <= metrics["test/ece"] <= 1 and 0 <= metrics["test/brier"] <= 1


def test_retained_accuracy_rises_as_coverage_falls_on_breastmnist(calibrated_run):
    folder, metrics, _ = calibrated_run
    for name in ("reliability.png", "selective_prediction.png", "selective_prediction.csv"):
        assert (folder / name).stat().st_size > 0
    curve = pd.read_csv(folder / "selective_prediction.csv")
    assert curve["coverage"].iloc[0] == 1.0 and curve["retained"].iloc[0] == 156  # test split
    assert curve["accuracy"].iloc[0] == pytest.approx(metrics["test/acc"], abs=1e-6)
    half = curve.loc[np.isclose(curve["coverage"], 0.5), "accuracy"].item()
    assert half > curve["accuracy"].iloc[0]
    assert spearmanr(curve["coverage"], curve["accuracy"]).statistic < -0.5
    assert metrics["test/selective_acc_at_90"] >= metrics["test/acc"]
    assert metrics["test/aurc"] < 1 - metrics["test/acc"]  # better than referring at random
