"""Saliency maps of a U-Net trained briefly on real DRIVE images: the segmentation family's
targets (the predicted vessel mask's class map), crops and scores, the decoder as the target
layer, the randomisation check, `medbench explain` end to end and a one-line refusal."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from medbench.cli import main
from medbench.config import compose_config
from medbench.explain.overlays import overlay
from medbench.explain.saliency import saliency_maps, target_layer_name
from medbench.explain.sanity import mean_rank_correlation, parameterised_layers, randomised
from medbench.explain.targets import targets_for
from medbench.models import create_model
from medbench.models.registry import load_pretrained
from medbench.train import build_datamodule, train_run

SHORT = ["experiment=drive_unet", "trainer.max_epochs=2", "+trainer.limit_train_batches=2",
         "data.patches_per_image=4", "+model.kwargs.encoder_depth=3",
         "+model.kwargs.decoder_channels=[64,32,16]", "data.max_images={train: 4, test: 3}"]


@pytest.fixture(scope="module")
def explained_drive(tmp_path_factory, mlflow_template):
    """A short U-Net run on DRIVE whose 3 test images are explained on 96x96 centred crops
    once tested: (results folder, run id)."""
    results = tmp_path_factory.mktemp("explain_seg") / "results"
    results.mkdir()
    shutil.copyfile(mlflow_template, results / "mlflow.db")
    cfg = compose_config([f"paths.results_dir={results}", "trainer.enable_progress_bar=false",
                          *SHORT, "+explain.at_test=true", "+explain.crop=[96,96]",
                          "+explain.top=1", "+explain.methods=[gradcam,scorecam]",
                          "+explain.sanity_stages=2"])
    run_id, _ = train_run(cfg)
    return results, run_id


def _net_and_test_batch(results, run_id):
    client = MlflowClient(f"sqlite:///{results}/mlflow.db")
    net = create_model("unet", 3, 2, encoder_depth=3, decoder_channels=[64, 32, 16])
    name = client.get_run(run_id).data.tags["best_checkpoint"]
    load_pretrained(net, results / "runs" / run_id / "checkpoints" / name, strict=True)
    datamodule = build_datamodule(compose_config(SHORT))
    return net.eval(), next(iter(datamodule.test_dataloader()))


def test_a_drive_run_explains_its_crops_at_test_time(explained_drive):
    results, run_id = explained_drive
    client = MlflowClient(f"sqlite:///{results}/mlflow.db")
    metrics = client.get_run(run_id).data.metrics
    for method in ("gradcam", "scorecam"):
        assert -1 <= metrics[f"explain/{method}/rank_corr_randomized"] < 0.9
        assert np.isfinite(metrics[f"explain/{method}/confidence_change"])
        files = [a.path for a in client.list_artifacts(run_id, f"explain/{method}")]
        assert files and all(f.endswith(".png") for f in files)
        local = client.download_artifacts(run_id, files[0], str(results))
        assert Image.open(local).size == (96, 96)  # the crop explained
    folder = results / "runs" / run_id / "explain"
    report = json.loads((folder / "scores.json").read_text())
    assert report["target_layer"] == "decoder"  # the last feature map before the head
    assert report["input_shape"] == [3, 96, 96]
    table = pd.read_csv(folder / "explained.csv")
    assert {"confidence", "true_score", "foreground"} <= set(table.columns)
    assert table["true_score"].between(0, 1).all() and table["confidence"].between(0, 1).all()


def test_segmentation_targets_crop_score_and_explain_real_drive_images(explained_drive):
    net, batch = _net_and_test_batch(*explained_drive)
    targets = targets_for("segmentation")
    assert batch["image"].shape == (1, 3, 584, 565)
    whole = targets.prepare(batch, None)  # the default: sides cut to multiples of 32
    assert whole["image"].shape == (1, 3, 576, 544)
    assert whole["target"]["mask"].shape == whole["target"]["fov"].shape == (1, 576, 544)
    part = targets.prepare(batch, [64, 96])
    assert part["image"].shape == (1, 3, 64, 96)
    assert torch.equal(part["target"]["mask"], batch["target"]["mask"][:, 260:324, 234:330])
    with torch.no_grad():
        outputs = net(part["image"])
    scores = targets.scores(outputs, part["target"], None)
    predicted = targets.predicted(outputs, part["target"])
    mask, fov = part["target"]["mask"][0] == 1, part["target"]["fov"][0]
    vessels = (outputs.softmax(1)[0, 1] >= 0.5) & fov
    dice = 2 * (vessels & mask).sum() / (vessels.sum() + (mask & fov).sum())
    assert float(scores["true_score"][0]) == pytest.approx(float(dice), abs=1e-3)
    assert torch.equal(predicted[0] == 1, (outputs.argmax(1)[0] == 1) & fov)
    assert 0 <= float(scores["confidence"][0]) <= 1
    (category, region), = targets.explained(predicted)
    assert category == 1 and torch.equal(region, predicted[0] == 1)
    (_, everything), = targets.explained(torch.zeros_like(predicted))  # all background
    assert everything.all()

    layer = target_layer_name(net, part["image"])
    assert layer == "decoder"
    map_targets = targets.map_targets(predicted)
    maps = saliency_maps(net, "gradcam", layer, part["image"], map_targets)
    assert maps.shape == (1, 64, 96) and 0 <= maps.min() and maps.max() <= 1
    assert overlay(part["image"][0], maps[0]).shape == (64, 96, 3)
    again = saliency_maps(net, "gradcam", layer, part["image"], map_targets)
    assert mean_rank_correlation(maps, again) == pytest.approx(1.0)
    noise = randomised(net, parameterised_layers(net), 0)
    assert mean_rank_correlation(
        maps, saliency_maps(noise, "gradcam", layer, part["image"], map_targets)) < 0.5


def test_medbench_explain_end_to_end_on_a_drive_run(explained_drive, capsys):
    results, run_id = explained_drive
    code = main(["explain", run_id, f"paths.results_dir={results}",
                 "explain.methods=[gradcam_pp]", "explain.crop=[64,96]", "explain.indices=[2]",
                 "explain.top=0", "explain.sanity_stages=2"])
    out = capsys.readouterr().out
    assert code == 0 and "gradcam_pp" in out
    client = MlflowClient(f"sqlite:///{results}/mlflow.db")
    local = client.download_artifacts(run_id, "explain/gradcam_pp/chosen_00002.png",
                                      str(results / "fetched"))
    assert Image.open(local).size == (96, 64)  # width, height of the crop
    assert "explain/gradcam_pp/rank_corr_randomized" in client.get_run(run_id).data.metrics


def test_a_crop_larger_than_the_image_is_one_line_and_exit_1(explained_drive, capsys):
    results, run_id = explained_drive
    code = main(["explain", run_id, f"paths.results_dir={results}", "explain.crop=[600,600]",
                 "explain.top=1"])
    err = capsys.readouterr().err
    assert code == 1 and "explain.crop=[600, 600]: expected 2 size(s) from 1 to the test " \
                         "items' [584, 565]" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
