"""Tracked runs -> leaderboard tables: one row per family, method and dataset, with statistics.

Runs of one configuration (same ``medbench.config_hash``: its seeds and folds) form a row; a
rerun of one seed and fold replaces the earlier run. A row's dataset is the data its runs
tested on (name and test-split fingerprint), and evaluation-only runs are a method apart
(:mod:`medbench.leaderboard.keys`). A method tracked under several configurations on one
dataset shows the one with the most runs (ties: the latest), never the best-scoring one; the
others are named in the table's notes (``all_configs``: a row each). Each family's
leaderboard schema (declared with the family, read through ``medbench.family``) gives its
columns, the direction rows rank in, its per-sample file and its paired test; this module
names no family.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from medbench.catalog import SURVEY_TABLES, CatalogEntry, catalog
from medbench.family import Family, family_names, get_family
from medbench.leaderboard.collect import COST, collect_runs
from medbench.leaderboard.keys import evaluation_only, keyed, method_of
from medbench.leaderboard.predictions import PredictionStore
from medbench.leaderboard.ranks import part_of, rank_metric, rank_notes
from medbench.leaderboard.stats import mean_ci
from medbench.leaderboard.table import METRIC_COLUMNS, ROW_COLUMNS, FamilyPart, LeaderboardTable

ALPHA = 0.05
# paired tests read each row's latest runs only, at most this many (a row of a long sweep
# would otherwise read thousands of prediction files); the mean and CI use every run
MAX_TEST_RUNS = 25
KEYS = ["family", "method", "dataset"]
RUN_ID = re.compile(r"run:([\w-]+)")


def families() -> dict[str, Family]:
    """Every registered family (built-ins and plugins), by name."""
    return {name: get_family(name) for name in family_names()}


def with_source_training(runs: pd.DataFrame) -> pd.DataFrame:
    """``time/fit_s`` including the training of the runs a run was built from: the source
    named by ``model.pretrained_path=run:<id>`` (chained for twice-transfer learning) and the
    members of an ensemble (``model.kwargs.members`` checkpoints ``run:<id>``). A two-stage
    method's train time is that of the whole chain."""
    if runs.empty or "time/fit_s" not in runs:
        return runs
    fit = dict(zip(runs.run_id, runs["time/fit_s"], strict=True))
    sources = {}
    nothing = pd.Series([None] * len(runs), index=runs.index)
    for run_id, *params in zip(runs.run_id, runs.get("model.pretrained_path", nothing),
                               runs.get("model.kwargs.members", nothing), strict=True):
        found = [m for p in params for m in RUN_ID.findall(str(p))]
        if found:
            sources[run_id] = found

    def total(run_id: str, seen: frozenset[str]) -> float:
        own = fit.get(run_id, np.nan)
        if np.isnan(own) and run_id in sources:
            own = 0.0  # evaluated only (an ensemble): its members' training is the cost
        return own + sum(total(s, seen | {s}) for s in sources.get(run_id, ()) if s not in seen)

    return runs.assign(**{"time/fit_s": [total(r, frozenset({r})) if r in sources else fit[r]
                                         for r in runs.run_id]})


def aggregate(runs: pd.DataFrame, metrics: list[str], all_configs: bool = False
              ) -> tuple[pd.DataFrame, dict[tuple[str, ...], list[str]], list[str]]:
    """Rows (family, method, dataset) of the chosen configuration (``all_configs``: of each)
    with ``metrics``' statistics, the run ids behind each row, and notes naming
    configurations left out."""
    if runs.empty:
        return pd.DataFrame(columns=[*KEYS, "survey_id"]), {}, []
    runs = keyed(runs.assign(method=method_of(runs)), all_configs).astype(
        {"method": object, "dataset": object})
    # a rerun of the same configuration, seed and fold replaces the earlier run
    runs = runs.sort_values("start_time", kind="stable").drop_duplicates(
        [*KEYS, "medbench.config_hash", "seed", "cv.fold"], keep="last")
    configs = runs.groupby([*KEYS, "medbench.config_hash"], sort=False).agg(
        n=("run_id", "size"), latest=("start_time", "max")).reset_index()
    configs = configs.sort_values(["n", "latest"], ascending=False, kind="stable")
    chosen = configs.drop_duplicates(KEYS)
    notes = []
    for (_, method, dataset), others in configs.groupby(KEYS, sort=True):
        if len(others) > 1:
            first = others.iloc[0]
            notes.append(f"{method} on {dataset}: {len(others) - 1} other configuration(s) "
                         f"tracked ({int(others.n.iloc[1:].sum())} runs) not shown; this row "
                         f"is config {first['medbench.config_hash']} ({int(first.n)} runs)")
    picked = runs.merge(chosen[[*KEYS, "medbench.config_hash"]], on=[*KEYS,
                                                                   "medbench.config_hash"])
    picked = picked.sort_values("start_time", kind="stable")
    grouped = picked.groupby(KEYS, sort=True)
    rows = grouped.agg(
        model=("model", "last"), runs=("run_id", "size"), survey_id=("survey.id", "last"),
        rank_metric=("data.rank_metric", "last"),
        **{name: (column, how) for name, column, how in (
            ("params", "model/params", "last"), ("macs", "model/macs", "last"),
            ("train_s", "time/fit_s", "median"), ("infer_ms", "time/test_ms_per_image", "median"),
            ("infer_model_ms", "time/infer_ms_per_image", "median"))
           if column in picked})
    members = grouped["run_id"].agg(list).to_dict()
    for column in ("params", "macs", "train_s", "infer_ms", "infer_model_ms"):
        if column not in rows:
            rows[column] = np.nan
    rows["tuning"] = grouped.apply(_tuning, include_groups=False)
    for metric in metrics:
        values = grouped[f"test/{metric}"] if f"test/{metric}" in picked else None
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


def rank_and_test(rows: pd.DataFrame, members: dict[tuple[str, ...], list[str]],
                  predictions: PredictionStore, known: dict[str, Family]) -> pd.DataFrame:
    """Ranks by each family's primary metric, in its direction, within each dataset; marks
    each metric's best and the rows not significantly different from it on the same test set
    (the family's paired test)."""
    out = []
    for (family, _), group in rows.groupby(["family", "dataset"], sort=True):
        part, schema = part_of(family, known, group), known[family].leaderboard
        primary = rank_metric(group, part, schema)
        ascending = primary in part.lower_is_better
        group = group.sort_values(f"{primary}_mean", ascending=ascending,
                                  na_position="last").copy()
        group["rank"] = group[f"{primary}_mean"].rank(ascending=ascending, method="min",
                                                     na_option="bottom")
        for metric in part.metrics:
            _mark(group, metric, metric in part.lower_is_better, schema, members, predictions)
        out.append(group)
    return pd.concat(out, ignore_index=True) if out else rows


def _mark(group: pd.DataFrame, metric: str, lower: bool, schema, members: dict,
          predictions: PredictionStore) -> None:
    means = group[f"{metric}_mean"]
    best = None if means.isna().all() else (means.idxmin() if lower else means.idxmax())
    p_values = []
    for index in group.index:
        if best is None or index == best:
            p_values.append(np.nan)
            continue
        pair = (metric, _key(group.loc[best]), _key(group.loc[index]))
        if pair not in predictions.p_values:  # tables share rows: each pair is tested once
            a = predictions.runs(members[pair[1]][-MAX_TEST_RUNS:], schema)
            b = predictions.runs(members[pair[2]][-MAX_TEST_RUNS:], schema)
            predictions.p_values[pair] = (schema.paired_test(metric, a, b) if a and b
                                          else np.nan)
        p_values.append(predictions.p_values[pair])
    group[f"{metric}_best"] = group.index == best
    group[f"{metric}_p"] = p_values
    group[f"{metric}_tied"] = group[f"{metric}_p"] >= ALPHA


def _key(row: pd.Series) -> tuple[str, ...]:
    return tuple(row[k] for k in KEYS)


def board_runs(uri: str, quick: bool = False
               ) -> tuple[pd.DataFrame, dict[str, Family], list[str]]:
    """The runs leaderboard rows are made of (``quick``: only ``reproduce --quick``'s), the
    registered families and the metrics their tables show."""
    known = families()
    metrics = list(dict.fromkeys(c for f in known.values() for c in (
        *f.leaderboard.columns, *f.leaderboard.optional_columns, *f.leaderboard.rank_choices)))
    every = collect_runs(uri, (*(f"test/{m}" for m in metrics), *COST))
    runs = with_source_training(every.assign(evaluated=evaluation_only(every)))
    # budget: quick (reproduce --quick), debug (debug= overlays) or none (a real run)
    budget = runs["medbench.budget"].fillna("full")
    runs = runs[(runs["medbench.kind"] == "run") & (budget == ("quick" if quick else "full"))]
    return runs, known, metrics


def row_members(uri: str) -> dict[tuple[str, ...], list[str]]:
    """Each leaderboard row's (family, method, dataset) and the ids of its runs, as the tables
    show them (the chosen configuration of each method and dataset)."""
    runs, known, metrics = board_runs(uri)
    _, members, _ = aggregate(runs[runs["family"].isin(list(known))], metrics)
    return members


def build_tables(uri: str, quick: bool = False, entries: list[CatalogEntry] | None = None,
                 all_configs: bool = False) -> list[LeaderboardTable]:
    """The survey's tables (5 to 15) and a table of every tracked method, from ``uri``.
    ``quick``: only runs of ``medbench reproduce --quick``; otherwise those are left out.
    ``all_configs``: a row per configuration (default: per method and dataset)."""
    runs, known, metrics = board_runs(uri, quick)
    unknown = runs[~runs["family"].isin(list(known))]
    runs = runs[runs["family"].isin(list(known))]
    entries = entries if entries is not None else catalog()
    rows, members, notes = aggregate(runs, metrics, all_configs)
    notes += [f"{n} run(s) of family '{family}' not shown: no such family is registered "
              f"(load its plugin: $MEDBENCH_PLUGINS)"
              for family, n in unknown["family"].value_counts().sort_index().items()]
    artifacts = dict(zip(runs.run_id, runs.artifact_uri, strict=True))
    predictions = PredictionStore(uri, artifacts)

    def ranked(subset: pd.DataFrame) -> pd.DataFrame:
        # ranks, bests and ties are those of the table's own rows
        return rank_and_test(subset, members, predictions, known) if len(subset) else subset

    surveyed = {e.id: e for e in entries}
    tables = [_survey_table(key, rows, surveyed, notes, ranked, known) for key in SURVEY_TABLES]
    present = list(dict.fromkeys(rows["family"])) if len(rows) else [next(iter(known))]
    parts = [part_of(f, known, rows) for f in _ordered(present, known)]
    tables.append(_table("all_methods", "Every tracked method (surveyed or not), by dataset",
                         ranked(rows), surveyed, notes + rank_notes(rows, known), parts))
    return tables


def _ordered(names: Iterable[str], known: dict[str, Family]) -> list[str]:
    """Families in registration order (medbench's own first), then unregistered ones in the
    order they come (the survey's section order)."""
    names = list(dict.fromkeys(names))
    return [f for f in known if f in names] + [f for f in names if f not in known]


def _survey_table(key: str, rows: pd.DataFrame, entries: dict[str, CatalogEntry],
                  notes: list[str], ranked: Callable[[pd.DataFrame], pd.DataFrame],
                  known: dict[str, Family]) -> LeaderboardTable:
    spec = SURVEY_TABLES[key]
    chosen = [e for e in entries.values() if spec.includes(e.section, e.family)]
    ids = {e.id for e in chosen}
    mine = ranked(rows[rows["survey_id"].isin(ids)]) if len(rows) else rows
    ran = set(mine["survey_id"]) if len(mine) else set()
    table_notes = [n for n in notes if n.split(" ")[0] in ids] + rank_notes(mine, known)
    for entry in chosen:
        if entry.id in ran:
            continue
        reported = _reported(entry) or "no figures"
        why = (f"not runnable yet: {entry.not_runnable}" if not entry.runnable
               else "no finished runs yet")
        table_notes.append(f"{entry.section} {entry.id} ({reported}): {why}")
    present = [spec.family] if spec.family else [e.family for e in chosen]
    present += list(mine["family"]) if len(mine) else []
    parts = [part_of(f, known, mine) for f in _ordered(present, known)]
    return _table(spec.stem, spec.title, mine, entries, table_notes, parts)


def _table(key: str, title: str, rows: pd.DataFrame, entries: dict[str, CatalogEntry],
           notes: list[str], parts: list[FamilyPart]) -> LeaderboardTable:
    metrics = list(dict.fromkeys(m for part in parts for m in part.metrics))
    return LeaderboardTable(key, title, metrics, _frame(rows, entries, metrics, parts), notes,
                            parts)


def _frame(rows: pd.DataFrame, entries: dict[str, CatalogEntry], metrics: list[str],
           parts: list[FamilyPart]) -> pd.DataFrame:
    """The display frame of :class:`LeaderboardTable` (section, data, reported filled in)."""
    columns = [*ROW_COLUMNS, *(f"{m}_{c}" for m in metrics for c in METRIC_COLUMNS), "family"]
    if not len(rows):
        return pd.DataFrame(columns=columns)
    rows = rows.copy()
    found = [entries.get(s) for s in rows["survey_id"]]
    rows["section"] = [e.section if e else "" for e in found]
    rows["data"] = [("proxy" if e.proxy else "paper's own") if e else "" for e in found]
    rows["reported"] = [_reported(e) for e in found]
    order = {part.family: i for i, part in enumerate(parts)}
    rows["_part"] = rows["family"].map(order)
    ordered = rows.sort_values(["_part", "dataset", "rank"], kind="stable")
    ordered["rank"] = ordered["rank"].astype(int)
    return ordered.reindex(columns=columns).reset_index(drop=True)


def _reported(entry: CatalogEntry | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (entry.reported if entry else {}).items())


def write_leaderboards(uri: str, results_dir: str | Path, out_dir: str | Path | None = None,
                       quick: bool = False, all_configs: bool = False) -> Iterable[Path]:
    """Builds every table and writes Markdown, CSV and one HTML page; returns the files.
    Default folder: ``<results_dir>/leaderboards[/quick]``, the committed tables."""
    from medbench.leaderboard.writers import write_all

    out = Path(out_dir) if out_dir else Path(results_dir) / "leaderboards" / (
        "quick" if quick else "")
    return write_all(build_tables(uri, quick=quick, all_configs=all_configs), out, uri)
