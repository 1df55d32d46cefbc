"""The segmentation family: pixel metrics in the field of view against brute force and
scikit-learn, thresholds chosen on validation only, and a real DRIVE run end to end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from medbench.metrics.segmentation import FovPixelMetrics


def _batch(seed: int, n: int = 3, size: int = 24, empty: bool = False):
    rng = np.random.default_rng(seed)
    mask = (rng.random((n, size, size)) < 0.2).astype(np.int64)
    if empty:
        mask[0] = 0
    p = np.clip(0.35 * mask + rng.random((n, size, size)) * 0.65, 0, 1)
    probs = np.stack([1 - p, p], 1)
    fov = np.zeros((n, size, size), bool)
    fov[:, 3:-3, 2:-5] = True
    return torch.tensor(probs), torch.tensor(mask), torch.tensor(fov)


def _brute(probs, mask, fov, threshold: float) -> dict[str, np.ndarray]:
    out = {k: [] for k in ("dice", "iou", "sensitivity", "specificity", "acc", "precision")}
    for p, m, f in zip(probs[:, 1].numpy(), mask.numpy(), fov.numpy(), strict=True):
        pred, ref = p[f] >= threshold, m[f] == 1
        tp, fp = np.sum(pred & ref), np.sum(pred & ~ref)
        fn, tn = np.sum(~pred & ref), np.sum(~pred & ~ref)
        empty = tp + fn == 0
        out["dice"].append(np.nan if empty else 2 * tp / (2 * tp + fp + fn))
        out["iou"].append(np.nan if empty else tp / (tp + fp + fn))
        out["sensitivity"].append(np.nan if empty else tp / (tp + fn))
        out["specificity"].append(tn / (tn + fp))
        out["acc"].append((tp + tn) / f.sum())
        out["precision"].append(tp / (tp + fp))
    return {k: np.array(v) for k, v in out.items()}


def test_fov_metrics_match_brute_force_and_sklearn():
    metric = FovPixelMetrics(2)
    probs, mask, fov = _batch(0)
    metric.update(probs, mask, fov)
    threshold = torch.tensor([0.5])
    images = metric.per_image(threshold)
    expected = _brute(probs, mask, fov, 0.5)
    for name, values in expected.items():
        np.testing.assert_allclose(images[name], values, rtol=1e-12, err_msg=name)
    results = metric.results(threshold)
    assert results["dice"] == pytest.approx(expected["dice"].mean())
    inside = fov.numpy()
    auc = roc_auc_score(mask.numpy()[inside], probs[:, 1].numpy()[inside])
    assert abs(results["auc"] - auc) < 1e-3
    pooled = _brute(probs.permute(1, 0, 2, 3).reshape(1, 2, -1, probs.shape[-1]),
                    mask.reshape(1, -1, mask.shape[-1]), fov.reshape(1, -1, fov.shape[-1]), 0.5)
    assert results["dice_pooled"] == pytest.approx(pooled["dice"][0])


def test_thresholds_maximise_pooled_dice_on_the_grid():
    metric = FovPixelMetrics(2, bins=100)
    metric.update(*_batch(1))
    best = float(metric.best_thresholds()[0])
    pooled = {t: metric.results(torch.tensor([t]))["dice_pooled"] for t in np.arange(100) / 100}
    assert pooled[round(best, 2)] == pytest.approx(max(pooled.values()))
    assert metric.results()["thresholds"][0] == pytest.approx(best)


def test_an_empty_reference_is_excluded_and_counted():
    metric = FovPixelMetrics(2)
    metric.update(*_batch(2, empty=True))
    results = metric.results(torch.tensor([0.5]))
    assert results["dice_excluded"] == 1 and results["sensitivity_excluded"] == 1
    assert results["specificity_excluded"] == 0 and math.isfinite(results["dice"])
    assert np.isnan(metric.per_image(torch.tensor([0.5]))["dice"][0])


def _rank_results(rank: int, world: int, init: str, queue) -> None:
    """One DDP rank: its share of 5 images as a distributed sampler deals them (padded to 6 by
    repeating image 0), scored over every rank."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    probs, mask, fov = _batch(4, n=5)
    dealt = [0, 1, 2, 3, 4, 0][rank::world]  # DistributedSampler's padding repeats image 0
    metric = FovPixelMetrics(2)
    metric.update(probs[dealt], mask[dealt], fov[dealt], torch.tensor(dealt))
    chosen = metric.results()
    queue.put((rank, chosen["dice"], chosen["auc"], float(chosen["thresholds"][0])))
    dist.destroy_process_group()


def test_metrics_over_ddp_ranks_count_each_image_once(tmp_path):
    """Two gloo ranks with a padded split score exactly what one process scores alone."""
    import torch.multiprocessing as mp

    alone = FovPixelMetrics(2)
    alone.update(*_batch(4, n=5), torch.arange(5))
    expected = alone.results()
    context = mp.get_context("spawn")
    queue = context.Queue()
    init = f"file://{tmp_path / 'rendezvous'}"
    workers = [context.Process(target=_rank_results, args=(r, 2, init, queue)) for r in (0, 1)]
    for worker in workers:
        worker.start()
    got = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    for _, dice, auc, threshold in got:
        assert dice == pytest.approx(expected["dice"], abs=1e-12)
        assert auc == pytest.approx(expected["auc"], abs=1e-12)
        assert threshold == pytest.approx(float(expected["thresholds"][0]))


def test_drive_unet_end_to_end(make_cfg, data_dir, mlflow_client, only_run, results_dir):
    from medbench.family import Referral
    from medbench.leaderboard.build import build_tables
    from medbench.tasks.referral import referral_metrics
    from medbench.train import train

    metrics = train(make_cfg(
        "experiment=drive_unet", "trainer.max_epochs=2", "+trainer.limit_train_batches=2",
        "data.patches_per_image=4", "+model.kwargs.encoder_depth=3",
        "+model.kwargs.decoder_channels=[64,32,16]", "data.max_images={train: 4, test: 3}",
        "runner.uncertainty=tta"))  # flipped views: uncertainty and referral, below
    run = only_run()
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags["family"] == "segmentation"
    assert tags["data.shape"] == "[3, 64, 64]" and tags["runner"] == "lightning"
    assert 0 < metrics["test/dice"] < 1 and 0.5 < metrics["test/auc"] <= 1
    assert 0 < metrics["test/acc"] < 1 and {"test/hd95", "test/asd"} <= set(metrics)
    # the test used the thresholds of the selected epoch's validation, not its own
    history = mlflow_client.get_metric_history(run.info.run_id, "val/threshold")
    chosen = {m.step: m.value for m in history}
    assert any(abs(v - metrics["test/threshold"]) < 1e-9 for v in chosen.values())
    files = {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
    assert {"per_image_test.csv", "overlays"} <= files
    local = mlflow_client.download_artifacts(run.info.run_id, "per_image_test.csv",
                                             str(results_dir))
    per_image = pd.read_csv(local)
    assert len(per_image) == 3 and per_image["dice"].mean() == pytest.approx(
        metrics["test/dice"], abs=1e-5)
    assert per_image["asd"].dropna().mean() == pytest.approx(metrics["test/asd"], rel=1e-5)
    assert (per_image["asd"].dropna() <= per_image["hd95"].dropna() + 1e-9).all()
    every = {t.key: t for t in build_tables(f"sqlite:///{results_dir}/mlflow.db")}
    part, rows = dict((p.family, (p, f)) for p, f in every["all_methods"].family_parts())[
        "segmentation"]
    assert part.metrics[0] == "dice" and len(rows) == 1
    assert rows.iloc[0]["dice_mean"] == pytest.approx(metrics["test/dice"])
    assert every["table12_segmentation"].metrics == ["dice", "auc", "acc", "sensitivity",
                                                     "specificity"]  # not a survey row
    assert torch.isfinite(torch.tensor(metrics["test/loss"]))
    # runner.uncertainty=tta: per image the FOV's mean entropy and mutual information; the
    # images referred by entropy, scored by Dice (tasks/referral)
    assert {"entropy", "mutual_info"} <= set(per_image.columns)
    assert (per_image["mutual_info"] > 0).all()
    assert (per_image["entropy"] >= per_image["mutual_info"]).all()
    assert metrics["test/predictive_entropy"] == pytest.approx(per_image["entropy"].mean(),
                                                               rel=1e-5)
    expected = referral_metrics(Referral(-per_image["entropy"].to_numpy(),
                                         per_image["dice"].to_numpy(), "dice", ""))
    for key in ("test/aurc", "test/selective_dice_at_90"):
        assert metrics[key] == pytest.approx(expected[key], rel=1e-4)
    assert {"selective_prediction.csv", "selective_prediction.png"} <= files


@pytest.mark.parametrize("loss", ["dice_ce", "dice", "ce", "focal", "tversky"])
def test_every_loss_builds_and_trains_a_step(loss):
    from omegaconf import OmegaConf

    from medbench.family import get_family
    from medbench.models import create_model

    class Data:  # the two attributes build_module reads
        info = type("Info", (), {"num_classes": 3})()
        spatial_shape = (16, 16)

    cfg = OmegaConf.create({"runner": {"loss": loss, "optimizer": {
        "_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}, "scheduler": None}})
    module = get_family("segmentation").build_module(cfg, create_model("vessel_cnn", 1, 3),
                                                     Data())
    logits = module(torch.randn(2, 1, 16, 16))
    value = module.loss(logits, {"mask": torch.randint(0, 3, (2, 16, 16))})
    assert torch.isfinite(value) and value.requires_grad


def test_second_observer_row_on_drive(make_cfg, data_dir, only_run):
    """DRIVE's second observer against the first, inside the FOV: the human reference the
    DRIVE literature quotes (F1 about 0.788, accuracy about 0.947)."""
    from medbench.train import train

    metrics = train(make_cfg("experiment=drive_second_observer"))
    assert metrics["test/dice"] == pytest.approx(0.788, abs=0.002)
    assert metrics["test/acc"] == pytest.approx(0.947, abs=0.002)
    assert metrics["model/params"] == 0 and only_run().data.tags["runner"] == "observer"


def test_survey_ensemble_trains_its_members_then_averages(data_dir, results_dir):
    """6.2.2 (Maji 2016): members are tracked runs; the ensemble row sits in Table 13 with the
    segmentation columns, its train time the members' own."""
    from mlflow.tracking import MlflowClient

    from medbench.catalog import catalog, select
    from medbench.leaderboard.build import build_tables
    from medbench.reproduce import reproduce
    from medbench.train import train_run

    reproduce(select("maji2016_ensemble_12cnn_vessels", catalog()), [0],
              [f"paths.results_dir={results_dir}", "trainer.enable_progress_bar=false",
               "ensemble.count=2", "+trainer.limit_train_batches=2",
               "+trainer.check_val_every_n_epoch=8",  # members validate once, at their last epoch
               "data.max_images={train: 3, val: 1, test: 1}"], train_run, log=lambda _: None)
    uri = f"sqlite:///{results_dir}/mlflow.db"
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    members = [r for r in runs if r.data.tags["medbench.kind"] == "member"]
    [ensemble] = [r for r in runs if r.data.tags["medbench.kind"] == "run"]
    assert len(members) == 2 and all(r.info.run_id in ensemble.data.params[
        "model.kwargs.members"] for r in members)
    detection = {t.key: t for t in build_tables(uri)}["table13_detection"]
    row = detection.frame.set_index("method").loc["maji2016_ensemble_12cnn_vessels"]
    assert row["family"] == "segmentation" and 0 < row["dice_mean"] < 1
    assert row["train_s"] == pytest.approx(sum(r.data.metrics["time/fit_s"] for r in members))


def test_unknown_loss_is_refused():
    from omegaconf import OmegaConf

    from medbench.errors import ConfigError
    from medbench.family import get_family

    cfg = OmegaConf.create({"runner": {"loss": "dicee"}})
    with pytest.raises(ConfigError, match="runner.loss: 'dicee' is not one of dice_ce, dice"):
        get_family("segmentation").build_module(cfg, None, None)


def test_the_observer_masks_do_not_split_a_row():
    """What a second reader drew is another row's reference, not what this run trains on."""
    from medbench.config import compose_config
    from medbench.repeats import config_hash

    base = config_hash(compose_config(["experiment=drive_unet"]))
    assert base == config_hash(compose_config([
        "experiment=drive_unet", "data.observer_values={0: 1, 1: 0}",
        "data.splits.test.observer=elsewhere/id.gif"]))
    assert base != config_hash(compose_config(["experiment=drive_unet", "data.channels=[1]"]))


def test_unet_encoder_from_a_classification_weights_file(tmp_path):
    """A classifier's ResNet-18 (timm's names, its fc skipped) seeds the U-Net encoder alone."""
    from medbench.errors import ConfigError
    from medbench.models import create_model

    classifier = create_model("resnet18", 3, 5)
    torch.save(classifier.state_dict(), tmp_path / "resnet18.pt")
    unet = create_model("unet", 3, 2, encoder_depth=3, decoder_channels=[32, 16, 8],
                        encoder_weights_path=str(tmp_path / "resnet18.pt"))
    assert torch.equal(unet.encoder.conv1.weight, classifier.conv1.weight)
    assert torch.equal(unet.encoder.layer1[0].conv1.weight, classifier.layer1[0].conv1.weight)
    torch.save({"other": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="model.kwargs.encoder_weights_path: no tensor"):
        create_model("unet", 3, 2, encoder_weights_path=str(tmp_path / "other.pt"))


def test_fcn_keeps_the_input_size_for_any_channel_count():
    from medbench.models import create_model

    net = create_model("fcn", 1, 3)
    assert net(torch.randn(1, 1, 40, 52)).shape == (1, 3, 40, 52)
