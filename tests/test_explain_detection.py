"""Saliency maps of a Faster R-CNN trained briefly on real BCCD images: the detection family's
targets (the predicted boxes' box-score target), the FPN backbone as the target layer, the
randomisation check, `medbench explain` end to end and the one-line refusals."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from medbench.cli import main
from medbench.config import compose_config
from medbench.errors import ConfigError
from medbench.explain.detection_targets import BoxScoreTarget, MatchedBoxScore
from medbench.explain.overlays import overlay
from medbench.explain.saliency import saliency_maps, target_layer_name
from medbench.explain.sanity import mean_rank_correlation, parameterised_layers, randomised
from medbench.explain.targets import targets_for
from medbench.metrics.detection import match_image, per_image
from medbench.models.registry import load_pretrained
from medbench.train import build_datamodule, build_model, train_run

# test_detection.py's short BCCD run
SHORT = ["experiment=bccd_fasterrcnn", "trainer.max_epochs=1",
         "data.max_images={train: 4, val: 2, test: 3}", "data.batch_size=2",
         "model.kwargs.min_size=96", "model.kwargs.max_size=128"]


@pytest.fixture(scope="module")
def explained_bccd(tmp_path_factory, mlflow_template):
    """A short Faster R-CNN run on BCCD whose 3 test images are explained once tested:
    (results folder, run id)."""
    results = tmp_path_factory.mktemp("explain_det") / "results"
    results.mkdir()
    shutil.copyfile(mlflow_template, results / "mlflow.db")
    cfg = compose_config([f"paths.results_dir={results}", "trainer.enable_progress_bar=false",
                          *SHORT, "+explain.at_test=true", "+explain.top=1",
                          "+explain.sanity_stages=2"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_id, _ = train_run(cfg)
    return results, run_id


def _net_and_test_batch(results, run_id):
    client = MlflowClient(f"sqlite:///{results}/mlflow.db")
    cfg = compose_config([f"paths.results_dir={results}", *SHORT])
    from medbench.family import family_of

    datamodule = build_datamodule(cfg)
    datamodule.setup()
    net = build_model(cfg, family_of(cfg), datamodule, None, results)
    name = client.get_run(run_id).data.tags["best_checkpoint"]
    checkpoint = results / "runs" / run_id / "checkpoints" / name
    load_pretrained(net, checkpoint, strict=True)
    return net.eval(), next(iter(datamodule.test_dataloader())), checkpoint


def test_a_bccd_run_explains_its_test_images_at_test_time(explained_bccd):
    results, run_id = explained_bccd
    client = MlflowClient(f"sqlite:///{results}/mlflow.db")
    metrics = client.get_run(run_id).data.metrics
    for method in ("gradcam", "gradcam_pp"):  # the detection family's defaults
        assert -1 <= metrics[f"explain/{method}/rank_corr_randomized"] <= 1
        assert np.isfinite(metrics[f"explain/{method}/confidence_change"])
        files = [a.path for a in client.list_artifacts(run_id, f"explain/{method}")]
        assert files and all(f.endswith(".png") for f in files)
        local = client.download_artifacts(run_id, files[0], str(results))
        assert Image.open(local).size == (640, 480)  # the image's own size
    assert "explain/scorecam/rank_corr_randomized" not in metrics
    folder = results / "runs" / run_id / "explain"
    report = json.loads((folder / "scores.json").read_text())
    assert report["target_layer"] == "backbone"  # the FPN, not a head's conv
    assert report["input_shape"] == [3, 480, 640]
    assert len(report["methods"]["gradcam"]["cascade"]) == 2  # the randomisation ran
    table = pd.read_csv(folder / "explained.csv")
    assert {"confidence", "true_score", "detections"} <= set(table.columns)
    assert table["true_score"].between(0, 1).all() and table["confidence"].between(0, 1).all()


def test_detection_targets_score_and_explain_real_bccd_images(explained_bccd):
    net, batch, checkpoint = _net_and_test_batch(*explained_bccd)
    targets = targets_for("detection")
    targets.use_checkpoint(checkpoint)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert targets.threshold == pytest.approx(float(state["score_threshold"]))
    images = batch["image"][:2]
    assert images.shape == (2, 3, 480, 640)
    with torch.no_grad():
        outputs = targets.outputs(net, images)
    scores = targets.scores(outputs, batch["target"][:2], None)
    for i, (output, target) in enumerate(zip(outputs, batch["target"], strict=False)):
        kept = (output["scores"] >= targets.threshold) & (output["labels"] > 0)
        match = match_image(output["boxes"][kept], output["scores"][kept],
                            output["labels"][kept] - 1, target["boxes"], target["labels"])
        assert float(scores["true_score"][i]) == pytest.approx(
            float(per_image([match], targets.threshold)["f1"][0]))
        assert int(scores["detections"][i]) == int(kept.sum())
    predicted = targets.predicted(outputs, None)
    assert all(len(p["boxes"]) >= 1 for p in predicted)  # at least the best detection

    layer = target_layer_name(net, images, None, targets.default_layer(net))
    assert layer == "backbone"
    reshape = targets.reshape_transform(net)
    map_targets = targets.map_targets(predicted)
    maps = saliency_maps(net, "gradcam", layer, images, map_targets, reshape)
    assert maps.shape == (2, 480, 640) and 0 <= maps.min() and maps.max() <= 1
    assert np.ptp(maps[0]) > 0  # a map, not a constant
    picture = targets.annotate(overlay(images[0], maps[0]), predicted, 0)
    assert picture.shape == (480, 640, 3) and picture.dtype == np.uint8
    again = saliency_maps(net, "gradcam", layer, images, map_targets, reshape)
    assert mean_rank_correlation(maps, again) == pytest.approx(1.0)
    noise = randomised(net, parameterised_layers(net), 0)
    noisy = saliency_maps(noise, "gradcam", layer, images, map_targets, reshape)
    assert noisy.shape == maps.shape and mean_rank_correlation(maps, noisy) < 0.5
    # nothing to explain (no box, or none the network finds): an all-zero map, no crash
    empty = [BoxScoreTarget(torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4))] * 2
    assert not saliency_maps(net, "gradcam", layer, images, empty, reshape).any()
    with torch.no_grad():
        output = net(images[:1])[0]
    box = MatchedBoxScore(output["labels"][:1], output["boxes"][:1])
    assert float(box(output)) == pytest.approx(float(output["scores"][0]))
    assert float(MatchedBoxScore(output["labels"][:0], output["boxes"][:0])(output)) == 0


def test_medbench_explain_end_to_end_on_a_bccd_run(explained_bccd, capsys):
    results, run_id = explained_bccd
    code = main(["explain", run_id, f"paths.results_dir={results}",
                 "explain.methods=[gradcam_pp]", "explain.indices=[2]", "explain.top=0",
                 "explain.sanity_stages=1"])
    out = capsys.readouterr().out
    assert code == 0 and "gradcam_pp" in out
    client = MlflowClient(f"sqlite:///{results}/mlflow.db")
    local = client.download_artifacts(run_id, "explain/gradcam_pp/chosen_00002.png",
                                      str(results / "fetched"))
    assert Image.open(local).size == (640, 480)
    assert "explain/gradcam_pp/rank_corr_randomized" in client.get_run(run_id).data.metrics


def test_gradient_free_methods_are_refused_in_one_line(explained_bccd, capsys):
    results, run_id = explained_bccd
    code = main(["explain", run_id, f"paths.results_dir={results}",
                 "explain.methods=[scorecam]", "explain.top=1"])
    err = capsys.readouterr().err
    assert code == 1 and "explain.methods: scorecam is not available for this family's " \
                         "models (supported: gradcam, gradcam_pp;" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_network_other_than_a_torchvision_detector_is_refused():
    with pytest.raises(ConfigError, match="need a torchvision Faster R-CNN, RetinaNet or FCOS, "
                                          "not Conv2d"):
        targets_for("detection").check_network(torch.nn.Conv2d(3, 4, 3))
