"""What a run prints: quiet by default, the libraries' notes back with verbose=true, and the
summary (run id, folders, best epoch, schedule caveat)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from medbench.config import REPO_ROOT
from medbench.legacy import METRICS_BAR
from medbench.repeats import config_hash
from medbench.report import print_summary, schedule_caveat
from medbench.tasks.progress import log_interval

# one line of each kind a plain run printed before: MLflow's new-store setup, Lightning's
# device lines, tip and checkpoint restore, torch's pytree deprecation, the logging interval
NOISE = ("Creating initial MLflow database tables", "GPU available", "litlogger", "LeafSpec",
         "log_every_n_steps", "Restoring states from the checkpoint", "`Trainer.fit` stopped",
         "v_num")


def _train(results: Path, *overrides: str) -> str:
    """``medbench train`` in its own process (warnings print as a user sees them), on a new
    store; stdout and stderr together."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "medbench", "train", "experiment=breastmnist_resnet18",
         "model=lenet5", "trainer.max_epochs=1", f"paths.results_dir={results}", *overrides],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def test_a_run_is_quiet_and_its_summary_says_where_and_which_epoch(tmp_path):
    results = tmp_path / "results"
    out = _train(results)
    client = MlflowClient(f"sqlite:///{results}/mlflow.db")
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    run_id, tags = run.info.run_id, run.data.tags
    assert tags["best_epoch"] == "0"
    score = float(tags["best_score"])
    assert abs(score - run.data.metrics["val/auc"]) < 1e-5
    assert "test metrics of the best-val/auc checkpoint" in out
    assert f"run {run_id}: best epoch 0, val/auc {score:.4f}" in out
    assert f"run folder {results / 'runs' / run_id}" in out
    assert f"{results}/mlartifacts/" in out and "test/auc" in out
    assert "caveat: not the published schedule (1 epoch(s) here, 100 published)" in out
    assert "train/loss:" in out and "val/auc:" in out  # the progress bar's metrics
    assert not [line for line in NOISE if line in out], out

    loud = _train(tmp_path / "verbose", "verbose=true")
    assert [line for line in NOISE if line in loud], loud
    assert "Creating initial MLflow database tables" in loud and "GPU available" in loud
    assert ": best epoch 0, val/auc " in loud and "caveat: " in loud


def test_an_error_inside_a_quiet_run_still_prints(make_cfg, results_dir, capfd):
    from medbench.cli import main

    assert main(["train", "model=lenet5", "model.in_chans=3",
                 f"paths.results_dir={results_dir}"]) == 1
    assert "error: model.in_chans=3 but breastmnist images have 1 channel" in capfd.readouterr().err


def test_a_tuning_study_is_quiet(results_dir, capfd):
    from medbench.tuning.driver import tune

    result = tune(["model=lenet5", "search=optimizer", "trainer.max_epochs=1",
                   "trainer.enable_progress_bar=false", "study.n_trials=1", "study.name=quiet",
                   "study/pruner=none", f"paths.results_dir={results_dir}",
                   f"study.export_dir={results_dir}/tuned"])
    assert result.finished == 1
    out = "".join(capfd.readouterr())
    assert "trial 0: COMPLETE" in out
    for line in ("A new study created", "Trial 0 finished", "GPU available", "litlogger"):
        assert line not in out, out


def test_a_run_without_checkpoint_says_weights_in_memory(make_cfg, mlflow_client, capsys):
    cfg = make_cfg("experiment=breastmnist_resnet18", "debug=fast_dev_run")
    experiment = mlflow_client.create_experiment("debug")
    run_id = mlflow_client.create_run(experiment).info.run_id  # no best_epoch tag
    print_summary(cfg, [{"test/auc": 0.5, "test/acc": 0.7}], [run_id])
    out = capsys.readouterr().out
    assert "test metrics of the weights in memory (no checkpoint)" in " ".join(out.split())
    assert f"run {run_id}: weights in memory (no checkpoint)" in out
    assert f"run folder {Path(cfg.paths.runs_dir) / run_id}" in out
    assert "caveat: not the published schedule (fast_dev_run (one batch); budget=debug)" in out
    assert "0.901" in out  # the published figure beside ours


def test_the_caveat_names_what_differs_from_the_published_schedule(make_cfg):
    assert schedule_caveat(make_cfg("experiment=breastmnist_resnet18")) is None  # 100 epochs
    assert "2 epoch(s) here, 100 published" in schedule_caveat(
        make_cfg("experiment=breastmnist_resnet18", "trainer.max_epochs=2"))
    limit = schedule_caveat(make_cfg("experiment=pneumoniamnist_resnet18", "debug=limit"))
    assert "limit_train_batches=4" in limit and "budget=debug" in limit
    # published figures not trained in epochs (de Chazal's discriminants): no epoch caveat
    assert schedule_caveat(make_cfg("experiment=survey/kiranyaz2016_1d_cnn_ecg")) is None


def test_the_progress_bar_and_verbose_leave_the_config_hash_alone(make_cfg):
    cfg = make_cfg("experiment=breastmnist_resnet18")
    assert cfg.callbacks.progress_bar._target_ == METRICS_BAR
    assert list(cfg.callbacks.progress_bar.metrics) == ["train/loss", "val/auc"]
    plain = cfg.copy()
    plain.callbacks.progress_bar = {"_target_": "lightning.pytorch.callbacks.RichProgressBar"}
    plain.verbose = True
    assert config_hash(plain) == config_hash(cfg)


def test_the_logging_interval_fits_in_one_epoch():
    class Data:
        def __init__(self, batches: int) -> None:
            self.batches = batches

        def train_dataloader(self) -> list[int]:
            return list(range(self.batches))

    trainer = OmegaConf.create({"log_every_n_steps": 50})
    assert log_interval(trainer, Data(5)) == 5
    assert log_interval(trainer, Data(500)) == 50
    trainer.limit_train_batches = 2
    assert log_interval(trainer, Data(500)) == 2
    trainer.limit_train_batches = 0.5
    assert log_interval(trainer, Data(20)) == 10
