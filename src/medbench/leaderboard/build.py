"""Tracked runs -> leaderboard tables: one row per method and dataset, with statistics.

Runs of one configuration (same ``medbench.config_hash``: its seeds and folds) form a row; a
rerun of one seed and fold replaces the earlier run. A method tracked under several
configurations shows the one with the most runs (ties: the latest), never the best-scoring
one; the others are named in the table's notes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from medbench.catalog import SURVEY_TABLES, CatalogEntry, catalog
from medbench.leaderboard.collect import COST, collect_runs
from medbench.leaderboard.predictions import PredictionStore
from medbench.leaderboard.stats import accuracy, delong_test, macro_auc, mean_ci, paired_bootstrap
from medbench.leaderboard.table import METRIC_COLUMNS, ROW_COLUMNS, LeaderboardTable

METRICS = {"auc": macro_auc, "acc": accuracy}  # test metrics shown, primary first
ALPHA = 0.05
# paired tests read each row's latest runs only, at most this many (a row of a long sweep
# would otherwise read thousands of prediction files); the mean and CI use every run
MAX_TEST_RUNS = 25


def method_of(runs: pd.DataFrame) -> pd.Series:
    """A run's method: its survey entry, else its experiment preset, else its model."""
    experiment = runs["choice.experiment"].replace("None", None)  # runs before 2026-11-26
    return runs["survey.id"].fillna(experiment).fillna(runs["model"])


def with_source_training(runs: pd.DataFrame) -> pd.DataFrame:
    """``time/fit_s`` including the training of the source runs a run started from
    (``model.pretrained_path=run:<id>``, chained for twice-transfer learning): a two-stage
    method's train time is that of the whole chain."""
    if runs.empty or "time/fit_s" not in runs:
        return runs
    fit = dict(zip(runs.run_id, runs["time/fit_s"], strict=True))
    source = {r: str(p)[4:] for r, p in zip(runs.run_id, runs["model.pretrained_path"],
                                            strict=True) if str(p).startswith("run:")}

    def chain(run_id: str) -> float:
        total, seen = fit.get(run_id, np.nan), {run_id}
        while run_id in source and source[run_id] not in seen:
            run_id = source[run_id]
            seen.add(run_id)
            total += fit.get(run_id, np.nan)
        return total

    return runs.assign(**{"time/fit_s": [chain(r) if r in source else fit[r]
                                         for r in runs.run_id]})


def aggregate(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[tuple[str, str], list[str]],
                                           list[str]]:
    """Rows (method, dataset) of the chosen configuration, the run ids behind each row, and
    notes naming configurations left out."""
    if runs.empty:
        return pd.DataFrame(columns=["method", "dataset", "survey_id"]), {}, []
    runs = runs.assign(method=method_of(runs)).astype({"method": object, "dataset": object})
    keys = ["method", "dataset"]
    # a rerun of the same configuration, seed and fold replaces the earlier run
    runs = runs.sort_values("start_time", kind="stable").drop_duplicates(
        [*keys, "medbench.config_hash", "seed", "cv.fold"], keep="last")
    configs = runs.groupby([*keys, "medbench.config_hash"], sort=False).agg(
        n=("run_id", "size"), latest=("start_time", "max")).reset_index()
    configs = configs.sort_values(["n", "latest"], ascending=False, kind="stable")
    chosen = configs.drop_duplicates(keys)
    notes = []
    for (method, dataset), others in configs.groupby(keys, sort=True):
        if len(others) > 1:
            first = others.iloc[0]
            notes.append(f"{method} on {dataset}: {len(others) - 1} other configuration(s) "
                         f"tracked ({int(others.n.iloc[1:].sum())} runs) not shown; this row "
                         f"is config {first['medbench.config_hash']} ({int(first.n)} runs)")
    picked = runs.merge(chosen[[*keys, "medbench.config_hash"]], on=[*keys,
                                                                   "medbench.config_hash"])
    picked = picked.sort_values("start_time", kind="stable")
    rows = picked.groupby(keys, sort=True).agg(
        model=("model", "last"), runs=("run_id", "size"), survey_id=("survey.id", "last"),
        **{name: (column, how) for name, column, how in (
            ("params", "model/params", "last"), ("macs", "model/macs", "last"),
            ("train_s", "time/fit_s", "median"), ("infer_ms", "time/test_ms_per_image", "median"))
           if column in picked})
    members = picked.groupby(keys, sort=True)["run_id"].agg(list).to_dict()
    for column in ("params", "macs", "train_s", "infer_ms"):
        if column not in rows:
            rows[column] = np.nan
    rows["tuning"] = picked.groupby(keys, sort=True).apply(_tuning, include_groups=False)
    for metric in METRICS:
        values = picked.groupby(keys, sort=True)[f"test/{metric}"] if (
            f"test/{metric}" in picked) else None
        stats = [_summary(v.dropna().to_numpy(float)) for _, v in values] if values else [
            _summary(np.array([]))] * len(rows)
        for i, name in enumerate(("mean", "std", "ci_low", "ci_high")):
            rows[f"{metric}_{name}"] = [s[i] for s in stats]
    return rows.reset_index(), members, notes


def _summary(values: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, std (ddof 1) and the 95% bootstrap CI of the mean; NaN where undefined."""
    if not len(values):
        return np.nan, np.nan, np.nan, np.nan
    std = values.std(ddof=1) if len(values) > 1 else np.nan
    return (values.mean(), std, *mean_ci(values))


def _tuning(runs: pd.DataFrame) -> str:
    trials = runs["tuned.trials"].dropna()
    if not len(trials):
        return "untuned"
    hours = runs["tuned.compute_hours"].dropna()
    spent = f", {float(hours.iloc[-1]):.2f} h" if len(hours) else ""
    return f"{trials.iloc[-1]} trials{spent} ({runs['tuned.study'].dropna().iloc[-1]})"


def rank_and_test(rows: pd.DataFrame, members: dict[tuple[str, str], list[str]],
                  predictions: PredictionStore) -> pd.DataFrame:
    """Ranks by the primary metric within each dataset; marks each metric's best and the rows
    not significantly different from it on the same test set (DeLong for a binary AUC, else a
    paired bootstrap)."""
    out = []
    primary = next(iter(METRICS))
    for _, group in rows.groupby("dataset", sort=True):
        group = group.sort_values(f"{primary}_mean", ascending=False, na_position="last").copy()
        group["rank"] = group[f"{primary}_mean"].rank(ascending=False, method="min",
                                                     na_option="bottom")
        for metric, score in METRICS.items():
            _mark(group, metric, score, members, predictions)
        out.append(group)
    return pd.concat(out, ignore_index=True) if out else rows


def _mark(group: pd.DataFrame, metric: str, score: Callable, members: dict,
          predictions: PredictionStore) -> None:
    means = group[f"{metric}_mean"]
    best = None if means.isna().all() else means.idxmax()
    p_values = []
    for index in group.index:
        if best is None or index == best:
            p_values.append(np.nan)
            continue
        pair = (metric, _key(group.loc[best]), _key(group.loc[index]))
        if pair not in predictions.p_values:  # tables share rows: each pair is tested once
            predictions.p_values[pair] = _p_value(
                metric, score, predictions.runs(members[pair[1]][-MAX_TEST_RUNS:]),
                predictions.runs(members[pair[2]][-MAX_TEST_RUNS:]))
        p_values.append(predictions.p_values[pair])
    group[f"{metric}_best"] = group.index == best
    group[f"{metric}_p"] = p_values
    group[f"{metric}_tied"] = group[f"{metric}_p"] >= ALPHA


def _key(row: pd.Series) -> tuple[str, str]:
    return row["method"], row["dataset"]


def _p_value(metric: str, score: Callable, a: list | None, b: list | None) -> float:
    """NaN when the two rows were not tested on the same samples."""
    if not a or not b or not np.array_equal(a[0].labels, b[0].labels):
        return np.nan
    labels = a[0].labels
    if labels.ndim > 1:  # multi-label: no paired test here
        return np.nan
    if metric == "auc" and a[0].probs.shape[1] == 2:
        # DeLong on each row's mean probability over its runs (seeds, folds)
        mean_a = np.mean([r.probs[:, 1] for r in a], axis=0)
        mean_b = np.mean([r.probs[:, 1] for r in b], axis=0)
        return float(delong_test(labels, mean_a, mean_b)[2])
    return float(paired_bootstrap(labels, [r.probs for r in a], [r.probs for r in b], score)[1])


def build_tables(uri: str, quick: bool = False,
                 entries: list[CatalogEntry] | None = None) -> list[LeaderboardTable]:
    """The survey's tables (5 to 15) and a table of every tracked method, from ``uri``.
    ``quick``: only runs of ``medbench reproduce --quick``; otherwise those are left out."""
    every = collect_runs(uri, (*(f"test/{m}" for m in METRICS), *COST))
    runs = with_source_training(every)
    runs = runs[(runs["medbench.kind"] == "run") & ((runs["medbench.budget"] == "quick") == quick)]
    entries = entries if entries is not None else catalog()
    rows, members, notes = aggregate(runs)
    artifacts = dict(zip(runs.run_id, runs.artifact_uri, strict=True))

    def ranked(subset: pd.DataFrame) -> pd.DataFrame:
        # ranks, bests and ties are those of the table's own rows
        return rank_and_test(subset, members, predictions) if len(subset) else subset

    predictions = PredictionStore(uri, artifacts)
    surveyed = {e.id: e for e in entries}
    tables = [_survey_table(key, rows, surveyed, notes, ranked) for key in SURVEY_TABLES]
    tables.append(LeaderboardTable(
        "all_methods", "Every tracked method (surveyed or not), by dataset",
        list(METRICS), _frame(ranked(rows), surveyed), notes))
    return tables


def _survey_table(key: str, rows: pd.DataFrame, entries: dict[str, CatalogEntry],
                  notes: list[str], ranked: Callable[[pd.DataFrame], pd.DataFrame]
                  ) -> LeaderboardTable:
    spec = SURVEY_TABLES[key]
    chosen = [e for e in entries.values() if spec.includes(e.section, e.task)]
    ids = {e.id for e in chosen}
    mine = ranked(rows[rows["survey_id"].isin(ids)]) if len(rows) else rows
    ran = set(mine["survey_id"]) if len(mine) else set()
    table_notes = [n for n in notes if n.split(" ")[0] in ids]
    for entry in chosen:
        if entry.id in ran:
            continue
        reported = _reported(entry) or "no figures"
        why = (f"not runnable yet: {entry.not_runnable}" if not entry.runnable
               else "no finished runs yet")
        table_notes.append(f"{entry.section} {entry.id} ({reported}): {why}")
    return LeaderboardTable(spec.stem, spec.title, list(METRICS),
                            _frame(mine, entries), table_notes)


def _frame(rows: pd.DataFrame, entries: dict[str, CatalogEntry]) -> pd.DataFrame:
    """The display frame of :class:`LeaderboardTable` (section, data, reported filled in)."""
    if not len(rows):
        return pd.DataFrame(columns=_columns())
    rows = rows.copy()
    found = [entries.get(s) for s in rows["survey_id"]]
    rows["section"] = [e.section if e else "" for e in found]
    rows["data"] = [("proxy" if e.proxy else "paper's own") if e else "" for e in found]
    rows["reported"] = [_reported(e) for e in found]
    ordered = rows.sort_values(["dataset", "rank"], kind="stable")
    ordered["rank"] = ordered["rank"].astype(int)
    return ordered[_columns()].reset_index(drop=True)


def _columns() -> list[str]:
    return [*ROW_COLUMNS, *(f"{m}_{c}" for m in METRICS for c in METRIC_COLUMNS)]


def _reported(entry: CatalogEntry | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (entry.reported if entry else {}).items())


def write_leaderboards(uri: str, results_dir: str | Path, out_dir: str | Path | None = None,
                       quick: bool = False) -> Iterable[Path]:
    """Builds every table and writes Markdown, CSV and one HTML page; returns the files."""
    from medbench.leaderboard.writers import write_all

    out = Path(out_dir) if out_dir else Path(results_dir) / "leaderboards" / (
        "quick" if quick else "")
    return write_all(build_tables(uri, quick=quick), out, uri)
