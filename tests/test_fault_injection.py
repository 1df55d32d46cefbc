"""Faults at random moments: kill -9 and SIGTERM during train, tune and leaderboard (10 trials
each, by benchmark/fault_injection.py), then `runs cleanup` and the command again; a kill while
a new store is created; a study's parent run once its workers are gone."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from medbench.atomic import temp_suffix
from medbench.config import REPO_ROOT, compose_config
from medbench.tracking.liveness import orphaned_runs, worker_tag, workers_alive
from medbench.tracking.new_store import create_missing_store
from medbench.tuning.space import SearchSpace
from medbench.tuning.study import budget_lock, claim_trial, open_study

HARNESS = REPO_ROOT / "benchmark" / "fault_injection.py"


def _harness():
    spec = importlib.util.spec_from_file_location("fault_injection", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kills_at_random_moments_leave_nothing_running_torn_or_different(tmp_path,
                                                                        mlflow_template):
    out = tmp_path / "faults"
    proc = subprocess.run(
        [sys.executable, str(HARNESS), "--trials", "10", "--seed", "0", "--out", str(out),
         "--template-store", str(mlflow_template), "--work", str(tmp_path / "work")],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=1200,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.with_suffix(".json").is_file(), proc.stdout + proc.stderr
    records = json.loads(out.with_suffix(".json").read_text())["records"]
    assert Counter(r["command"] for r in records) == {"train": 10, "tune": 10,
                                                      "leaderboard": 10}
    failed = [r for r in records if not _harness().ok(r)]
    assert not failed, json.dumps(failed, indent=1)
    assert proc.returncode == 0
    # both signals; trainings killed mid-run and resumed (delays are drawn over the whole
    # command: 10 draws all missing the training would be a one in a thousand chance)
    assert {r["signal"] for r in records} == {"SIGKILL", "SIGTERM"}
    assert any(r["action"].startswith("resume") for r in records if r["command"] == "train")
    # a SIGTERM is medbench's: exit 143 with a run ended KILLED (0 once the command was done)
    odd = [r for r in records if r["signal"] == "SIGTERM" and r["exit"] not in
           (0, 143, -signal.SIGTERM)]
    assert not odd, json.dumps(odd, indent=1)


def test_a_kill_while_a_new_store_is_created_leaves_no_store_then_a_whole_one(tmp_path):
    """MLflow builds a new SQLite store in place over some 60 migrations: killed in between, it
    left a file every later command failed on ("table ... already exists")."""
    store = tmp_path / "mlflow.db"
    code = (f"from medbench.tracking.new_store import create_missing_store; "
            f"create_missing_store('sqlite:///{store}')")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT)
    deadline = time.monotonic() + 120
    while not any(tmp_path.glob(f"mlflow.db{temp_suffix()}*")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # mid-migration
    proc.kill()
    proc.wait()
    assert not store.exists()  # no store rather than half of one
    create_missing_store(f"sqlite:///{store}")
    assert MlflowClient(f"sqlite:///{store}").search_experiments()  # whole: it opens
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]  # the temp files gone


def test_a_study_run_is_orphaned_once_every_worker_is_gone(results_dir):
    """A study's parent run is shared by its workers: `runs cleanup` ends it once all of them
    (on this host) are dead, not while one lives or one ran elsewhere."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    mine, = worker_tag().values()
    assert workers_alive({"medbench.worker.a": f"{host} {dead.pid}"}) is False
    assert workers_alive({"medbench.worker.a": f"{host} {dead.pid}",
                          "medbench.worker.b": mine}) is True
    assert workers_alive({"medbench.worker.a": f"{host} {dead.pid}",
                          "medbench.worker.b": "elsewhere 1"}) is None
    assert workers_alive({}) is None  # a study run of an older medbench: cannot tell

    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    experiment = client.create_experiment("faults")
    for pid in (dead.pid, os.getpid()):
        client.create_run(experiment, tags={"medbench.kind": "study",
                                            f"medbench.worker.{host}.{pid}": f"{host} {pid}"})
    [orphan] = orphaned_runs(client)
    assert orphan.data.tags[f"medbench.worker.{host}.{dead.pid}"] == f"{host} {dead.pid}"


def _one_trial_study(tmp_path, name: str):
    """A study with a 1 s heartbeat and grace period: (study, its budget lock, the space)."""
    cfg = compose_config(["search=optimizer", f"paths.results_dir={tmp_path}",
                          "study.heartbeat_interval=1", "study.grace_period=1"], "tune")
    settings = OmegaConf.to_container(cfg.study, resolve=True)
    space = SearchSpace(OmegaConf.to_container(cfg.search.params, resolve=True))
    return (open_study(settings, space, name, "maximize"),
            budget_lock(settings["storage"], name), space)


def _next_worker_claims(study, lock, space):
    """The trial a next worker claims within 60 s (None: it still waits)."""
    claimed = []
    worker = threading.Thread(target=lambda: claimed.append(
        claim_trial(study, 1, lock, space, 0.1)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    return claimed[0] if claimed else None


def test_a_worker_killed_between_asking_and_its_first_heartbeat_is_retried(tmp_path):
    """kill -9 between Optuna's ask and the first heartbeat (both under the study's lock): the
    trial had no heartbeat, which Optuna never fails, so the next worker waited for ever (a
    fault-injection tune trial hung 20 minutes). Under the lock it gets a first beat, goes stale
    after the grace period and is queued again."""
    study, lock, space = _one_trial_study(tmp_path, "unbeaten")
    with lock:
        dead = study.ask(fixed_distributions=space.distributions)  # ... and the worker dies
    again = _next_worker_claims(study, lock, space)
    assert again, "the next worker still waits for the trial that never beat"
    assert again.number != dead.number and again.params == dead.params  # queued again


def test_a_worker_killed_right_after_asking_leaves_a_trial_the_next_one_runs(tmp_path):
    """Killed between Optuna's ask and its first heartbeat, a worker left a RUNNING trial that
    no heartbeat could fail: every later worker of the study waited for it for ever."""
    study, lock, space = _one_trial_study(tmp_path, "killed")
    dead = claim_trial(study, 1, lock, space, 0.1)  # ... and its worker dies here
    time.sleep(2.5)  # past the grace period
    again = _next_worker_claims(study, lock, space)
    assert again, "the next worker still waits for the dead one's trial"
    assert again.number != dead.number and again.params == dead.params  # queued again
