"""Tracked runs as one frame (a row per finished run): the tags and metrics leaderboards read.

MLflow's search API returns every param of every run (a run logs its whole flattened config,
~150 params): over 10,000 runs that is 1.5 M rows materialised as Python objects. For a
database store (SQLite, PostgreSQL, ...) only the keys a leaderboard needs are queried from
MLflow's own tables (its SQLAlchemy models), pivoted by the database; any other store (a
tracking server) goes through ``MlflowClient.search_runs``. Both give the same frame (tested
on SQLite, PostgreSQL and a tracking server).
"""

from __future__ import annotations

import pandas as pd
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlParam, SqlRun, SqlTag
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient
from sqlalchemy import case, func, select

from medbench.errors import ConfigError

# "survey.task": the family of runs tracked before families existed (medbench.legacy)
TAGS = ("medbench.kind", "medbench.config_hash", "medbench.budget", "family", "survey.id",
        "survey.family", "survey.task", "survey.data_here", "dataset", "model", "seed",
        "cv.fold", "label_type", "choice.experiment", "tuned.study", "tuned.trials",
        "tuned.compute_hours", "data.rank_metric", "data.fingerprint_test", "runner",
        "medbench.variant")
COST = ("model/params", "model/macs", "time/fit_s", "time/test_ms_per_image",
        "time/infer_ms_per_image")
METRICS = ("test/auc", "test/acc", *COST)  # read by default: the leaderboard's columns
# run:<id> names the source run of a two-stage method, or the members of an ensemble;
# trainer.max_epochs=0: an evaluation-only run (medbench.leaderboard.keys)
PARAMS = ("model.pretrained_path", "model.kwargs.members", "trainer.max_epochs")
INFO = ("run_id", "experiment_id", "start_time", "artifact_uri")


def collect_runs(uri: str, metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """FINISHED runs of every active experiment, one row each: columns :data:`INFO`,
    :data:`TAGS`, :data:`PARAMS` and ``metrics`` (their latest values). Leaderboard rows are
    those of kind ``run`` (``medbench.kind``); the others (tuning trials, source runs of
    two-stage methods) are kept for look-ups."""
    if "://" not in uri:
        raise ConfigError(f"leaderboard: tracking URI '{uri}' is not a URI (sqlite:///..., "
                          f"http://...)")
    client = MlflowClient(tracking_uri=uri)
    store = client._tracking_client.store  # no public accessor; used to pick the fast path
    if isinstance(store, SqlAlchemyStore):
        frame = _from_database(store, metrics)
    else:
        frame = _from_search(client, metrics)
    for column in (*TAGS, *PARAMS):
        if column not in frame:
            frame[column] = None
    # runs tracked before the family tag existed were all classification runs
    frame["family"] = (frame["family"].fillna(frame["survey.family"])
                       .fillna(frame["survey.task"]).fillna("classification"))
    return frame.sort_values("start_time", kind="stable").reset_index(drop=True)


def _from_database(store: SqlAlchemyStore, keys: tuple[str, ...]) -> pd.DataFrame:
    # Core selects on MLflow's tables, pivoted by the database (one row per run and table,
    # MAX(CASE WHEN key = ...)) and run on the driver's own cursor: ~10,000 tuples for 10,000
    # runs instead of ~250,000 (run, key, value) rows for pandas to pivot
    run, tag, metric, param = (model.__table__ for model in (SqlRun, SqlTag, SqlLatestMetric,
                                                              SqlParam))
    finished = select(run.c.run_uuid).where(run.c.status == "FINISHED",
                                            run.c.lifecycle_stage == "active")
    info = select(run.c.run_uuid, run.c.experiment_id, run.c.start_time,
                  run.c.artifact_uri).where(run.c.run_uuid.in_(finished))
    wide = [(table, names) for table, names in ((tag, TAGS), (param, PARAMS), (metric, keys))]
    statements = [info, *(select(table.c.run_uuid, *(
        func.max(case((table.c.key == name, table.c.value))).label(name) for name in names))
        .where(table.c.key.in_(names), table.c.run_uuid.in_(finished))
        .group_by(table.c.run_uuid) for table, names in wide)]
    with store.engine.connect() as connection:
        cursor = connection.connection.cursor()
        results = []
        for statement in statements:
            compiled = statement.compile(dialect=store.engine.dialect,
                                         compile_kwargs={"render_postcompile": True})
            cursor.execute(str(compiled), _driver_params(compiled))
            results.append(cursor.fetchall())
        cursor.close()
    frame = _columns(results[0], INFO).set_index("run_id")
    for rows, (_, names) in zip(results[1:], wide, strict=True):
        frame = frame.join(_columns(rows, ("run_id", *names)).set_index("run_id"))
    return frame.reset_index()


def _driver_params(compiled) -> tuple | dict:
    """Bound values in the driver's paramstyle (positional for SQLite, named for others)."""
    if compiled.positiontup is not None:
        return tuple(compiled.params[name] for name in compiled.positiontup)
    return compiled.params


def _from_search(client: MlflowClient, keys: tuple[str, ...] = METRICS) -> pd.DataFrame:
    experiments = [e.experiment_id for e in client.search_experiments()]
    info, tags, metrics = [], [], []
    token = None
    while experiments:
        page = client.search_runs(experiments, "attributes.status = 'FINISHED'",
                                  max_results=1000, page_token=token)
        for run in page:
            run_id = run.info.run_id
            info.append((run_id, run.info.experiment_id, run.info.start_time,
                         run.info.artifact_uri))
            tags += [(run_id, k, v) for k, v in run.data.tags.items() if k in TAGS]
            tags += [(run_id, k, v) for k, v in run.data.params.items() if k in PARAMS]
            metrics += [(run_id, k, v) for k, v in run.data.metrics.items() if k in keys]
        token = page.token
        if not token:
            break
    return _join(_columns(info, INFO), tags, metrics)


def _columns(rows: list, names: tuple[str, ...]) -> pd.DataFrame:
    """A frame built column by column (pandas inspects each row object otherwise)."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    return pd.DataFrame(dict(zip(names, columns, strict=True)))


def _join(info: pd.DataFrame, tags: list, metrics: list) -> pd.DataFrame:
    wide = [_columns(rows, ("run_id", "key", "value")).pivot(
        index="run_id", columns="key", values="value") for rows in (tags, metrics) if rows]
    frame = info.set_index("run_id")
    for part in wide:
        frame = frame.join(part)
    frame.columns.name = None
    return frame.reset_index()
