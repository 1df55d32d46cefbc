"""Uncertainty and selective prediction beyond classification: the shared referral metrics
against a brute force, flipped views mapped back, and a real BCCD localization run that logs them
(DRIVE's and BCCD detection's: the end-to-end runs of their families' tests, flipped views)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from medbench.family import Referral
from medbench.metrics.detection import ImageMatches, per_image, score_entropy
from medbench.tasks.localization.module import _unflip_box
from medbench.tasks.referral import coverage_curve, referral_metrics
from medbench.tasks.stochastic import (
    PassSummary,
    check_passes,
    flip_views,
    stochastic_passes,
)


def test_referral_metrics_match_a_brute_force_and_leave_out_undefined_items():
    rng = np.random.default_rng(0)
    confidence, quality = rng.random(40), rng.random(40)
    quality[[3, 17]] = np.nan
    metrics = referral_metrics(Referral(confidence, quality, "dice", "c"))
    kept = ~np.isnan(quality)
    order = np.argsort(-confidence[kept], kind="stable")
    ranked = quality[kept][order]
    means = np.cumsum(ranked) / np.arange(1, len(ranked) + 1)
    assert metrics["test/referral_excluded"] == 2
    assert metrics["test/aurc"] == pytest.approx(np.mean(1 - means))
    assert metrics["test/selective_dice_at_90"] == pytest.approx(means[int(np.ceil(0.9 * 38)) - 1])
    curve = coverage_curve(Referral(confidence, quality, "dice", "c"))
    assert curve["coverage"].iloc[0] == 1.0 and curve["retained"].iloc[0] == 38
    assert curve["dice"].iloc[0] == pytest.approx(np.nanmean(quality))
    # an informative confidence: quality rises as coverage falls
    informed = referral_metrics(Referral(quality, quality, "dice", "c"))
    assert informed["test/aurc"] < metrics["test/aurc"]


def test_flipped_views_are_mapped_back():
    assert flip_views(2) == [(), (-2,), (-1,), (-2, -1)]
    assert len(flip_views(3)) == 8
    images = torch.rand(2, 1, 6, 9)
    # a pixel-wise network: every view, flipped back, gives the same map
    net = nn.Conv2d(1, 2, 1)
    outs = list(stochastic_passes(net, net, images, "tta", 0,
                                  lambda out, dims: out.flip(dims) if dims else out))
    assert len(outs) == 4 and all(torch.allclose(o, outs[0], atol=1e-6) for o in outs)

    class BrightestColumn(nn.Module):  # box centre at the brightest pixel, as logits
        def forward(self, x):
            flat = x[:, 0].flatten(1).argmax(1)
            cy = (flat // x.shape[-1] + 0.5) / x.shape[-2]
            cx = (flat % x.shape[-1] + 0.5) / x.shape[-1]
            box = torch.stack([cx, cy, torch.full_like(cx, 0.2), torch.full_like(cx, 0.3)], 1)
            return torch.cat([torch.logit(box), torch.zeros(len(x), 2)], 1)

    net = BrightestColumn()
    boxes = [o[:, :4].sigmoid() for o in stochastic_passes(net, net, images, "tta", 0,
                                                          _unflip_box)]
    assert all(torch.allclose(b, boxes[0], atol=1e-6) for b in boxes)


def test_pass_summary_and_mc_dropout_passes():
    summary = PassSummary()
    summary.add(torch.tensor([[0.9, 0.1]]))
    summary.add(torch.tensor([[0.1, 0.9]]))
    assert torch.allclose(summary.mean, torch.tensor([[0.5, 0.5]]))
    assert summary.entropy.item() == pytest.approx(np.log(2))
    assert summary.mutual_info.item() == pytest.approx(np.log(2) - 0.325083, abs=1e-5)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Dropout2d(0.5), nn.Conv2d(4, 2, 1))
    net.eval()
    outs = torch.stack(list(stochastic_passes(net, net, torch.rand(1, 1, 8, 8), "mc_dropout",
                                              5, lambda out, dims: out)))
    assert outs.var(0).sum() > 0 and not net[1].training  # dropout back off afterwards
    with pytest.raises(Exception, match="needs dropout layers"):
        check_passes("mc_dropout", nn.Conv2d(1, 2, 1), "tiny", "segmentation")
    with pytest.raises(Exception, match="expected null or one of mc_dropout, tta"):
        check_passes("ensemble", net, "tiny", "segmentation")


def test_detection_rows_carry_the_score_entropy():
    images = [ImageMatches(np.array([0.5, 0.99]), np.array([0, 0]), np.array([True, False]),
                           np.array([0])),
              ImageMatches(np.zeros(0), np.zeros(0, int), np.zeros(0, bool), np.array([1]))]
    rows = per_image(images, 0.4)
    assert rows["entropy"][1] == 0.0 and score_entropy(np.array([0.5])) == pytest.approx(np.log(2))
    assert rows["entropy"][0] == pytest.approx((np.log(2) + score_entropy(np.array([0.99]))) / 2)


def test_bccd_localization_with_flipped_views_keeps_box_spread(results_dir, mlflow_client,
                                                               only_run, data_dir):
    from medbench.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["train", "experiment=bccd_wbc_localizer", f"paths.results_dir={results_dir}",
                     "trainer.enable_progress_bar=false", "trainer.max_epochs=1",
                     "data.max_images={train: 8, val: 3, test: 8}", "data.batch_size=4",
                     "data.resize=[72,96]", "runner.uncertainty=tta"])
    assert code == 0
    run = only_run()
    metrics = run.data.metrics
    rows = pd.read_csv(mlflow_client.download_artifacts(run.info.run_id, "per_image_test.csv",
                                                        str(results_dir)))
    assert {"entropy", "mutual_info", "box_std"} <= set(rows.columns)
    assert (rows["box_std"] > 0).all() and (rows["mutual_info"] >= 0).all()
    assert metrics["test/mutual_info"] == pytest.approx(rows["mutual_info"].mean(), rel=1e-5)
    assert {"test/aurc", "test/selective_acc50_at_90", "test/referral_excluded"} <= set(metrics)
    curve = pd.read_csv(mlflow_client.download_artifacts(
        run.info.run_id, "selective_prediction.csv", str(results_dir)))
    assert curve["retained"].iloc[0] == 8 and curve["acc50"].iloc[0] == pytest.approx(
        rows["hit50"].mean())


def test_flipped_boxes_come_back_and_fused_passes_measure_disagreement():
    from medbench.tasks.detection.box_fusion import fuse_passes, unflip_boxes

    box = {"boxes": torch.tensor([[10.0, 5.0, 30.0, 25.0]]), "scores": torch.tensor([0.9]),
           "labels": torch.tensor([1])}
    flipped = {**box, "boxes": torch.tensor([[100 - 30.0, 60 - 25.0, 100 - 10.0, 60 - 5.0]])}
    assert torch.allclose(unflip_boxes(flipped, (-2, -1), 60, 100)["boxes"], box["boxes"])
    same, information = fuse_passes([box] * 4, 60, 100)
    assert torch.allclose(same["boxes"], box["boxes"], atol=1e-3)
    assert same["scores"].item() == pytest.approx(0.9) and information == pytest.approx(0)
    missed = {k: v[:0] for k, v in box.items()}
    half, information = fuse_passes([box, box, missed, missed], 60, 100)
    assert half["scores"].item() == pytest.approx(0.45, abs=1e-6)  # a miss counts 0
    assert information > 0.3 and half["labels"].tolist() == [1]

