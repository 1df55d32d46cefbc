"""End-to-end training on the real BreastMNIST, checked through the MLflow run it produced."""

import importlib.util
import os

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from medbench.config import REPO_ROOT
from medbench.models import create_model
from medbench.provenance import describe_machine, machine_tags
from medbench.report import print_summary
from medbench.train import train


def test_breastmnist_run_is_fully_tracked(make_cfg, mlflow_client, only_run, results_dir):
    cfg = make_cfg("experiment=breastmnist_resnet18", "trainer.max_epochs=3", "seed=3")
    metrics = train(cfg)
    run = only_run()
    assert run.info.status == "FINISHED"
    tags, params = run.data.tags, run.data.params
    assert (tags["dataset"], tags["model"], tags["seed"]) == ("breastmnist", "resnet18_28", "3")
    assert tags["label_type"] == "binary" and len(tags["git_commit"]) >= 7
    assert params["model.name"] == "resnet18_28" and params["trainer.max_epochs"] == "3"
    assert not any("PATH" in key or "TOKEN" in key.upper() for key in params)
    for key in ("acc", "auc", "sensitivity", "specificity", "precision", "f1", "kappa"):
        assert run.data.metrics[f"test/{key}"] == metrics[f"test/{key}"]
    # what the leaderboard reads: cost, timings and the configuration's group key
    assert run.data.metrics["model/params"] == 11_168_706  # resnet18_28, 1 channel, 2 classes
    assert run.data.metrics["model/macs"] > 4e8
    assert run.data.metrics["time/fit_s"] > 0 and run.data.metrics["time/test_ms_per_image"] > 0
    # the network alone, within the whole test loop (which also loads the images)
    assert 0 < run.data.metrics["time/infer_ms_per_image"] <= run.data.metrics[
        "time/test_ms_per_image"]
    assert tags["medbench.kind"] == "run" and len(tags["medbench.config_hash"]) == 12
    # the machine it ran on, as benchmark tables cite it
    assert tags["machine.accelerator"] == "cpu" and tags["machine.cores"] == str(os.cpu_count())
    assert tags["machine.torch"] == torch.__version__
    assert describe_machine(tags).startswith("CPU only; ")
    history = mlflow_client.get_metric_history(run.info.run_id, "val/auc")
    assert len(history) == 3  # one value per epoch
    artifacts = {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "confusion_matrix.png", "roc.png", "predictions_test.csv"} <= artifacts
    # MLflow's UI opens the experiment in its model-training view, not the GenAI one
    experiment = mlflow_client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # on disk: the selected checkpoint only, weights only; no copy among the artifacts, and
    # the resume state (last.ckpt) gone once the run FINISHED
    assert "checkpoints" not in artifacts
    folder = results_dir / "runs" / run.info.run_id / "checkpoints"
    [ckpt] = folder.iterdir()
    assert ckpt.name == tags["best_checkpoint"] and ckpt.stat().st_size < 50e6  # 11.2M fp32

    # the checkpoint tested is the one with the best val AUC (ties: the first)...
    best_epoch = int(np.argmax([m.value for m in sorted(history, key=lambda m: m.step)]))
    assert int(tags["best_epoch"]) == best_epoch
    # ...and the test figures are those of that checkpoint, recomputed here from its file
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert "optimizer_states" not in saved and "callbacks" not in saved
    state = saved["state_dict"]
    net = create_model("resnet18_28", 1, 2)
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
    net.eval()
    from medbench.data.medmnist import MedMNISTDataModule

    dm = MedMNISTDataModule("breastmnist")
    with torch.no_grad():
        probs = torch.cat([net(b["image"]).softmax(1) for b in dm.test_dataloader()])
    labels = dm.splits["test"][1]
    assert abs(roc_auc_score(labels, probs[:, 1]) - metrics["test/auc"]) < 1e-5

    # per-sample predictions: every test image once, consistent with the logged AUC
    csv = mlflow_client.download_artifacts(run.info.run_id, "predictions_test.csv",
                                           str(results_dir))
    frame = pd.read_csv(csv)
    assert list(frame.columns) == ["index", "label", "prob_0", "prob_1", "sample_id"]
    assert frame["index"].tolist() == list(range(156))
    assert frame["sample_id"].tolist() == list(range(156))  # arrays: the index is the id
    assert (frame["label"].to_numpy() == labels).all()
    assert abs(roc_auc_score(frame["label"], frame["prob_1"]) - metrics["test/auc"]) < 1e-4

    # the MedMNIST protocol report reads the run back: its figures, the published row and
    # the machine the run recorded
    path = REPO_ROOT / "benchmark" / "medmnist_protocol.py"
    spec = importlib.util.spec_from_file_location("medmnist_protocol", path)
    protocol = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(protocol)
    [row] = [line for line in protocol.report(mlflow_client.tracking_uri, experiment.name)
             .splitlines() if line.startswith("| breastmnist_resnet18")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:3] == ["breastmnist_resnet18 (init=pytorch)", "3", "1"]
    assert cells[3].startswith(f"{metrics['test/auc']:.3f}") and cells[4] == "0.901"
    assert cells[-1] == describe_machine(tags)


def test_same_seed_same_metrics_on_cpu(make_cfg, results_dir):
    overrides = ("data=breastmnist", "model=lenet5", "trainer.max_epochs=2", "seed=7",
                 "tracking.log_checkpoint=false")
    first = train(make_cfg(*overrides))
    second = train(make_cfg(*overrides))
    assert first == second
    other = train(make_cfg(*overrides[:-2], "seed=8", "tracking.log_checkpoint=false"))
    assert other != first


def test_user_folder_multiclass_with_augmentation_sampler_and_weights(make_cfg, tmp_path,
                                                                      only_run):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(90):
        cls = i % 3
        pixels = (rng.random((20, 20, 3)) * 60 + cls * 80).astype(np.uint8)
        folder = tmp_path / "imgs" / f"class{cls}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    metrics = train(make_cfg(
        "data=image_folder", f"data.root={tmp_path / 'imgs'}", "data.in_chans=3",
        "data.normalize.mean=[0.5,0.5,0.5]", "data.normalize.std=[0.5,0.5,0.5]",
        "data.sampler=weighted", "runner.class_weighting=balanced", "augment=survey",
        "model=lenet5", "trainer.max_epochs=3", "monitor=val/loss", "data.batch_size=16"))
    run = only_run()
    assert run.info.status == "FINISHED" and run.data.tags["label_type"] == "multiclass"
    assert 0.0 <= metrics["test/auc"] <= 1.0 and "test/kappa" in metrics


@pytest.mark.parametrize("label_type", ["multilabel", "ordinal"])
def test_manifest_multilabel_and_ordinal_train(label_type, make_cfg, tmp_path, only_run,
                                               mlflow_client):
    from PIL import Image

    rng = np.random.default_rng(1)
    rows = ["path,label"]
    for i in range(60):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        label = ["a", "b", "a|b"][i % 3] if label_type == "multilabel" else str(i % 4)
        rows.append(f"{i}.png,{label}")
    (tmp_path / "manifest.csv").write_text("\n".join(rows))
    metrics = train(make_cfg("data=csv_manifest", f"data.manifest={tmp_path / 'manifest.csv'}",
                             f"data.label_type={label_type}", "model=lenet5",
                             "trainer.max_epochs=2", "runner.class_weighting=balanced"))
    run = only_run()
    assert run.info.status == "FINISHED" and run.data.tags["label_type"] == label_type
    assert {"test/auc", "test/kappa", "test/f1"} <= set(metrics)
    frame = pd.read_csv(mlflow_client.download_artifacts(run.info.run_id, "predictions_test.csv",
                                                         str(tmp_path)))
    assert len(frame) == 12  # 20% of 60
    # each prediction names its file (relative to the manifest's folder) and its true label
    by_file = dict(row.split(",", 1) for row in rows[1:])
    assert all((tmp_path / name).is_file() for name in frame["sample_id"])
    if label_type == "ordinal":
        assert [int(by_file[name]) for name in frame["sample_id"]] == frame["label"].tolist()
    expected = {"label_0", "label_1", "prob_0", "prob_1"} if label_type == "multilabel" else {
        "label", "prob_0", "prob_3"}
    assert expected <= set(frame.columns)



def test_transfer_from_a_run_then_ensemble_evaluation(make_cfg, mlflow_client, results_dir):
    """Survey 4.2.5 (fine-tune from a previous run) and 4.1.1/6.2.2 (ensemble, test only)."""
    base = ("data=breastmnist", "model=lenet5", "trainer.max_epochs=1")
    first = train(make_cfg(*base, "seed=1"))
    [source] = mlflow_client.search_runs([e.experiment_id for e in
                                          mlflow_client.search_experiments()])
    run_id = source.info.run_id
    tuned = train(make_cfg(*base, "seed=2", f"model.pretrained_path=run:{run_id}",
                           "runner.optimizer.lr=0"))  # lr 0: the transferred weights, unchanged
    assert tuned["test/auc"] == pytest.approx(first["test/auc"], abs=1e-6)

    ckpt = next((results_dir / "runs" / run_id / "checkpoints").glob("best-*.ckpt"))
    members = f"[{{name: lenet5, checkpoint: '{ckpt}'}}, {{name: lenet5, checkpoint: '{ckpt}'}}]"
    ensembled = train(make_cfg("data=breastmnist", "model=ensemble", "trainer.max_epochs=0",
                               f"model.kwargs.members={members}"))
    assert ensembled["test/auc"] == pytest.approx(first["test/auc"], abs=1e-6)


def test_selected_checkpoint_is_read_in_place_else_from_its_artifact(make_cfg, mlflow_client,
                                                                   results_dir, tmp_path):
    """run:<id> reads the run folder's best checkpoint; on a machine without that folder, the
    artifact copy that tracking.log_checkpoint=true uploads, and without one a clear error."""
    from medbench.errors import ConfigError
    from medbench.tracking import Tracker

    base = ("data=breastmnist", "model=lenet5", "trainer.max_epochs=1")
    train(make_cfg(*base, "tracking.log_checkpoint=true"))
    train(make_cfg(*base, "seed=1"))
    ids = [e.experiment_id for e in mlflow_client.search_experiments()]
    copied, alone = mlflow_client.search_runs(ids, order_by=["attributes.start_time ASC"])
    runs_dir = results_dir / "runs"
    tracker = Tracker(mlflow_client.tracking_uri, "unused")
    local = tracker.selected_checkpoint(copied.info.run_id, tmp_path / "dl", runs_dir)
    assert local == runs_dir / copied.info.run_id / "checkpoints" / "best-epoch000.ckpt"
    content = local.read_bytes()
    for run in (copied, alone):  # the folders are elsewhere: only the artifact is left
        (runs_dir / run.info.run_id / "checkpoints" / "best-epoch000.ckpt").unlink()
    fetched = tracker.selected_checkpoint(copied.info.run_id, tmp_path / "dl", runs_dir)
    assert fetched.is_relative_to(tmp_path / "dl") and fetched.read_bytes() == content
    with pytest.raises(ConfigError, match="has no selected checkpoint.*log_checkpoint=true"):
        tracker.selected_checkpoint(alone.info.run_id, tmp_path / "dl", runs_dir)


def test_existing_experiment_gets_the_model_training_kind(mlflow_client):
    from medbench.tracking import Tracker

    made = mlflow_client.create_experiment("made-elsewhere")  # before medbench set the tag
    assert "mlflow.experimentKind" not in mlflow_client.get_experiment(made).tags
    assert Tracker(mlflow_client.tracking_uri, "made-elsewhere").experiment_id() == made
    tags = mlflow_client.get_experiment(made).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    chosen = mlflow_client.create_experiment("chosen", tags={"mlflow.experimentKind": "automl"})
    Tracker(mlflow_client.tracking_uri, "chosen").experiment_id()
    assert mlflow_client.get_experiment(chosen).tags["mlflow.experimentKind"] == "automl"


@pytest.mark.parametrize("runner", ["deep_features", "deep_features_svm"])
def test_deep_features_with_classical_classifier(runner, make_cfg, mlflow_client):
    """Survey 4.1.1 / 4.4.2: features of a trained run's CNN, then RF or SVM, on BreastMNIST."""
    train(make_cfg("data=breastmnist", "model=lenet5", "trainer.max_epochs=1"))
    [source] = mlflow_client.search_runs([e.experiment_id for e in
                                          mlflow_client.search_experiments()])
    metrics = train(make_cfg("data=breastmnist", "model=lenet5", f"runner={runner}",
                             f"model.pretrained_path=run:{source.info.run_id}",
                             "runner.layers=[3,10]"))
    runs = mlflow_client.search_runs([e.experiment_id for e in
                                      mlflow_client.search_experiments()],
                                     "tags.runner = 'deep_features'")
    assert [r.info.status for r in runs] == ["FINISHED"]
    assert runs[0].data.tags["features.dim"] == str(16 + 84)  # conv2 maps + fc2 units
    assert 0.5 < metrics["test/auc"] <= 1.0 and "val/auc" in metrics
    artifacts = {a.path for a in mlflow_client.list_artifacts(runs[0].info.run_id)}
    assert {"predictions_test.csv", "roc.png", "confusion_matrix.png"} <= artifacts


def test_two_stream_on_two_views_of_real_breastmnist(make_cfg, only_run):
    """Survey 4.5.2: the image and its CLAHE copy, one stream each, scores fused."""
    metrics = train(make_cfg("data=breastmnist", "model=two_stream_fused",
                             "augment=two_view_clahe", "trainer.max_epochs=2"))
    run = only_run()
    assert run.info.status == "FINISHED" and run.data.params["model.kwargs.streams"] == "2"
    assert 0.0 <= metrics["test/auc"] <= 1.0


def test_machine_tags_name_the_device_lightning_uses(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert machine_tags("auto")["machine.accelerator"] == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H200")
    assert machine_tags("cpu")["machine.accelerator"] == "cpu"
    tags = machine_tags("gpu")
    assert tags["machine.accelerator"] == "NVIDIA H200 (2 visible)"
    assert describe_machine(tags).startswith("NVIDIA H200 (2 visible); ")
    assert describe_machine({}) == "not recorded"  # a run logged before the tags existed


def test_positive_class_by_name_swaps_sensitivity_and_specificity(make_cfg, capsys,
                                                                  mlflow_client):
    """BreastMNIST's label 1 is "normal, benign": data.positive_class=malignant makes the
    malignant class the positive one; AUC and ACC do not move, sensitivity and specificity
    swap, and the choice is printed and tagged."""
    base = ("data=breastmnist", "model=lenet5", "debug=fast_dev_run", "seed=3")
    default = train(make_cfg(*base))
    malignant = train(make_cfg(*base, "data.positive_class=malignant"))
    for key in ("test/auc", "test/acc"):
        assert malignant[key] == pytest.approx(default[key], abs=1e-6)
    assert malignant["test/sensitivity"] == pytest.approx(default["test/specificity"], abs=1e-6)
    assert malignant["test/specificity"] == pytest.approx(default["test/sensitivity"], abs=1e-6)
    runs = mlflow_client.search_runs([mlflow_client.get_experiment_by_name("debug").experiment_id],
                                     order_by=["attributes.start_time ASC"])
    assert [r.data.tags["data.positive_class"] for r in runs] == ["1", "0"]
    assert [r.data.tags["data.positive_label"] for r in runs] == ["normal, benign", "malignant"]
    print_summary(make_cfg(*base), [malignant], [runs[1].info.run_id])  # what a user reads
    assert "positive class: 'malignant' (index 0" in capsys.readouterr().out

