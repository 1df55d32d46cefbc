"""SIGINT and SIGTERM end a real training's MLflow run KILLED, in one line, with the
conventional exit status (128 + the signal), whether they come during set-up or training."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medbench.config import REPO_ROOT

ARGS = ["model=lenet5", "data.batch_size=4", "trainer.max_epochs=50",
        "trainer.enable_progress_bar=false"]


def _statuses(results_dir: Path) -> list[str]:
    store = results_dir / "mlflow.db"
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1) as db:
            return [row[0] for row in db.execute("SELECT status FROM runs")]
    except sqlite3.Error:
        return []


def _wait_for(condition, what: str, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("sig, phase", [(signal.SIGTERM, "set-up"), (signal.SIGTERM, "training"),
                                        (signal.SIGINT, "training")],
                         ids=["SIGTERM-set-up", "SIGTERM-training", "SIGINT-training"])
def test_a_signal_ends_the_run_killed_in_one_line(sig, phase, results_dir):
    process = subprocess.Popen(
        [sys.executable, "-m", "medbench", "train", *ARGS, f"paths.results_dir={results_dir}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    _wait_for(lambda: _statuses(results_dir) == ["RUNNING"], "the run to open")
    runs = results_dir / "runs"
    if phase == "training":  # an epoch has ended: its resume state is on disk
        _wait_for(lambda: any(runs.glob("*/checkpoints/last.ckpt")), "the first epoch")
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + sig, (out, err)
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"error: stopped by {sig.name}: a run in progress ended KILLED (resume=<run id> "
        f"continues it)")
    assert _statuses(results_dir) == ["KILLED"]
    with sqlite3.connect(results_dir / "mlflow.db") as db:  # the interrupt, not Lightning's exit
        [(error,)] = db.execute("SELECT value FROM tags WHERE key = 'error'").fetchall()
    assert error == ("Interrupted: SIGTERM" if sig == signal.SIGTERM else "KeyboardInterrupt")
    if phase == "training":
        assert any(runs.glob("*/checkpoints/last.ckpt"))  # kept for resume=<run id>


def test_a_signal_during_tune_ends_the_trial_and_the_study_run_killed(results_dir):
    """SIGTERM to a `medbench tune` worker in the middle of a trial: that trial ends FAIL in
    Optuna and KILLED in MLflow, and so does the study's parent run (no other worker runs)."""
    import optuna

    process = subprocess.Popen(
        [sys.executable, "-m", "medbench", "tune", *(a for a in ARGS if "batch_size" not in a),
         "search=optimizer", "study.name=sig",
         "study.n_trials=3", "study/pruner=none", f"paths.results_dir={results_dir}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    runs = results_dir / "runs"
    _wait_for(lambda: any(runs.glob("*/checkpoints/last.ckpt")), "the first trial's epoch")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1].startswith("error: stopped by SIGTERM")
    assert sorted(_statuses(results_dir)) == ["KILLED", "KILLED"]  # the study's run, the trial's
    study = optuna.load_study(study_name="sig", storage=f"sqlite:///{results_dir}/optuna.db")
    # and the stopped trial is queued again with its parameters, for the study resumed
    stopped, queued = study.trials
    assert (stopped.state, queued.state) == (optuna.trial.TrialState.FAIL,
                                             optuna.trial.TrialState.WAITING)
    assert queued.system_attrs["fixed_params"] == stopped.params  # its params once it runs


def test_a_signal_waits_for_a_store_write_to_end():
    """Raised inside a SQLite transaction of MLflow's store, the stop left the write lock held:
    the writes that end the run KILLED then failed on "database is locked" (seen under load).
    Inside ``deferred`` (every tracker store call) the stop comes once the call returns."""
    import os

    from medbench import signals
    from medbench.errors import Interrupted

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        signals.install()
        done = []
        with pytest.raises(Interrupted, match="SIGTERM"):
            with signals.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler has run: the section goes on
                done.append("write")
        assert done == ["write"]
        with pytest.raises(Interrupted):  # outside a section: at once
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C twice: the second does not wait
            with signals.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
                done.append("not reached")
        assert done == ["write"]
    finally:
        signals.uninstall()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_a_stop_a_library_swallows_comes_back_until_it_is_handled():
    """A SIGTERM during set-up whose handler ran inside a garbage-collector weakref callback
    was dropped by Python ("Exception ignored"), and the run trained to the end (exit 0): the
    stop is raised again at the next store call or batch, before the call starts, until the
    tracker or the command handles it. (The swallowing here stands for that callback.)"""
    import os

    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from medbench import signals
    from medbench.errors import Interrupted, interruption

    done = []
    try:
        signals.install()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except BaseException:  # noqa: BLE001  (what the library does)
            pass
        for _ in range(2):  # again and again: nothing handled it
            with pytest.raises(Interrupted, match="SIGTERM"):
                with signals.deferred():
                    done.append("write")
        assert done == []  # the store call never started: nothing half-written
        signals.handled()  # the tracker ends the run KILLED: its own calls go on
        with signals.deferred():
            done.append("write")
        signals.check()
        assert done == ["write"]
    finally:
        signals.uninstall()
    # and Lightning's own SIGTERM handler, which raises SIGTERMException at a batch's end
    assert interruption(SIGTERMException()).signal_name == "SIGTERM"


def test_the_handlers_are_given_back_when_a_command_returns(results_dir, capsys):
    """After the command's work (its one line said too), a SIGTERM ends the process as its
    default does; raised during the interpreter's exit it was a traceback and exit 1."""
    from medbench.cli import main

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert main(["train", "model=no_such_model", f"paths.results_dir={results_dir}"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_an_error_a_stop_caused_is_the_stop_not_a_failed_trial(monkeypatch, tmp_path, capsys):
    """A SIGTERM inside OmegaConf broke its clean-up: the AttributeError raised there (the stop
    as its context) was recorded as a failed trial, which took the trial's place in the study:
    resumed, it never trained it (found by fault injection). The error is the stop: raised on
    (the driver re-queues the trial), exit 143; an error without a stop still fails the trial."""
    import optuna

    from medbench.cli import _exit_code
    from medbench.errors import Interrupted, interruption
    from medbench.tuning.trial import TrialSpec, run_trial

    def broken_clean_up(cfg, **kwargs):
        try:
            raise Interrupted("SIGTERM")
        finally:
            raise AttributeError("'NoneType' object has no attribute '_invalidate_flags_cache'")

    def plain_bug(cfg, **kwargs):
        raise AttributeError("a bug")

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    for train, stopped in ((broken_clean_up, True), (plain_bug, False)):
        monkeypatch.setattr("medbench.train.train_run", train)
        trial = study.ask()
        spec = TrialSpec([], "s", storage, trial._trial_id, trial.number, "val/auc", "maximize")
        if stopped:
            with pytest.raises(AttributeError) as raised:
                run_trial(spec, trial)
            assert interruption(raised.value).signal_name == "SIGTERM"
            assert _exit_code(raised.value) == 128 + signal.SIGTERM
            assert "stopped by SIGTERM" in capsys.readouterr().err
        else:
            outcome = run_trial(spec, trial)
            assert (outcome["state"], outcome["error"]) == ("FAIL", "AttributeError: a bug")


def test_a_stop_while_hydra_composes_is_the_stop_not_a_config_error(capsys):
    """Hydra wraps what composition raised: a SIGTERM 0.08 s into `leaderboard` exited 2 (a
    config error's status) instead of 143 (found by fault injection). Wrapped, or dropped by the
    library with only the handler having seen it, it is the stop; a real config error exits 2."""
    from hydra.errors import ConfigCompositionException

    from medbench import signals
    from medbench.cli import _composed, _exit_code
    from medbench.errors import Interrupted

    def wrapped():
        try:
            raise Interrupted("SIGTERM")
        except KeyboardInterrupt as stop:
            raise ConfigCompositionException("Error merging 'tracking=sqlite'") from stop

    def dropped():
        signals._unhandled = Interrupted("SIGTERM")  # what the handler left, its raise lost
        raise ConfigCompositionException("Error merging 'tracking=sqlite'")

    for compose in (wrapped, dropped):
        with pytest.raises(BaseException) as raised:
            _composed(compose)
        assert _exit_code(raised.value) == 128 + signal.SIGTERM
        assert "stopped by SIGTERM" in capsys.readouterr().err
        signals.uninstall()

    def config_error():
        raise ConfigCompositionException("Could not override 'model'")

    assert _composed(config_error) == 2
    assert capsys.readouterr().err == "error: Could not override 'model'\n"
