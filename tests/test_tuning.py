"""`medbench tune` on the real BreastMNIST: pruning, search, shared and resumed studies."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from filelock import FileLock
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf, open_dict
from optuna.trial import TrialState

from medbench.config import REPO_ROOT, compose_config
from medbench.errors import ConfigError
from medbench.tuning import SearchSpace
from medbench.tuning.driver import tune


@pytest.fixture(scope="session")
def optuna_template(tmp_path_factory) -> Path:
    """An empty, migrated Optuna SQLite storage, made once (creating one runs its schema
    migrations: seconds; a copy: milliseconds)."""
    path = tmp_path_factory.mktemp("optuna_template") / "optuna.db"
    optuna.storages.RDBStorage(f"sqlite:///{path}")
    return path


@pytest.fixture
def tune_args(results_dir: Path, optuna_template: Path):
    """Overrides of a small real study: LeNet-5 on BreastMNIST, a few epochs per trial (the
    storage starts as a copy of the empty template)."""
    shutil.copyfile(optuna_template, results_dir / "optuna.db")

    def make(*extra: str, epochs: int = 3) -> list[str]:
        return [
            "model=lenet5", "search=optimizer", f"trainer.max_epochs={epochs}",
            "trainer.enable_progress_bar=false", f"paths.results_dir={results_dir}",
            f"study.export_dir={results_dir}/tuned", *extra,
        ]

    return make


def load(results_dir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{results_dir}/optuna.db")


def runs_of(results_dir: Path, kind: str):
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    ids = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(ids, f"tags.`medbench.kind` = '{kind}'")


def worker(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "medbench", "tune", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=REPO_ROOT)


def test_search_space_parsing_and_overrides():
    space = SearchSpace({
        "lr": {"key": "runner.optimizer.lr", "type": "float", "low": 1e-4, "high": 1e-1,
               "log": True},
        "batch": {"key": "data.batch_size", "type": "categorical", "choices": [32, 64]},
        "depth": {"key": "+model.kwargs.depth", "type": "int", "low": 2, "high": 6, "step": 2},
        "model": {"type": "categorical", "choices": ["lenet5", "resnet18_28"]},
    })
    assert space.distributions["lr"].log
    assert space.overrides({"lr": 1e-05, "model": "lenet5", "depth": 4, "batch": 64}) == [
        "runner.optimizer.lr=1e-05", "model=lenet5", "+model.kwargs.depth=4", "data.batch_size=64"]
    assert space.overrides({"model": "a b"}) == ["model='a b'"]
    with pytest.raises(ConfigError, match="grid sampler needs"):
        space.grid()
    grid = SearchSpace({"x": {"type": "int", "low": 2, "high": 6, "step": 2},
                        "y": {"type": "categorical", "choices": ["a", "b"]}})
    assert grid.grid() == {"x": [2, 4, 6], "y": ["a", "b"]} and grid.grid_size() == 6
    with pytest.raises(ConfigError, match=r"search.params.lr: missing 'low'"):
        SearchSpace({"lr": {"type": "float", "high": 1}})
    with pytest.raises(ConfigError, match=r"search.params.lr.type: expected float, int"):
        SearchSpace({"lr": {"type": "uniform", "low": 0, "high": 1}})


def test_wrong_search_key_fails_before_any_trial(tune_args, results_dir):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="runner.optimizer.lrr"):
        tune(tune_args("search.params.lr.key=runner.optimizer.lrr", "study.name=bad"))
    assert not (results_dir / "optuna.db").exists() or not optuna.get_all_study_names(
        f"sqlite:///{results_dir}/optuna.db")


def test_pruned_trials_stop_early_and_end_killed(tune_args, results_dir):
    result = tune(tune_args("study/sampler=random", "study.n_trials=5", "study.name=prune",
                            "study.pruner.kwargs.n_startup_trials=1",
                            "study.pruner.kwargs.n_warmup_steps=0", epochs=4))
    study = load(results_dir, "prune")
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert len(study.trials) == 5 and result.finished == 5
    assert pruned, "median pruning never stopped a trial"
    for trial in pruned:  # stopped at once: fewer epochs than the budget, reported each epoch
        assert trial.user_attrs["epochs"] < 4
        assert len(trial.intermediate_values) == trial.user_attrs["epochs"]
    client, trials = runs_of(results_dir, "trial")
    by_number = {int(r.data.tags["optuna.trial"]): r for r in trials}
    assert sorted(by_number) == [0, 1, 2, 3, 4]
    for trial in study.trials:
        run = by_number[trial.number]
        assert run.data.tags["optuna.state"] == trial.state.name
        assert run.info.status == ("KILLED" if trial.state == TrialState.PRUNED else "FINISHED")
        assert float(run.data.params["runner.optimizer.lr"]) == pytest.approx(trial.params["lr"])
        # pruned or finished, a trial never resumes: only its selected checkpoint stays
        # (none when pruned at its first epoch, before any checkpoint)
        names = [p.name for p in (results_dir / "runs" / run.info.run_id).glob("*/*.ckpt")]
        assert "last.ckpt" not in names and len(names) <= 1
        if trial.state == TrialState.COMPLETE:
            assert names == [run.data.tags["best_checkpoint"]]


def test_tpe_improves_on_its_first_trial_and_exports_a_runnable_best(tune_args, results_dir):
    name = f"pytest-{os.getpid()}"
    exported = REPO_ROOT / "results" / "tuned" / f"{name}.yaml"  # the default results folder
    try:
        result = tune(tune_args("study.n_trials=8", f"study.name={name}", "study/pruner=none",
                                "study.sampler.kwargs.n_startup_trials=3",
                                f"study.export_dir={exported.parent}", epochs=3))
        study = load(results_dir, name)
        first = study.trials[0].value
        assert study.best_value > first, [t.value for t in study.trials]
        client, [parent] = runs_of(results_dir, "study")
        assert parent.info.status == "FINISHED" and parent.data.tags["best_trial"] == str(
            study.best_trial.number)
        plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
        assert plots == {f"plots/{p}.png" for p in ("optimization_history",
                                                   "param_importances", "parallel_coordinate")}
        _, trials = runs_of(results_dir, "trial")
        assert len(trials) == 8
        assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
        assert result.exported == exported

        # the export is an experiment that composes to the best trial's config...
        train_args = [a for a in tune_args(epochs=3) if not a.startswith(("search", "study"))]
        best = compose_config(train_args + study.best_trial.user_attrs["overrides"])
        again = compose_config([f"experiment=tuned/{name}"])
        picked = []
        for cfg in (again, best):
            with open_dict(cfg):
                picked.append(cfg.choices.pop("experiment"))
        assert picked == [f"tuned/{name}", None]
        # ...with the search's budget, which the leaderboard shows beside the row
        tuned = OmegaConf.to_container(again.tuned)
        assert tuned["study"] == name and tuned["trials"] == 8 and tuned["compute_hours"] > 0
        with open_dict(again):
            again.tuned = None
        assert OmegaConf.to_container(again) == OmegaConf.to_container(best)
        with open_dict(again):
            again.tuned = tuned
        # ...and trains as is
        from medbench.train import train

        metrics = train(again)
        assert 0.0 <= metrics["test/auc"] <= 1.0
    finally:
        exported.unlink(missing_ok=True)


def test_failing_trial_is_recorded_and_the_study_goes_on(tune_args, results_dir):
    # densenet121 needs 29 px: at 28 px the trial raises; the grid covers both models once
    # (the space picks the model: a fixed model=lenet5 beside it would be refused)
    args = tune_args("study/sampler=grid", "study.name=fails", "study/pruner=none",
                     "+search.params.model={type:categorical,choices:[densenet121,lenet5]}",
                     "search.params.batch_size.choices=[128]", "~search.params.lr",
                     "~search.params.weight_decay", epochs=1)
    tune([a for a in args if a != "model=lenet5"])
    study = load(results_dir, "fails")
    states = {t.params["model"]: t for t in study.trials}
    assert states["densenet121"].state == TrialState.FAIL
    assert "needs inputs of at least 29 px" in states["densenet121"].user_attrs["error"]
    assert states["lenet5"].state == TrialState.COMPLETE and len(study.trials) == 2
    _, runs = runs_of(results_dir, "trial")
    assert {r.data.tags["optuna.state"] for r in runs} == {"FAIL", "COMPLETE"}


def test_workers_ending_together_summarise_the_study_once(results_dir):
    """Every worker that sees the last trial finish ends the study; two doing it at once wrote
    the same tags together and the second insert failed (IntegrityError, exit 1)."""
    import threading

    from medbench.tuning.outputs import StudyRun
    from medbench.tuning.study import budget_lock

    storage = f"sqlite:///{results_dir}/optuna.db"
    study = optuna.create_study(study_name="ends", storage=storage, direction="maximize")
    for number, value in enumerate((0.6, 0.8)):
        study.add_trial(optuna.trial.create_trial(
            params={"lr": 0.01 * (number + 1)}, value=value,
            distributions={"lr": optuna.distributions.FloatDistribution(1e-3, 1.0)}))
    cfg = compose_config(["search=optimizer", f"paths.results_dir={results_dir}"],
                         config_name="tune")
    workers = [StudyRun(cfg, study, budget_lock(storage, "ends"), {}) for _ in range(2)]
    start, errors = threading.Barrier(2), []

    def finish(worker: StudyRun) -> None:
        start.wait()
        try:
            worker.finish(results_dir / "studies" / "ends", None)
        except Exception as err:  # noqa: BLE001  (any failure is the finding)
            errors.append(err)

    threads = [threading.Thread(target=finish, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    client, [parent] = runs_of(results_dir, "study")
    assert parent.info.status == "FINISHED" and parent.data.tags["best_trial"] == "1"
    assert parent.data.tags["best.lr"] == "0.02"
    assert len(client.get_metric_history(parent.info.run_id, "best_value")) == 1


def test_a_study_stopped_by_its_timeout_ends_finished_with_its_best_so_far(tune_args,
                                                                           results_dir):
    """study.timeout: the trial in progress finishes, no other starts; the parent run ends
    FINISHED with the best so far and why it stopped (it stayed RUNNING for ever)."""
    result = tune(tune_args("study.n_trials=20", "study.timeout=1", "study.name=timed",
                            "study/pruner=none", "+trainer.limit_train_batches=2", epochs=1))
    assert result.finished == 1 and result.exported is None
    _, [parent] = runs_of(results_dir, "study")
    assert parent.info.status == "FINISHED" and parent.data.tags["best_trial"] == "0"
    assert parent.data.tags["optuna.stopped"] == (
        "study.timeout (1 s) reached after 1 of 20 trials")


def test_two_workers_share_one_study_exactly(tune_args, results_dir):
    args = tune_args("study.n_trials=5", "study.name=shared", "study/pruner=none", epochs=2)
    workers = [worker(args) for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = load(results_dir, "shared")
    assert len(study.trials) == 5
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert sorted(t.number for t in study.trials) == list(range(5))
    ran = [[line for line in out.splitlines() if line.startswith("trial ")] for out in outputs]
    assert sum(map(len, ran)) == 5 and all(ran), ran  # both workers trained, none twice
    _, parents = runs_of(results_dir, "study")
    _, trials = runs_of(results_dir, "trial")
    assert len(parents) == 1
    assert sorted(int(r.data.tags["optuna.trial"]) for r in trials) == list(range(5))


def test_killed_worker_study_resumes(tune_args, results_dir):
    args = tune_args("study.n_trials=3", "study.name=resume", "study/pruner=none",
                     "study.heartbeat_interval=1", "study.grace_period=4", epochs=8)
    first = worker(args)
    storage = f"sqlite:///{results_dir}/optuna.db"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill -9 once trial 1 is half-way through training
        time.sleep(0.5)
        if first.poll() is not None:
            pytest.fail(first.stdout.read())
        if not (results_dir / "optuna.db").is_file():
            continue
        try:  # under the worker's own lock: opening a new storage migrates its schema, and two
            # processes migrating at once collide (alembic_version UNIQUE constraint)
            with FileLock(f"{results_dir}/optuna.db.lock"):
                trials = optuna.load_study(study_name="resume", storage=storage).trials
        except Exception:  # the worker has not created the storage or the study yet
            continue
        if len(trials) > 1 and len(trials[1].intermediate_values) >= 2:
            break
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    killed = optuna.load_study(study_name="resume", storage=storage).trials[1]
    assert killed.state == TrialState.RUNNING  # left behind by the dead worker

    second = worker(args)
    out = second.communicate(timeout=600)[0]
    assert second.returncode == 0, out
    study = optuna.load_study(study_name="resume", storage=storage)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3
    assert study.trials[1].state == TrialState.FAIL  # failed by the heartbeat, then re-run
    [retried] = [t for t in complete if t.system_attrs.get("failed_trial") == 1]
    assert retried.params == killed.params


def test_ddp_trials_train_each_rank_on_the_trial_parameters(tune_args, results_dir):
    # one trial: the ranks' set-up is the test (two ranks must make one trial, one run)
    args = tune_args("study.n_trials=1", "study.name=ddp", "study/pruner=none",
                     "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                     "+trainer.limit_train_batches=4", epochs=1)
    proc = worker(args)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]
    study = load(results_dir, "ddp")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE], out[-3000:]
    _, trials = runs_of(results_dir, "trial")
    assert len(trials) == 1  # one MLflow run per trial, not one per rank
    for run in trials:
        assert run.info.status == "FINISHED" and "test/auc" in run.data.metrics
        assert run.data.params["trainer.devices"] == "2"


@pytest.mark.parametrize(("override", "message"), [
    ("study.sampler.name=gpp", "unknown sampler 'gpp'; did you mean 'gp'"),
    ("study.pruner.name=medain", "unknown pruner 'medain'; did you mean 'median'"),
    ("+study.sampler.kwargs.n_startup=3", "study.sampler.kwargs (tpe):"),
    ("study.direction=up", "study.direction: expected maximize, minimize or auto, got 'up'"),
    ("study.storage=nosuchdb://x", "study.storage: cannot open 'nosuchdb://x'"),
    ("search.params.lr.type=uniform", "search.params.lr.type: expected float, int or"),
])
def test_bad_study_settings_fail_with_one_line(tune_args, results_dir, override, message,
                                               store_untouched):
    with pytest.raises(ConfigError) as err:
        tune(tune_args(override))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert store_untouched()  # nothing was started


def test_a_worker_gives_up_after_consecutive_failures(tune_args, results_dir):
    from medbench.errors import TrainingError

    with pytest.raises(TrainingError, match="2 trials in a row failed, the last with ConfigError"):
        tune(tune_args("model=densenet121", "study.max_consecutive_failures=2",
                       "study.name=broken", "study/pruner=none"))
    assert [t.state for t in load(results_dir, "broken").trials] == [TrialState.FAIL] * 2
    _, [parent] = runs_of(results_dir, "study")
    assert parent.info.status == "FAILED"


@pytest.mark.parametrize("choice", ["study/sampler=gp", "study/sampler=cmaes",
                                    "study/pruner=successive_halving", "study/pruner=hyperband"])
def test_every_sampler_and_pruner_runs_a_real_study(tune_args, results_dir, choice):
    group, option = choice.split("=")
    tune(tune_args(choice, "study.n_trials=3", f"study.name={option}",
                   "study.sampler.kwargs.n_startup_trials=2", epochs=3))
    study = load(results_dir, option)
    assert len(study.trials) == 3 and all(t.state.is_finished() for t in study.trials)
    assert any(t.state == TrialState.COMPLETE for t in study.trials)
    _, [parent] = runs_of(results_dir, "study")
    used = parent.data.tags[group.replace("study/", "optuna.")].lower()  # GPSampler...
    assert option.replace("_", "") in used


def test_the_team_set_up_two_workers_one_postgresql_study_one_mlflow_server(
        tune_args, results_dir, postgres_url, tmp_path):
    """The README's team set-up, for real: PostgreSQL holds the study and (in a database of its
    own) the tracking store of an `mlflow server` on 127.0.0.1; two `medbench tune` workers
    share both. Every trial is in the study and in MLflow exactly once, one parent run."""
    import psycopg2
    from conftest import mlflow_server

    dsn = {k: v for k, v in (p.split("=") for p in postgres_url.split("?")[1].split("&"))}
    db = psycopg2.connect(dbname="postgres", user="medbench", **dsn)
    db.autocommit = True  # CREATE DATABASE runs outside a transaction
    db.cursor().execute("CREATE DATABASE mlflow")
    db.close()
    store = postgres_url.replace("/postgres?", "/mlflow?")
    with mlflow_server(store, tmp_path / "artifacts") as url:
        args = tune_args("study.n_trials=4", "study.name=pg", "study/pruner=none",
                         f"study.storage='{postgres_url}'", f"tracking.uri={url}", epochs=1)
        workers = [worker(args) for _ in range(2)]
        outputs = [w.communicate(timeout=600)[0] for w in workers]
        assert [w.returncode for w in workers] == [0, 0], [o[-2000:] for o in outputs]
        study = optuna.load_study(study_name="pg", storage=postgres_url)
        assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
        assert all(t.state == TrialState.COMPLETE for t in study.trials)
        client = MlflowClient(url)
        ids = [e.experiment_id for e in client.search_experiments()]
        trials = client.search_runs(ids, "tags.`medbench.kind` = 'trial'")
        assert sorted(int(r.data.tags["optuna.trial"]) for r in trials) == [0, 1, 2, 3]
        assert all(r.info.status == "FINISHED" for r in trials)
        [parent] = client.search_runs(ids, "tags.`medbench.kind` = 'study'")
        assert parent.info.status == "FINISHED"
        assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}


def test_an_override_of_a_tuned_key_is_refused_until_the_space_drops_it(results_dir, capsys):
    """`tune model=lenet5 search=small_cnn` would train whatever model the space samples: it is
    refused in one line naming the parameter; dropping it from the space fixes LeNet-5."""
    from medbench.cli import main
    from medbench.tuning.driver import _check_space

    assert main(["tune", "model=lenet5", "search=small_cnn",
                 f"paths.results_dir={results_dir}"]) == 1
    err = capsys.readouterr().err.strip()
    assert "'model=lenet5' sets what the search space tunes (search.params.model)" in err
    assert len(err.splitlines()) == 1 and not list(results_dir.glob("studies/*"))
    cfg = compose_config(["model=lenet5", "search=small_cnn", "~search.params.model"], "tune")
    space = SearchSpace(OmegaConf.to_container(cfg.search.params))
    assert "model" not in space.keys and cfg.model.name == "lenet5"
    _check_space(["model=lenet5"], space)
