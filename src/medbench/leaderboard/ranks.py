"""Which metric a leaderboard part shows and ranks by (torch-free).

A family's schema gives its columns, the primary first; a dataset may rank its rows by another
metric the schema offers (``LeaderboardSchema.rank_choices``), named by its runs'
``data.rank_metric`` tag (``DatasetInfo.rank_metric``): MIT-BIH beats rank by the jk index,
since predicting the majority class already scores a high accuracy there.
"""

from __future__ import annotations

import pandas as pd

from medbench.family import Family
from medbench.leaderboard.table import FamilyPart


def part_of(family: str, known: dict[str, Family],
            rows: pd.DataFrame | None = None) -> FamilyPart:
    """A family's columns in a table: none for a family with no registered schema yet; the
    schema's columns, its optional columns that some of its ``rows`` have, then the metrics
    some of its ``rows`` rank by (``data.rank_metric``)."""
    if family not in known:
        return FamilyPart(family, ())
    schema, metric = known[family].leaderboard, known[family].metric
    columns = schema.columns
    mine = rows[rows["family"] == family] if rows is not None and len(rows) else None
    if mine is not None:
        columns = (*columns, *(m for m in schema.optional_columns
                               if f"{m}_mean" in mine and mine[f"{m}_mean"].notna().any()))
    if mine is not None and "rank_metric" in mine:
        chosen = mine["rank_metric"].dropna()
        columns = (*columns, *(m for m in dict.fromkeys(chosen) if m in schema.rank_choices
                               and m not in columns))
    return FamilyPart(family, columns, frozenset(
        c for c in columns if not metric(c).higher_is_better), schema.test_note)


def rank_metric(group: pd.DataFrame, part: FamilyPart, schema) -> str:
    """What a dataset's rows rank by: its runs' ``data.rank_metric`` when the family's schema
    offers it (a class-balanced metric for imbalanced data), else the primary column."""
    chosen = group["rank_metric"].dropna() if "rank_metric" in group else []
    if len(chosen) and chosen.iloc[-1] in (*schema.columns, *schema.rank_choices):
        return str(chosen.iloc[-1])
    return part.metrics[0]



def rank_notes(rows: pd.DataFrame, known: dict[str, Family]) -> list[str]:
    """A note per dataset ranked by a metric other than its family's primary."""
    if not len(rows) or "rank_metric" not in rows:
        return []
    notes = []
    for (family, dataset), group in rows.groupby(["family", "dataset"], sort=True):
        if family in known:
            schema = known[family].leaderboard
            chosen = rank_metric(group, part_of(family, known, group), schema)
            if chosen != schema.columns[0]:
                notes.append(f"{dataset} rows rank by test/{chosen} (the data's rank_metric), "
                             f"not test/{schema.columns[0]}")
    return notes
