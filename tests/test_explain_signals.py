"""Saliency maps of signals (N, C, L) and volumes (N, C, D, H, W) through MONAI: a 1D CNN
trained briefly on real MIT-BIH beats, maps of the beat's length, the randomisation check,
`medbench explain` end to end on the 1D run, its one-line refusals, and real 3D volumes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from medbench.cli import main
from medbench.config import compose_config
from medbench.errors import ConfigError
from medbench.explain.overlays import overlay
from medbench.explain.saliency import methods_for, saliency_maps, target_layer_name
from medbench.explain.sanity import (
    cascading_randomisation,
    confidence_change,
    mean_rank_correlation,
    parameterised_layers,
    randomised,
)
from medbench.explain.targets import targets_for
from medbench.models import create_model
from medbench.models.registry import load_pretrained
from medbench.train import train_run

RECORDS = ["data.train_records=[106]", "data.val_records=[100]", "data.test_records=[119]"]


@pytest.fixture(scope="module")
def explained_beats(tmp_path_factory, mlflow_template):
    """One epoch of Kiranyaz's 1D CNN on record 106's beats (N and V), tested on record 119,
    its test beats explained once tested: (results folder, run id)."""
    results = tmp_path_factory.mktemp("explain_1d") / "results"
    results.mkdir()
    shutil.copyfile(mlflow_template, results / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:  # the archive unpacks into this module's cache
        patch.setenv("MEDBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        cfg = compose_config([
            f"paths.results_dir={results}", "trainer.enable_progress_bar=false", "data=mitbih",
            "model=kiranyaz_cnn1d", "trainer.max_epochs=1", *RECORDS, "data.batch_size=64",
            "runner.optimizer.lr=0.003", "runner.scheduler=null", "monitor=val/jkappa",
            "runner.channels_last=false", "+explain.at_test=true", "+explain.top=3"])
        run_id, _ = train_run(cfg)
        yield results, run_id


def _beats_and_net(results, run_id, count: int = 32):
    from medbench.data.ecg import MITBIHDataModule

    client = MlflowClient(f"sqlite:///{results}/mlflow.db")
    net = create_model("kiranyaz_cnn1d", 1, 5)
    name = client.get_run(run_id).data.tags["best_checkpoint"]
    load_pretrained(net, results / "runs" / run_id / "checkpoints" / name, strict=True)
    module = MITBIHDataModule(train_records=[106], val_records=[100], test_records=[119])
    batch = next(iter(module.test_dataloader()))
    return batch["image"][:count], batch["target"][:count], net.eval()


def test_a_1d_run_explains_its_beats_at_test_time(explained_beats):
    results, run_id = explained_beats
    client = MlflowClient(f"sqlite:///{results}/mlflow.db")
    metrics = client.get_run(run_id).data.metrics
    assert metrics["test/kappa"] > 0.5  # a model that learnt N from V, explained below
    for method in ("gradcam", "gradcam_pp"):  # the default methods of a signal
        assert -1 <= metrics[f"explain/{method}/rank_corr_randomized"] < 0.5
        assert np.isfinite(metrics[f"explain/{method}/confidence_change"])
        files = [a.path for a in client.list_artifacts(run_id, f"explain/{method}")]
        assert len(files) == 6 and all(f.endswith(".png") for f in files)  # 3 confident, 3 worst
        local = client.download_artifacts(run_id, files[0], str(results))
        assert Image.open(local).size == (800, 300)  # the signal plot over its map's band
    assert not any(key.startswith("explain/scorecam") for key in metrics)
    report = json.loads((results / "runs" / run_id / "explain" / "scores.json").read_text())
    assert report["input_shape"] == [1, 256] and report["target_layer"] == "7"


def test_beat_maps_have_the_signals_length_and_randomisation_separates_them(explained_beats):
    beats, _, net = _beats_and_net(*explained_beats)
    layer = target_layer_name(net, beats[:1])
    assert layer == "7"  # the last tanh before the pooling to one value per map
    targets = targets_for("classification")
    map_targets = targets.map_targets(net(beats).argmax(1))
    for method in ("gradcam", "gradcam_pp"):
        maps = saliency_maps(net, method, layer, beats, map_targets)
        assert maps.shape == (32, 256) and 0 <= maps.min() and maps.max() <= 1
        again = saliency_maps(net, method, layer, beats, map_targets)
        assert mean_rank_correlation(maps, again) == pytest.approx(1.0)
        alone = saliency_maps(net, method, layer, beats[3:4], map_targets[3:4])
        np.testing.assert_allclose(alone[0], maps[3], atol=1e-5)  # each item its own target
        layers = parameterised_layers(net)
        stages = cascading_randomisation(
            net, lambda model, m=method: saliency_maps(model, m, layer, beats, map_targets),
            maps, 3)
        assert stages[-1]["layers"] == len(layers)
        assert stages[-1]["rank_corr"] < 0.5, stages  # every layer re-initialised
        same = saliency_maps(randomised(net, layers, 3), method, layer, beats, map_targets)
        assert np.array_equal(same, saliency_maps(randomised(net, layers, 3), method, layer,
                                                  beats, map_targets))
        faithful = confidence_change(net, beats, maps, targets.faithfulness_targets(
            net(beats).argmax(1)))
        assert np.isfinite(faithful)
    assert not any(m._forward_hooks or m._backward_hooks for m in net.modules())  # released
    assert overlay(beats[0], maps[0]).shape == (300, 800, 3)


def test_medbench_explain_end_to_end_on_a_1d_run(explained_beats, capsys):
    results, run_id = explained_beats
    code = main(["explain", run_id, f"paths.results_dir={results}",
                 "explain.methods=[gradcam++]", "explain.indices=[0,5]", "explain.top=1",
                 "explain.target_layer=net.4", "explain.sanity_stages=2"])
    out = capsys.readouterr().out
    assert code == 0 and "gradcam_pp" in out and "gradcam " not in out
    client = MlflowClient(f"sqlite:///{results}/mlflow.db")
    files = {a.path for a in client.list_artifacts(run_id, "explain/gradcam_pp")}
    assert {"explain/gradcam_pp/chosen_00000.png", "explain/gradcam_pp/chosen_00005.png"} <= files
    report = json.loads((results / "runs" / run_id / "explain" / "scores.json").read_text())
    assert report["target_layer"] == "4" and list(report["methods"]) == ["gradcam_pp"]


@pytest.mark.parametrize("args, says", [
    (["explain.methods=[scorecam]"], "explain.methods: scorecam is not available for (N, C, L)"),
    (["explain.crop=[300]"], "explain.crop=[300]: expected 1 size(s) from 1 to the test "
                             "items' [256]"),
    (["explain.target_layer=net.8"], "'net.8' gives no (N, C, L) feature map"),
])
def test_bad_input_on_a_1d_run_is_one_line_and_exit_1(explained_beats, capsys, args, says):
    results, run_id = explained_beats
    code = main(["explain", run_id, *args, f"paths.results_dir={results}", "explain.top=0",
                 "explain.indices=[0]"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and says in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_signal_model_without_a_1d_feature_map_is_refused():
    """The CNN-LSTM's convolutions run on time-frequency windows (4D, a batch per window): no
    map of the signal's samples to take."""
    net = create_model("cnn_lstm", 1, 2)
    with pytest.raises(ConfigError, match=r"no layer with a \(N, C, L\) feature map"):
        target_layer_name(net, torch.zeros(1, 1, 720))


def test_volumes_are_explained_by_monai_with_a_middle_slice_overlay(data_dir):
    from medbench.data.medmnist3d import MedMNIST3DDataModule

    volumes = next(iter(MedMNIST3DDataModule("adrenalmnist3d", batch_size=2,
                                             eval_batch_size=2).test_dataloader()))["image"]
    assert volumes.shape == (2, 1, 28, 28, 28)
    torch.manual_seed(0)
    net = create_model("resnet18_3d", 1, 2).eval()
    layer = target_layer_name(net, volumes[:1])
    assert methods_for(None, volumes) == ["gradcam", "gradcam_pp"]
    with pytest.raises(ConfigError, match=r"ablationcam is not available for \(N, C, D, H, W\)"):
        methods_for(["gradcam", "ablationcam"], volumes)
    targets = targets_for("classification").map_targets(net(volumes).argmax(1))
    maps = saliency_maps(net, "gradcam", layer, volumes, targets)
    assert maps.shape == (2, 28, 28, 28) and 0 <= maps.min() and maps.max() <= 1
    assert overlay(volumes[0], maps[0]).shape == (28, 28, 3)
