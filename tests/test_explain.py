"""Saliency maps of a model trained on the real BreastMNIST: overlays of the input's size, the
randomisation sanity check (Adebayo et al. 2018), `medbench explain` end to end and its
one-line errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from medbench.cli import main
from medbench.config import compose_config
from medbench.explain.overlays import overlay
from medbench.explain.saliency import saliency_maps, target_layer_name
from medbench.explain.sanity import (
    cascading_randomisation,
    mean_rank_correlation,
    parameterised_layers,
    randomised,
)
from medbench.explain.targets import targets_for
from medbench.models import create_model
from medbench.models.registry import load_pretrained
from medbench.train import train_run


@pytest.fixture(scope="module")
def explained_run(tmp_path_factory, mlflow_template):
    """One short LeNet-5 run on BreastMNIST that explains its test images once tested
    (``+explain.at_test=true``): (results folder, run id)."""
    results = tmp_path_factory.mktemp("explain") / "results"
    results.mkdir()
    shutil.copyfile(mlflow_template, results / "mlflow.db")
    cfg = compose_config([f"paths.results_dir={results}", "trainer.enable_progress_bar=false",
                          "data=breastmnist", "model=lenet5", "trainer.max_epochs=4",
                          "+explain.at_test=true", "+explain.methods=[gradcam,scorecam]",
                          "+explain.top=3"])
    run_id, _ = train_run(cfg)
    return results, run_id


def _checkpoint_net(results, run_id) -> torch.nn.Module:
    client = MlflowClient(f"sqlite:///{results}/mlflow.db")
    name = client.get_run(run_id).data.tags["best_checkpoint"]
    net = create_model("lenet5", 1, 2)
    load_pretrained(net, results / "runs" / run_id / "checkpoints" / name, strict=True)
    return net.eval()


def test_a_run_explains_its_test_images_at_test_time(explained_run):
    results, run_id = explained_run
    client = MlflowClient(f"sqlite:///{results}/mlflow.db")
    metrics = client.get_run(run_id).data.metrics
    for method in ("gradcam", "scorecam"):
        assert -1 <= metrics[f"explain/{method}/rank_corr_randomized"] < 0.9
        assert f"explain/{method}/confidence_change" in metrics
        assert metrics[f"explain/{method}/seconds_per_image"] > 0
        files = [a.path for a in client.list_artifacts(run_id, f"explain/{method}")]
        assert files and all(f.endswith(".png") for f in files)
        local = client.download_artifacts(run_id, files[0], str(results))
        assert Image.open(local).size == (28, 28)  # the input's size
    names = {a.path for a in client.list_artifacts(run_id, "explain")}
    assert {"explain/explained.csv", "explain/scores.json"} <= names


def test_the_randomisation_check_separates_trained_from_random_weights(explained_run):
    results, run_id = explained_run
    net = _checkpoint_net(results, run_id)
    from medbench.data.medmnist import MedMNISTDataModule

    images = next(iter(MedMNISTDataModule("breastmnist", batch_size=16).test_dataloader()))[
        "image"]
    layer = target_layer_name(net, images[:1])
    targets = targets_for("classification").map_targets(net(images).argmax(1))
    maps = saliency_maps(net, "gradcam", layer, images, targets)
    assert maps.shape == (16, 28, 28) and 0 <= maps.min() and maps.max() <= 1
    assert overlay(images[0], maps[0]).shape == (28, 28, 3)
    # same weights, same maps: a model compared with itself correlates 1, and so does a
    # "randomisation" of no layer; the same seed draws the same random weights
    again = saliency_maps(net, "gradcam", layer, images, targets)
    assert mean_rank_correlation(maps, again) == pytest.approx(1.0)
    assert mean_rank_correlation(
        maps, saliency_maps(randomised(net, [], 0), "gradcam", layer, images, targets)) == 1.0
    layers = parameterised_layers(net)
    first = saliency_maps(randomised(net, layers, 3), "gradcam", layer, images, targets)
    second = saliency_maps(randomised(net, layers, 3), "gradcam", layer, images, targets)
    assert np.array_equal(first, second)
    stages = cascading_randomisation(
        net, lambda model: saliency_maps(model, "gradcam", layer, images, targets), maps, 3)
    assert [s["layers"] for s in stages] == sorted(s["layers"] for s in stages)
    assert stages[-1]["layers"] == len(layers)
    assert stages[-1]["rank_corr"] < 0.6, stages  # every layer re-initialised: clearly below 1


def test_medbench_explain_end_to_end(explained_run, capsys):
    results, run_id = explained_run
    code = main(["explain", run_id, f"paths.results_dir={results}",
                 "explain.methods=[gradcam++]", "explain.indices=[0,7]", "explain.top=1",
                 "explain.target_layer=net.6"])
    out = capsys.readouterr().out
    assert code == 0 and "gradcam_pp" in out and "rank corr." in out
    client = MlflowClient(f"sqlite:///{results}/mlflow.db")
    files = {a.path for a in client.list_artifacts(run_id, "explain/gradcam_pp")}
    assert {"explain/gradcam_pp/chosen_00000.png", "explain/gradcam_pp/chosen_00007.png"} <= files
    assert "explain/gradcam_pp/rank_corr_randomized" in client.get_run(run_id).data.metrics


@pytest.mark.parametrize("args, says", [
    (["no-such-run"], "run 'no-such-run' not found"),
    (["<run>", "explain.target_layer=net.layer4"], "the model has no layer 'net.layer4'"),
    (["<run>", "explain.methods=[gradcam+]"], "unknown method 'gradcam+'"),
    (["<run>", "explain.indices=[999]"], "999 is not a test index"),
])
def test_bad_input_is_one_line_and_exit_1(explained_run, capsys, args, says):
    results, run_id = explained_run
    args = [run_id if a == "<run>" else a for a in args]
    code = main(["explain", *args, f"paths.results_dir={results}", "explain.top=0"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and says in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_bad_explain_option_at_test_time_costs_the_maps_not_the_run(explained_run, capsys,
                                                                       tmp_path):
    from medbench.explain.command import explain_after_test
    from medbench.tracking import Tracker
    from medbench.train import build_datamodule

    results, run_id = explained_run
    cfg = compose_config([f"paths.results_dir={results}", "data=breastmnist", "model=lenet5",
                          "+explain.at_test=true", "+explain.target_layer=nope"])
    tracker = Tracker(f"sqlite:///{results}/mlflow.db", "medbench")
    tracker.run_id = run_id
    name = tracker.client.get_run(run_id).data.tags["best_checkpoint"]
    checkpoint = results / "runs" / run_id / "checkpoints" / name
    explain_after_test(tracker, cfg, create_model("lenet5", 1, 2), build_datamodule(cfg),
                       str(checkpoint), tmp_path)
    err = capsys.readouterr().err
    assert "explain.at_test" in err and "no layer 'nope'" in err and "the run is kept" in err
    assert not (tmp_path / "explain").exists()
