"""Bad input: one clear line on stderr, a non-zero exit, and the MLflow run marked FAILED."""

import numpy as np
import pytest

from medbench.cli import main


@pytest.fixture
def run_cli(results_dir, capsys, mlflow_client):
    def run(*overrides):
        code = main(["train", f"paths.results_dir={results_dir}",
                     "trainer.enable_progress_bar=false", "trainer.max_epochs=1", *overrides])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 1 and len(errors) == 1 and "Traceback" not in err, err
        runs = mlflow_client.search_runs(
            [e.experiment_id for e in mlflow_client.search_experiments()])
        assert [r.info.status for r in runs] == ["FAILED"]
        assert runs[0].data.tags["error"].split(": ", 1)[1] == errors[0].removeprefix("error: ")
        return errors[0]

    return run


def _npz(path, labels=(0, 1), corrupt=False):
    if corrupt:
        path.write_bytes(b"PK\x03\x04 truncated")
        return
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = np.zeros((len(labels), 28, 28), np.uint8)
        arrays[f"{split}_labels"] = np.array(labels).reshape(-1, 1)
    np.savez(path, **arrays)


def test_missing_data_file(run_cli, tmp_path):
    line = run_cli(f"data.root={tmp_path}", "data.download=false")
    assert "breastmnist.npz not found in" in line and str(tmp_path) in line


def test_corrupt_npz(run_cli, tmp_path):
    _npz(tmp_path / "breastmnist.npz", corrupt=True)
    line = run_cli(f"data.root={tmp_path}")
    assert "breastmnist.npz is not a readable .npz" in line


def test_unknown_model_name_suggests(run_cli):
    line = run_cli("model.name=resnt18")
    assert "unknown model 'resnt18'; did you mean 'resnet18'" in line


def test_unknown_dataset_suggests(run_cli):
    line = run_cli("data.flag=breastmnst")
    assert "unknown MedMNIST 2D dataset 'breastmnst'; did you mean 'breastmnist'" in line


def test_wrong_channel_count(run_cli):
    line = run_cli("model.in_chans=3")
    assert "model.in_chans=3 but breastmnist images have 1 channel(s)" in line


def test_labels_out_of_range(run_cli, tmp_path):
    _npz(tmp_path / "breastmnist.npz", labels=(0, 1, 4))
    line = run_cli(f"data.root={tmp_path}")
    assert "labels span [0, 4]" in line and "2 classes" in line


def test_non_finite_loss(run_cli):
    line = run_cli("model=lenet5", "runner.optimizer._target_=torch.optim.SGD",
                   "runner.optimizer.lr=1e36")
    assert "training loss is inf at epoch 0" in line and "lower runner.optimizer.lr" in line


def test_model_too_small_for_input(run_cli):
    line = run_cli("model=densenet121")
    assert "needs inputs of at least 29 px, got 28 px: set data.resize=29" in line


def test_unknown_monitor_is_refused_before_any_run(results_dir, capsys):
    code = main(["train", f"paths.results_dir={results_dir}", "monitor=val/aucc"])
    assert code == 1 and "monitor: 'val/aucc' is not a validation metric" in capsys.readouterr().err


def test_console_script_exit_code_and_single_line(results_dir):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "medbench.cli", "train", f"paths.results_dir={results_dir}",
         "model.name=resnt18"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown model 'resnt18'")
    assert "Traceback" not in proc.stderr


def test_unknown_class_weighting(run_cli):
    line = run_cli("runner.class_weighting=inverse")
    assert "runner.class_weighting: expected null or 'balanced', got 'inverse'" in line


def test_pretrained_run_not_found(run_cli):
    line = run_cli("model.pretrained_path=run:0123abcd")
    assert "run '0123abcd' not found in" in line


def test_unknown_runner_suggests_before_any_run(results_dir, capsys, store_untouched):
    code = main(["train", f"paths.results_dir={results_dir}", "runner.name=lightnin"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert ("unknown runner 'lightnin' for classification; did you mean 'lightning'? (known: "
            "lightning, deep_features, semi_supervised)") in err
    assert store_untouched()  # refused before a run was opened


def test_tracking_uri_must_be_a_uri(results_dir, capsys):
    code = main(["train", f"paths.results_dir={results_dir}", "tracking.uri=results/mlflow.db"])
    err = capsys.readouterr().err
    assert code == 1 and "tracking.uri: 'results/mlflow.db' is not a URI" in err


def test_catalog_of_bad_inputs_names_real_tests():
    """docs/bad_inputs.md: every row's test exists, and the catalog has at least 25 rows."""
    from medbench.config import REPO_ROOT

    rows = [line for line in (REPO_ROOT / "docs" / "bad_inputs.md").read_text().splitlines()
            if line.startswith("| ") and "`tests/" in line]
    assert len(rows) >= 25
    for row in rows:
        node = row.split("`tests/")[1].split("`")[0]
        path, name = node.split("::")
        source = (REPO_ROOT / "tests" / path).read_text()
        assert f"def {name.split('[')[0]}(" in source, node


def test_cross_validation_settings(run_cli):
    assert "cv.folds: expected an integer >= 2 or null, got 1" in run_cli("cv.folds=1")


def test_cross_validation_fold_out_of_range(run_cli):
    assert "cv.fold: expected an integer in 0..2, got 3" in run_cli("cv.folds=3", "cv.fold=3")


def test_survey_entry_not_runnable_yet_refuses_to_train(results_dir, capsys, store_untouched):
    code = main(["train", "experiment=survey/zilly2017_greedy_boosted_cnn_optic_disc",
                 f"paths.results_dir={results_dir}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("error: survey entry 'zilly2017_greedy_boosted_cnn_optic_disc' is not "
                             "runnable yet: the paper's design")
    assert store_untouched()  # refused before any run was opened


def test_reproduce_unknown_selector_and_leaderboard_bad_uri(capsys):
    assert main(["reproduce", "tabel5"]) == 1
    assert "'tabel5' is no survey id, section, table or 'all'; did you mean table5" in (
        capsys.readouterr().err)
    assert main(["leaderboard", "--uri", "results/mlflow.db"]) == 1
    assert "tracking URI 'results/mlflow.db' is not a URI" in capsys.readouterr().err


def test_mc_dropout_without_dropout_for_segmentation_is_one_line(run_cli, data_dir):
    line = run_cli("experiment=drive_unet", "runner.uncertainty=mc_dropout",
                   "data.max_images={train: 4, test: 2}")
    assert line == ("error: runner.uncertainty: 'mc_dropout' needs dropout layers and unet "
                    "has none (use 'tta', or a model with dropout)")
