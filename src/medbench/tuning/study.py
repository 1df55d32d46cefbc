"""The Optuna study behind `medbench tune`: storage with heartbeat, and a shared trial budget."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from medbench.errors import ConfigError, first_line
from medbench.store_check import server_connect_args
from medbench.tuning.space import SearchSpace
from medbench.tuning.strategies import build_pruner, build_sampler
from medbench.uris import redact

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
PENDING = (TrialState.RUNNING, TrialState.WAITING)


def is_finished(trial: optuna.trial.FrozenTrial) -> bool:
    """COMPLETE, PRUNED, or FAIL because the trial raised (the worker recorded an ``error``).
    A dead worker's trial, failed by the heartbeat, does not count: it is queued again."""
    return trial.state in FINISHED or (trial.state == TrialState.FAIL
                                       and "error" in trial.user_attrs)


def open_study(settings: dict[str, Any], space: SearchSpace, name: str,
               direction: str, timeout_s: float = 5) -> optuna.Study:
    """Create the study, or load it when another worker (or an earlier run) created it; a
    database server that does not answer fails after ``timeout_s`` (``tracking.timeout_s``)."""
    url = str(settings["storage"])
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    sampler = build_sampler(settings["sampler"], space, settings.get("seed"))
    # under the lock: workers starting together would race to create the schema and the study
    with budget_lock(url, name, timeout_s), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the retry callback is "experimental"
        try:
            storage = RDBStorage(
                url, heartbeat_interval=int(settings["heartbeat_interval"]),
                grace_period=int(settings["grace_period"]),
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=settings.get("max_retry")),
                engine_kwargs={"connect_args": _connect_args(url, timeout_s)})
        except Exception as err:  # SQLAlchemy: bad URL, missing driver, unreachable server
            raise _unopened(url, err) from None
        return optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                   pruner=build_pruner(settings["pruner"]), direction=direction,
                                   load_if_exists=True)


def _unopened(url: str, err: Exception) -> ConfigError:
    """One line naming the storage without its password."""
    reason = first_line(err, redact, limit=1000)
    return ConfigError(f"study.storage: cannot open '{redact(url)}' ({reason})")


def _connect_args(url: str, timeout_s: float) -> dict[str, Any]:
    """SQLite waits up to 60 s for a lock; a server must answer within ``timeout_s``."""
    return {"timeout": 60} if url.startswith("sqlite") else server_connect_args(url, timeout_s)


def budget_lock(url: str, name: str, timeout_s: float = 5) -> contextlib.AbstractContextManager:
    """Serialises "count the trials, then ask for one" among the workers of study ``name``, so
    that together they start exactly ``n_trials``: a file lock beside a SQLite file, an
    advisory lock on PostgreSQL. Other server databases get no lock: two workers asking at the
    same instant for the last trial may start one extra."""
    if url.startswith("sqlite:///"):
        return FileLock(url.removeprefix("sqlite:///") + ".lock")
    if url.startswith("postgresql"):
        return _AdvisoryLock(url, name, timeout_s)
    return contextlib.nullcontext()


class _AdvisoryLock:
    """A PostgreSQL session advisory lock keyed by the study name; reusable, like FileLock."""

    def __init__(self, url: str, name: str, timeout_s: float = 5) -> None:
        digest = hashlib.sha256(f"medbench:{name}".encode()).digest()
        self.url, self.key = url, int.from_bytes(digest[:8], "big", signed=True)
        self.timeout_s = timeout_s

    def __enter__(self) -> None:
        from sqlalchemy import text

        try:
            self.connection = _lock_engine(self.url, self.timeout_s).connect()
        except Exception as err:  # no driver, a server that refuses: before any trial
            raise _unopened(self.url, err) from None
        self.connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": self.key})

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import text

        try:
            self.connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
        finally:
            self.connection.close()


@functools.cache
def _lock_engine(url: str, timeout_s: float = 5):  # noqa: ANN202  (a small pool per URL)
    import sqlalchemy

    return sqlalchemy.create_engine(url, pool_size=1,
                                    connect_args=_connect_args(url, timeout_s))


def claim_trial(study: optuna.Study, n_trials: int, lock: contextlib.AbstractContextManager,
                space: SearchSpace, poll_seconds: float) -> optuna.Trial | None:
    """A new (or re-queued) trial while the budget allows; None once ``n_trials`` finished
    (see :func:`is_finished`).

    When the budget is taken only by trials still running elsewhere, waits: if their worker
    dies, the heartbeat fails them and this worker runs their re-queued copies.
    """
    while True:
        # quiet: fail_stale_trials is "experimental", and ask() warns that heartbeats are meant
        # for Study.optimize (`heartbeat` below records them for ask-and-tell)
        with lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for orphan in heartbeatless_trials(study):
                # asked, then killed before its first heartbeat (both happen under this lock,
                # so its worker is dead): Optuna never fails a trial without a heartbeat, and
                # every later worker waited on it for ever (found by fault injection, kill -9);
                # a first beat now makes it stale after study.grace_period like any other
                study._storage.record_heartbeat(orphan)
            fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            finished = sum(map(is_finished, trials))
            pending = [t for t in trials if t.state in PENDING]
            queued = any(t.state == TrialState.WAITING for t in pending)
            if finished + len(pending) < n_trials or queued:  # ask() pops a queued trial first
                trial = study.ask(fixed_distributions=space.distributions)
                # its first heartbeat now, not when the trial starts training: Optuna fails only
                # trials that have one, and a worker killed in between left a trial RUNNING
                # that every later worker waited on for ever (found by fault injection)
                study._storage.record_heartbeat(trial._trial_id)
                return trial
        if finished >= n_trials:
            return None
        time.sleep(poll_seconds)


def heartbeatless_trials(study: optuna.Study) -> list[int]:
    """Ids of the study's RUNNING trials that never recorded a heartbeat (read as Optuna's own
    stale-trial check reads them: the storage offers no public query of heartbeats)."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import orm

    storage = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache
    if not isinstance(storage, RDBStorage):
        return []
    with _create_scoped_session(storage.scoped_session) as session:
        running = (session.query(models.TrialModel)
                   .options(orm.selectinload(models.TrialModel.heartbeats))
                   .filter(models.TrialModel.state == TrialState.RUNNING,
                           models.TrialModel.study_id == study._study_id).all())
        return [trial.trial_id for trial in running if not trial.heartbeats]


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Records the trial's heartbeat while it trains (Study.optimize does this for its own
    loop; ask-and-tell has to)."""
    from optuna.storages._heartbeat import get_heartbeat_thread  # no public equivalent

    thread = get_heartbeat_thread(trial._trial_id, study._storage)
    with thread:
        yield


def finished_count(study: optuna.Study) -> int:
    return sum(map(is_finished, study.get_trials(deepcopy=False)))
