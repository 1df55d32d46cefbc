"""Tracked runs as one frame (a row per finished run): the tags and metrics leaderboards read.

MLflow's search API returns every param of every run (a run logs its whole flattened config,
~150 params): over 10,000 runs that is 1.5 M rows materialised as Python objects. For a
database store the same runs' tags, params and latest metrics are read through MLflow's own
ORM tables, only the keys a leaderboard needs; any other store (a tracking server) goes through
``MlflowClient.search_runs``. Both give the same frame (tested).
"""

from __future__ import annotations

import pandas as pd
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlParam, SqlRun, SqlTag
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient
from sqlalchemy import or_

from medbench.errors import ConfigError

TAGS = ("medbench.kind", "medbench.config_hash", "medbench.budget", "survey.id",
        "survey.data_here", "dataset", "model", "seed", "cv.fold", "label_type",
        "choice.experiment", "tuned.study", "tuned.trials", "tuned.compute_hours")
METRIC_PREFIXES = ("test/", "model/", "time/")
PARAMS = ("model.pretrained_path",)  # run:<id> names the source run of a two-stage method
INFO = ("run_id", "experiment_id", "start_time", "artifact_uri")


def collect_runs(uri: str) -> pd.DataFrame:
    """FINISHED runs of every active experiment, one row each: columns :data:`INFO`,
    :data:`TAGS`, :data:`PARAMS` and the metrics whose names start with
    :data:`METRIC_PREFIXES`. Leaderboard rows are those of kind ``run`` (``medbench.kind``);
    the others (tuning trials, source runs of two-stage methods) are kept for look-ups."""
    if "://" not in uri:
        raise ConfigError(f"leaderboard: tracking URI '{uri}' is not a URI (sqlite:///..., "
                          f"http://...)")
    client = MlflowClient(tracking_uri=uri)
    store = client._tracking_client.store  # no public accessor; used to pick the fast path
    if isinstance(store, SqlAlchemyStore):
        frame = _from_database(store)
    else:
        frame = _from_search(client)
    for column in (*TAGS, *PARAMS):
        if column not in frame:
            frame[column] = None
    return frame.sort_values("start_time", kind="stable").reset_index(drop=True)


def _from_database(store: SqlAlchemyStore) -> pd.DataFrame:
    with store.ManagedSessionMaker() as session:
        runs = session.query(SqlRun.run_uuid, SqlRun.experiment_id, SqlRun.start_time,
                             SqlRun.artifact_uri).filter(
            SqlRun.status == "FINISHED", SqlRun.lifecycle_stage == "active")
        run_ids = runs.with_entities(SqlRun.run_uuid)
        info = pd.DataFrame(runs.all(), columns=list(INFO))
        tags = session.query(SqlTag.run_uuid, SqlTag.key, SqlTag.value).filter(
            SqlTag.key.in_(TAGS), SqlTag.run_uuid.in_(run_ids)).all()
        metrics = session.query(SqlLatestMetric.run_uuid, SqlLatestMetric.key,
                                SqlLatestMetric.value).filter(
            or_(*(SqlLatestMetric.key.startswith(p) for p in METRIC_PREFIXES)),
            SqlLatestMetric.run_uuid.in_(run_ids)).all()
        params = session.query(SqlParam.run_uuid, SqlParam.key, SqlParam.value).filter(
            SqlParam.key.in_(PARAMS), SqlParam.run_uuid.in_(run_ids)).all()
    return _join(info, tags + params, metrics)


def _from_search(client: MlflowClient) -> pd.DataFrame:
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
            metrics += [(run_id, k, v) for k, v in run.data.metrics.items()
                        if k.startswith(METRIC_PREFIXES)]
        token = page.token
        if not token:
            break
    return _join(pd.DataFrame(info, columns=list(INFO)), tags, metrics)


def _join(info: pd.DataFrame, tags: list, metrics: list) -> pd.DataFrame:
    wide = [pd.DataFrame(rows, columns=["run_id", "key", "value"]).pivot(
        index="run_id", columns="key", values="value") for rows in (tags, metrics) if rows]
    frame = info.set_index("run_id")
    for part in wide:
        frame = frame.join(part)
    frame.columns.name = None
    return frame.reset_index()
