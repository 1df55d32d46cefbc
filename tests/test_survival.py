"""Crash and resume: kill -9 a real training, clean up its run, continue it to the same metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from medbench.cli import main
from medbench.config import REPO_ROOT
from medbench.errors import ConfigError
from medbench.train import train

ARGS = ["model=lenet5", "data.batch_size=4", "trainer.max_epochs=5", "seed=11",
        "trainer.enable_progress_bar=false", "runner.optimizer.lr=0.003"]


def start(results_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "medbench", "train", *ARGS, f"paths.results_dir={results_dir}",
         *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT)


def test_killed_training_resumes_into_the_same_run_with_the_same_metrics(make_cfg, results_dir,
                                                                        tmp_path, capsys):
    proc = start(results_dir)
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill -9 during the epoch after the second checkpoint
        time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read()
        try:
            [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
        except Exception:  # no store or run yet
            continue
        if len(client.get_metric_history(run.info.run_id, "val/auc")) >= 2:
            break
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "RUNNING"  # the dead process could not end it
    last = results_dir / "runs" / run.info.run_id / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] < 4  # killed before the end

    # the run whose process died is marked KILLED, with the reason
    assert main(["runs", "cleanup", f"paths.results_dir={results_dir}"]) == 0
    assert "1 run(s) marked KILLED" in capsys.readouterr().out
    killed = client.get_run(run.info.run_id)
    assert killed.info.status == "KILLED" and "died" in killed.data.tags["error"]

    with pytest.raises(ConfigError, match=r"max_epochs=5, this command has .*max_epochs=6 "
                                          r"\(2 key\(s\) differ\)"):
        train(make_cfg(*ARGS[:2], "trainer.max_epochs=6", *ARGS[3:], "resume=last"))
    resumed = train(make_cfg(*ARGS, "resume=last"))
    [again] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    epochs = {m.step for m in client.get_metric_history(run.info.run_id, "epoch")}
    assert len(epochs) >= 5
    # FINISHED: nothing left to resume, the full state is deleted; the selected checkpoint
    # stays, weights only
    assert not last.exists()
    [best] = last.parent.iterdir()
    assert "optimizer_states" not in torch.load(best, weights_only=True)

    # an uninterrupted run with the same seed, elsewhere, asked to keep its resume state
    other = tmp_path / "uninterrupted"
    reference = train(make_cfg(*ARGS, f"paths.results_dir={other}",
                               "tracking.keep_last_checkpoint=true"))
    assert resumed == reference
    [kept] = (other / "runs").glob("*/checkpoints/last.ckpt")
    state = torch.load(kept, weights_only=True)
    # last.ckpt is the latest epoch, refreshed whether or not val AUC improved, full state
    assert state["epoch"] == 4 and state["optimizer_states"] and state["callbacks"]


def test_resume_refuses_what_it_cannot_continue(make_cfg, results_dir):
    with pytest.raises(ConfigError, match="resume=last: no unfinished run with a checkpoint"):
        train(make_cfg(*ARGS, "resume=last"))
    with pytest.raises(ConfigError, match="resume: run 'nope' not found"):
        train(make_cfg(*ARGS, "resume=nope"))
    train(make_cfg(*ARGS[:2], "trainer.max_epochs=1", *ARGS[3:]))
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    [done] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    with pytest.raises(ConfigError, match=f"resume: run {done.info.run_id} already FINISHED"):
        train(make_cfg(*ARGS[:2], "trainer.max_epochs=1", *ARGS[3:],
                       f"resume={done.info.run_id}"))


def test_four_concurrent_trainings_share_one_sqlite_store(results_dir):
    procs = [start(results_dir, f"seed={seed}", "trainer.max_epochs=2", "data.batch_size=16",
) for seed in range(4)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[-2000:] for o in outputs]
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.data.tags["seed"] for r in runs) == ["0", "1", "2", "3"]
    for run in runs:  # nothing lost: status, every epoch and step metric, every artifact
        assert run.info.status == "FINISHED" and "test/auc" in run.data.metrics
        assert len(client.get_metric_history(run.info.run_id, "val/auc")) == 2
        assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 2
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "confusion_matrix.png", "roc.png",
                "predictions_test.csv"} <= artifacts
        assert "checkpoints" not in artifacts  # tracking.log_checkpoint=false: no second copy


def test_a_first_run_finds_the_experiment_another_process_just_created(results_dir):
    """Four first runs on a new store: one lost the race to create the experiment (UNIQUE
    name, IntegrityError, exit 1); it now reads the winner's."""
    from medbench.tracking import Tracker

    uri = f"sqlite:///{results_dir}/mlflow.db"
    winner, loser = Tracker(uri, "raced"), Tracker(uri, "raced")
    made = winner.experiment_id()
    lookup = loser.client._target.get_experiment_by_name
    calls = []

    def late(name):  # the loser looked before the winner created it
        calls.append(name)
        return None if len(calls) == 1 else lookup(name)

    loser.client._target.get_experiment_by_name = late
    assert loser.experiment_id() == made and len(calls) == 2


def test_resume_refuses_a_run_whose_process_lives(make_cfg, results_dir):
    from medbench.tracking import Tracker
    from medbench.tracking.liveness import process_tags

    tracker = Tracker(f"sqlite:///{results_dir}/mlflow.db", "medbench")
    run = tracker.client.create_run(tracker.experiment_id(), tags=process_tags())  # this pid
    with pytest.raises(ConfigError, match=f"resume: run {run.info.run_id} may still be running"):
        train(make_cfg(*ARGS, f"resume={run.info.run_id}"))
