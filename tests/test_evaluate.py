"""`medbench evaluate`: a run's selected checkpoint tested on other real data (external
validation) into a new tracked run linked to its source; the same data gives the same metrics;
data the network was not built for is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from medbench.cli import main
from medbench.leaderboard.collect import collect_runs
from medbench.leaderboard.keys import evaluation_only


@pytest.fixture(scope="module")
def source_run(lenet_breastmnist_run):
    """The shared two-epoch BreastMNIST LeNet-5: (results folder, run id, test metrics)."""
    return lenet_breastmnist_run


def _runs(results):
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("medbench").experiment_id
    return {r.info.run_id: r for r in client.search_runs([experiment])}


def test_external_validation_is_a_new_run_linked_to_its_source(source_run, capsys):
    results, source_id, source_metrics = source_run
    before = set(_runs(results))
    flags = [f"paths.results_dir={results}", "trainer.enable_progress_bar=false"]
    assert main(["evaluate", source_id, "data=pneumoniamnist", *flags]) == 0
    out = capsys.readouterr().out
    assert f"run {source_id} evaluated on pneumoniamnist" in out
    assert f"the weights of run {source_id} (its selected checkpoint)" in " ".join(out.split())
    [new_id] = set(_runs(results)) - before
    run = _runs(results)[new_id]
    assert run.info.status == "FINISHED"
    assert run.data.tags["medbench.source_run"] == source_id
    assert run.data.tags["medbench.source_dataset"] == "breastmnist"
    assert run.data.tags["dataset"] == "pneumoniamnist"
    assert run.data.tags["data.n_test"] == "624"  # PneumoniaMNIST's test split, scored whole
    assert run.data.params["trainer.max_epochs"] == "0"
    assert 0.0 <= run.data.metrics["test/auc"] <= 1.0

    # the same data again: the same checkpoint gives the source run's test metrics exactly
    assert main(["evaluate", source_id, *flags]) == 0
    [again] = set(_runs(results)) - before - {new_id}
    metrics = _runs(results)[again].data.metrics
    for key in ("test/auc", "test/acc", "test/loss", "test/ece"):
        assert metrics[key] == pytest.approx(source_metrics[key], abs=1e-6), key

    # the leaderboard files it as an evaluation-only row of the data it was tested on
    runs = collect_runs(f"sqlite:///{results / 'mlflow.db'}")
    evaluated = dict(zip(runs["run_id"], evaluation_only(runs), strict=True))
    assert evaluated[new_id] and evaluated[again] and not evaluated[source_id]


@pytest.fixture(scope="module")
def three_class_manifest(tmp_path_factory, data_dir):
    """60 real BreastMNIST images as PNG files under three made-up labels."""
    folder = tmp_path_factory.mktemp("three_classes")
    images = np.load(data_dir / "medmnist" / "breastmnist.npz")["test_images"][:60]
    rows = ["path,label"]
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i}.png")
        rows.append(f"{i}.png,{'abc'[i % 3]}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"


@pytest.mark.parametrize(("args", "says"), [
    (["data=csv_manifest", "data.manifest={manifest}"],
     "was built for 2 classes (breastmnist); labels has 3"),
    (["data=adrenalmnist3d"], "was built for 2 spatial dimensions (breastmnist); "
                              "adrenalmnist3d has 3"),
    (["data=drive"], "was built for classification task family"),
    (["experiment=breastmnist_resnet18"], "experiment= would replace the run's configuration"),
    (["data=pneumoniamnist", "data.sizee=28"], "Could not override 'data.sizee'"),
])
def test_data_the_network_was_not_built_for_is_one_line(source_run, three_class_manifest,
                                                      capsys, args, says):
    results, source_id, _ = source_run
    before = set(_runs(results))
    args = [a.format(manifest=three_class_manifest) for a in args]
    code = main(["evaluate", source_id, *args, f"paths.results_dir={results}"])
    err = capsys.readouterr().err
    assert code in (1, 2) and err.startswith("error: ") and says in err.splitlines()[0]
    assert code == 2 or len(err.strip().splitlines()) == 1  # 2: Hydra's own, with its hint
    assert set(_runs(results)) == before  # nothing tracked


def test_an_unknown_run_is_one_line(results_dir, capsys):
    assert main(["evaluate", "0" * 32, f"paths.results_dir={results_dir}"]) == 1
    err = capsys.readouterr().err
    assert "run '00000000000000000000000000000000' not found" in err


@pytest.fixture(scope="module")
def odd_test_split(tmp_path_factory, data_dir):
    """51 real BreastMNIST test images as PNG files, their own labels, 11 of them the test
    split: two DDP ranks get 6 each, one item repeated by the sampler's padding."""
    folder = tmp_path_factory.mktemp("odd_split")
    data = np.load(data_dir / "medmnist" / "breastmnist.npz")
    rows = ["path,label,split"]
    for i, (image, label) in enumerate(zip(data["test_images"][:51],
                                           data["test_labels"][:51, 0], strict=True)):
        Image.fromarray(image).save(folder / f"{i}.png")
        rows.append(f"{i}.png,{label},{'train' if i < 30 else 'val' if i < 40 else 'test'}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"


def test_under_ddp_each_test_item_counts_once(source_run, odd_test_split):
    """Two gloo ranks test the checkpoint on an 11-item test split (the sampler pads it to
    12): the metrics are exactly those of one process (they counted the repeat before)."""
    import subprocess
    import sys

    results, source_id, _ = source_run
    data = ["data=csv_manifest", f"data.manifest={odd_test_split}",
            f"paths.results_dir={results}", "trainer.enable_progress_bar=false"]
    before = set(_runs(results))
    assert main(["evaluate", source_id, *data]) == 0
    [alone] = set(_runs(results)) - before
    done = subprocess.run(
        [sys.executable, "-m", "medbench", "evaluate", source_id, *data, "trainer=ddp",
         "trainer.accelerator=cpu", "trainer.devices=2"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [ddp] = set(_runs(results)) - before - {alone}
    runs = _runs(results)
    assert runs[ddp].data.params["trainer.devices"] == "2"
    assert runs[alone].data.tags["data.n_test"] == runs[ddp].data.tags["data.n_test"] == "11"
    one, two = runs[alone].data.metrics, runs[ddp].data.metrics
    keys = [k for k in one if k.startswith("test/") and k != "test/loss"]
    assert len(keys) >= 10
    for key in keys:
        assert two[key] == pytest.approx(one[key], abs=1e-6), key


def test_predict_applies_the_run_to_new_image_files(source_run, tmp_path, data_dir, capsys):
    """`medbench predict` on real BreastMNIST test images saved as PNG files (a folder, a CSV
    manifest, one image): the run's own pipeline, so each file's probabilities are those the
    run's test gave the same image."""
    import pandas as pd

    results, source_id, _ = source_run
    images = np.load(data_dir / "medmnist" / "breastmnist.npz")["test_images"][:12]
    (tmp_path / "new" / "more").mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "new" / ("more" if i % 2 else ".") / f"{i:02d}.png")
    tested = pd.read_csv(results / "runs" / source_id / "predictions_test.csv").set_index("index")
    out = tmp_path / "predicted.csv"
    assert main(["predict", source_id, str(tmp_path / "new"), "--out", str(out),
                 f"paths.results_dir={results}"]) == 0
    assert "12 prediction(s)" in capsys.readouterr().out
    table = pd.read_csv(out)
    assert list(table.columns) == ["sample_id", "predicted", "prob_malignant",
                                   "prob_normal, benign"]
    assert len(table) == 12 and table["sample_id"].iloc[1] == "02.png"
    for sample, prob in zip(table["sample_id"], table["prob_normal, benign"], strict=True):
        assert prob == pytest.approx(tested.loc[int(Path(sample).stem), "prob_1"], abs=1e-5)
    assert set(table["predicted"]) <= {"malignant", "normal, benign"}

    (tmp_path / "list.csv").write_text("path\nnew/02.png\nnew/more/05.png\n")
    assert main(["predict", source_id, str(tmp_path / "list.csv"), "--out", str(out),
                 f"paths.results_dir={results}"]) == 0
    assert pd.read_csv(out)["sample_id"].tolist() == ["new/02.png", "new/more/05.png"]
    assert main(["predict", source_id, str(tmp_path / "new" / "00.png"),
                 f"paths.results_dir={results}"]) == 0  # default: under the results folder
    assert (results / "predictions" / source_id / "00.csv").is_file()


def test_a_calibrated_run_predicts_and_serves_with_its_temperature(results_dir, tmp_path,
                                                                   data_dir, capsys):
    """A run tested with runner.calibration=temperature: predict and the registered model give
    the probabilities its test gave (logits / T), not the uncalibrated ones."""
    import mlflow
    import pandas as pd

    from medbench.config import compose_config
    from medbench.train import train_run

    cfg = compose_config([f"paths.results_dir={results_dir}", "trainer.enable_progress_bar=false",
                          "data=breastmnist", "model=lenet5", "trainer.max_epochs=1",
                          "runner.calibration=temperature"])
    run_id, metrics = train_run(cfg)
    assert metrics["calibration/temperature"] != 1.0
    tested = pd.read_csv(results_dir / "runs" / run_id / "predictions_test.csv").set_index("index")
    images = np.load(data_dir / "medmnist" / "breastmnist.npz")["test_images"][:6]
    (tmp_path / "new").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "new" / f"{i}.png")
    out = tmp_path / "predicted.csv"
    assert main(["predict", run_id, str(tmp_path / "new"), "--out", str(out),
                 f"paths.results_dir={results_dir}"]) == 0
    table = pd.read_csv(out)
    expected = [tested.loc[int(Path(s).stem), "prob_1"] for s in table["sample_id"]]
    assert table["prob_normal, benign"].tolist() == pytest.approx(expected, abs=1e-5)
    assert main(["register", run_id, "--name", "calibrated", f"paths.results_dir={results_dir}"]
                ) == 0
    capsys.readouterr()
    # the version's own artifacts (no global tracking or registry URI set: other tests' own)
    source = MlflowClient(f"sqlite:///{results_dir / 'mlflow.db'}").get_model_version(
        "calibrated", "1").source
    served = mlflow.pyfunc.load_model(source).predict(images)
    assert served["prob_normal, benign"].tolist() == pytest.approx(
        tested.loc[range(6), "prob_1"].tolist(), abs=1e-5)


def test_predict_refuses_what_the_network_was_not_built_for(source_run, tmp_path, capsys):
    results, source_id, _ = source_run
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "big.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "nopath.csv").write_text("file\nbig.png\n")
    cases = [(tmp_path / "big.png", "big.png gives an input of shape [1, 64, 64]"),
             (tmp_path / "empty", "no ['.bmp', '.jpeg'"),
             (tmp_path / "nopath.csv", "has no 'path' column (columns: file)"),
             (tmp_path / "missing", "missing not found")]
    for where, says in cases:
        assert main(["predict", source_id, str(where), f"paths.results_dir={results}"]) == 1
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
    from medbench.errors import ConfigError
    from medbench.family import get_family

    with pytest.raises(ConfigError, match="the localization family writes no predictions yet"):
        get_family("localization").prediction_columns(None, None)
