"""Predictive uncertainty (runner.uncertainty): entropy and mutual information by hand, the
refusals before training, and Monte-Carlo dropout, test-time augmentation and a deep ensemble
on the real BreastMNIST."""

from __future__ import annotations

import math
import shutil

import pandas as pd
import pytest
import torch

from medbench.config import compose_config
from medbench.errors import ConfigError
from medbench.metrics.uncertainty import predictive_summary
from medbench.models import create_model
from medbench.tasks.classification.uncertainty import check_uncertainty, stochastic_logits
from medbench.train import train_run


def test_entropy_and_mutual_information_by_hand():
    agree = torch.tensor([[[0.8, 0.2]], [[0.8, 0.2]]])  # two passes, one item
    disagree = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    same, split = predictive_summary(agree), predictive_summary(disagree)
    h = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))
    assert same["entropy"].item() == pytest.approx(h) and same["mutual_info"].item() == 0
    assert split["probs"].tolist() == [[0.5, 0.5]]
    assert split["entropy"].item() == pytest.approx(math.log(2))  # all of it epistemic
    assert split["mutual_info"].item() == pytest.approx(math.log(2))
    labels = predictive_summary(torch.tensor([[[1.0, 0.5]], [[0.0, 0.5]]]), multilabel=True)
    assert labels["entropy"].item() == pytest.approx(2 * math.log(2))  # two binary labels
    assert labels["mutual_info"].item() == pytest.approx(math.log(2))  # the first's passes


def test_methods_a_model_or_data_cannot_take_are_refused_in_one_line():
    lenet = create_model("lenet5", in_chans=1, num_classes=2)
    with pytest.raises(ConfigError, match="^runner.uncertainty: 'mc_dropout' needs dropout "
                                          "layers and lenet5 has none"):
        check_uncertainty("mc_dropout", lenet, 2, "lenet5")
    with pytest.raises(ConfigError, match="'tta' flips and turns 2D images; this data has 3"):
        check_uncertainty("tta", lenet, 3, "resnet18_3d")
    with pytest.raises(ConfigError, match="'ensemble' takes the members of model=ensemble"):
        check_uncertainty("ensemble", lenet, 2, "lenet5")
    with pytest.raises(ConfigError, match="runner.uncertainty: expected null, 'mc_dropout', "
                                          "'tta' or 'ensemble', got 'bootstrap'"):
        compose_config(["runner.uncertainty=bootstrap"])


def test_dropout_is_on_for_the_passes_only():
    net = create_model("small_kernel_cnn", in_chans=1, num_classes=2).eval()
    images = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        passes = stochastic_logits(net, net, images, "mc_dropout", 5)
        assert passes.shape == (5, 4, 2) and passes.var(0).sum() > 0  # the passes differ
        assert not any(m.training for m in net.modules())  # and eval mode is back
        views = stochastic_logits(net, net, images, "tta", 5)  # D4: 8 views, whatever passes
    assert views.shape == (8, 4, 2) and torch.allclose(views[0], net(images))


@pytest.fixture(scope="module")
def uncertain_runs(tmp_path_factory, mlflow_template):
    """Two short BreastMNIST trainings, small_kernel_cnn with MC dropout and LeNet-5 with TTA,
    then the two as a deep ensemble."""
    results = tmp_path_factory.mktemp("uncertain") / "results"
    results.mkdir()
    shutil.copyfile(mlflow_template, results / "mlflow.db")
    runs, members = {}, []
    for model, method in (("small_kernel_cnn", "mc_dropout"), ("lenet5", "tta")):
        cfg = compose_config([f"paths.results_dir={results}", "trainer.enable_progress_bar=false",
                              f"model={model}", "trainer.max_epochs=2", "seed=0",
                              f"runner.uncertainty={method}", "runner.uncertainty_passes=6"])
        run_id, metrics = train_run(cfg)
        runs[method] = (pd.read_csv(results / "runs" / run_id / "predictions_test.csv"),
                        metrics)
        [best] = (results / "runs" / run_id / "checkpoints").glob("best-*.ckpt")
        members.append(f"{{name: {model}, checkpoint: '{best}'}}")
    # and the two as a deep ensemble, tested only: its members are the passes
    cfg = compose_config([f"paths.results_dir={results}", "trainer.enable_progress_bar=false",
                          "model=ensemble", f"model.kwargs.members=[{', '.join(members)}]",
                          "trainer.max_epochs=0", "runner.uncertainty=ensemble"])
    run_id, metrics = train_run(cfg)
    runs["ensemble"] = (pd.read_csv(results / "runs" / run_id / "predictions_test.csv"), metrics)
    return runs


@pytest.mark.parametrize("method", ["mc_dropout", "tta", "ensemble"])
def test_passes_give_each_test_image_its_entropy_and_mutual_information(uncertain_runs,
                                                                        method):
    frame, metrics = uncertain_runs[method]
    assert len(frame) == 156 and {"entropy", "mutual_info"} <= set(frame.columns)
    assert (frame["mutual_info"] >= 0).all() and (frame["mutual_info"] > 0).any()
    assert (frame["mutual_info"] <= frame["entropy"] + 1e-6).all()
    assert (frame["entropy"] <= math.log(2) + 1e-6).all()  # two classes
    assert metrics["test/mutual_info"] == pytest.approx(frame["mutual_info"].mean(), rel=1e-4)
    assert metrics["test/predictive_entropy"] == pytest.approx(frame["entropy"].mean(),
                                                               rel=1e-4)
    assert frame[["prob_0", "prob_1"]].sum(axis=1).sub(1).abs().max() < 1e-5
