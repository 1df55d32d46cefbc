"""`medbench train` answers the flags a lightning-hydra-template user types (issue 22, point 3)."""

from __future__ import annotations

import pytest
import yaml

from medbench.cli import main
from medbench.hydra_habits import sweep
from medbench.leaderboard.build import build_tables


def test_train_help_lists_the_config_menu(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: medbench train")
    menu = {line.split(":")[0].strip(): line for line in out.splitlines() if line.startswith("  ")}
    assert {"data", "model", "experiment", "debug", "trainer"} <= set(menu)
    assert "breastmnist" in menu["data"] and "fast_dev_run" in menu["debug"]
    # nested presets, as experiment= spells them
    assert "survey/dasgupta2017_multilabel_fcn_vessels" in menu["experiment"]
    assert "search" not in menu  # a tuning group, not a train one


def test_tune_help_lists_the_search_spaces_and_refuses_multirun(capsys):
    assert main(["tune", "--help"]) == 0
    menu = {line.split(":")[0].strip(): line for line in capsys.readouterr().out.splitlines()
            if line.startswith("  ")}
    assert "small_cnn" in menu["search"] and "study" in menu
    assert main(["tune", "-m", "search=small_cnn", "seed=0,1"]) == 1
    err = capsys.readouterr().err.strip()
    assert "takes no -m" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("part", ["job", "all"])
def test_cfg_prints_the_composed_config_and_trains_nothing(part, capsys, results_dir,
                                                           store_untouched):
    assert main(["train", "--cfg", part, "debug=fast_dev_run", "model=lenet5",
                 f"paths.results_dir={results_dir}"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["trainer"]["fast_dev_run"] is True and cfg["choices"]["model"] == "lenet5"
    resolved = str(results_dir) in cfg["tracking"]["uri"]
    assert resolved is (part == "all")
    assert store_untouched()


@pytest.mark.parametrize("args, message", [
    (["--cfg", "hydra"], "--cfg takes one of job, all, got 'hydra'"),
    (["--epochs=3"], "unknown flag '--epochs=3'"),
])
def test_bad_flags_get_one_line(args, message, capsys):
    assert main(["train", *args]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_sweep_is_the_cartesian_product_of_comma_values():
    jobs = sweep(["seed=0,1", "model=lenet5,resnet18_28", "trainer.max_epochs=2"])
    assert jobs == [["seed=0", "model=lenet5", "trainer.max_epochs=2"],
                    ["seed=0", "model=resnet18_28", "trainer.max_epochs=2"],
                    ["seed=1", "model=lenet5", "trainer.max_epochs=2"],
                    ["seed=1", "model=resnet18_28", "trainer.max_epochs=2"]]


def test_multirun_fast_dev_run_trains_one_debug_run_per_seed(data_dir, results_dir,
                                                             mlflow_client, capsys):
    """`-m` with `debug=fast_dev_run` (which saves no checkpoint) ends without a traceback,
    one FINISHED run per value, filed under the `debug` experiment."""
    assert main(["train", "-m", "debug=fast_dev_run", "model=lenet5", "seed=0,1",
                 f"paths.results_dir={results_dir}", "trainer.enable_progress_bar=false"]) == 0
    assert capsys.readouterr().out.count("multirun: ") == 2
    experiment = mlflow_client.get_experiment_by_name("debug")
    runs = mlflow_client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert all("test/auc" in r.data.metrics for r in runs)
    # a short check, not a result: tagged, and no leaderboard row is built from it
    assert {r.data.tags.get("medbench.budget") for r in runs} == {"debug"}
    tables = build_tables(f"sqlite:///{results_dir}/mlflow.db")
    assert tables and all(table.frame.empty for table in tables)


@pytest.mark.parametrize("overlay, key, value", [
    ("fast_dev_run", "fast_dev_run", True), ("limit", "limit_train_batches", 4),
    ("overfit", "overfit_batches", 1),
])
def test_debug_overlays_win_over_the_experiment(overlay, key, value, make_cfg):
    cfg = make_cfg("experiment=drive_unet", f"debug={overlay}")
    assert cfg.trainer[key] == value and cfg.name == "debug"
