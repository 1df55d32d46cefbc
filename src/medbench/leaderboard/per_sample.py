"""A run's per-sample values (torch-free): what the families' leaderboard readers and paired
tests share."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medbench.leaderboard.stats import paired_bootstrap

# the text column a per-sample file ends with (the sample's file path or index); the
# statistics read the numeric columns before it
SAMPLE_ID = "sample_id"
_LAST_FIELD = re.compile(r',(?:"(?:[^"]|"")*"|[^,\n]*)$', re.MULTILINE)


def numeric_part(path: Path) -> tuple[list[str], str]:
    """A per-sample CSV's column names and body, its trailing ``sample_id`` column dropped."""
    header, _, body = Path(path).read_text().partition("\n")
    columns = header.strip().split(",")
    if columns[-1] == SAMPLE_ID:
        columns.pop()
        body = _LAST_FIELD.sub("", body)
    return columns, body


def read_per_sample_csv(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A per-sample CSV (an ``index`` column and one column per value, then ``sample_id``):
    the indices in ascending order and each numeric column in that order."""
    columns, body = numeric_part(path)
    table = np.genfromtxt(body.splitlines(), delimiter=",", ndmin=2)
    table = table[np.argsort(table[:, columns.index("index")], kind="stable")]
    return (table[:, columns.index("index")].astype(np.int64),
            {c: table[:, i] for i, c in enumerate(columns) if c != "index"})


@dataclass(frozen=True)
class PerSample:
    """One run's per-sample values (a family's per-sample file), ordered by sample index."""

    index: np.ndarray
    values: dict[str, np.ndarray]

    @classmethod
    def read(cls, path: Path) -> PerSample:
        return cls(*read_per_sample_csv(path))


def _nan_mean(_: np.ndarray, values: np.ndarray) -> float:
    return float(np.nanmean(values))


def paired_mean_test(column: str, a: list[PerSample], b: list[PerSample]) -> float:
    """p-value (paired bootstrap over samples) of rows ``a`` and ``b`` differing in the mean of
    ``column``, each row's runs averaged per sample, samples undefined in either left out; NaN
    when they were not scored on the same samples, lack the column or share under 2 samples."""
    if not np.array_equal(a[0].index, b[0].index) or column not in a[0].values:
        return float("nan")
    mean_a = np.nanmean([r.values[column] for r in a], axis=0)
    mean_b = np.nanmean([r.values[column] for r in b], axis=0)
    keep = np.isfinite(mean_a) & np.isfinite(mean_b)
    if keep.sum() < 2:
        return float("nan")
    return float(paired_bootstrap(a[0].index[keep], [mean_a[keep]], [mean_b[keep]],
                                  _nan_mean)[1])
