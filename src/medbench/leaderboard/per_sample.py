"""Reading a run's per-sample CSV (torch-free): what the families' leaderboard readers share."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_per_sample_csv(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A numeric per-sample CSV (an ``index`` column and one column per value): the indices
    in ascending order and each other column in that order."""
    header, _, body = Path(path).read_text().partition("\n")
    columns = header.strip().split(",")
    table = np.genfromtxt(body.splitlines(), delimiter=",", ndmin=2)
    table = table[np.argsort(table[:, columns.index("index")], kind="stable")]
    return (table[:, columns.index("index")].astype(np.int64),
            {c: table[:, i] for i, c in enumerate(columns) if c != "index"})
