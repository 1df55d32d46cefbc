"""One leaderboard table: the rows of a survey table, ours beside the papers' figures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

# per metric m of a family part, the frame has these columns (f"{m}_{suffix}")
METRIC_COLUMNS = ("mean", "std", "ci_low", "ci_high", "best", "tied", "p")
# the other columns of every frame, in display order
ROW_COLUMNS = ("rank", "method", "section", "model", "dataset", "data", "reported", "runs",
               "params", "macs", "train_s", "infer_ms", "infer_model_ms", "tuning")


@dataclass(frozen=True)
class FamilyPart:
    """The rows of one task family in a table: its metric columns (primary first), those
    ranked ascending (lower is better) and how its ties were tested."""

    family: str
    metrics: tuple[str, ...]
    lower_is_better: frozenset[str] = frozenset()
    test_note: str = ""


@dataclass
class LeaderboardTable:
    """A survey table (e.g. its Table 5, lung classification) as a frame, one row per method
    and dataset, in one part per task family (Table 15 and the every-method table span
    several; each family has its own metric columns and ranks within itself).

    Row columns (:data:`ROW_COLUMNS`, plus ``family`` when the table has parts): ``rank`` by
    the family's primary metric within the dataset (1 = best); ``method`` (survey id or
    model); ``section``; ``model``; ``dataset``; ``data`` ("paper's own" or "proxy");
    ``reported`` (the paper's figures, text); ``runs`` (seeds x folds aggregated); ``params``;
    ``macs`` (one input); ``train_s`` (median fit seconds); ``infer_ms`` (median test ms per
    item, the whole test loop); ``infer_model_ms`` (median ms per item of the network's
    forward passes alone; NaN for runs before it was timed); ``tuning`` ("untuned" or "<n>
    trials, <h> h"). Metric columns for each of
    ``metrics`` (test metrics, e.g. "auc", "acc"): ``<m>_mean``, ``<m>_std`` (over runs),
    ``<m>_ci_low`` / ``<m>_ci_high`` (95% bootstrap CI of the mean), ``<m>_best`` (best of
    its dataset), ``<m>_tied`` (not significantly different from that best on the same test
    set), ``<m>_p`` (p-value of that test; NaN for the best itself).
    """

    key: str  # file stem, e.g. "table05_lung"
    title: str  # e.g. "Table 5: lung classification"
    metrics: list[str]  # primary first (of every part, in part order)
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    parts: list[FamilyPart] = field(default_factory=list)

    def family_parts(self) -> list[tuple[FamilyPart, pd.DataFrame]]:
        """(part, its rows) in display order; a table built without parts is one part."""
        if not self.parts:
            return [(FamilyPart("", tuple(self.metrics)), self.frame)]
        if "family" not in self.frame:
            return [(self.parts[0], self.frame)]
        return [(part, self.frame[self.frame["family"] == part.family]) for part in self.parts]


def missing(value: object) -> bool:
    """A cell without a value (None or NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def si(value: object) -> str:
    """A count with an SI suffix (12.3 M); "–" when missing."""
    if missing(value):
        return "–"
    for scale, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if value >= scale:
            return f"{value / scale:.1f}{suffix}"
    return f"{value:.0f}"
