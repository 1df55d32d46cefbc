"""How the leaderboard reads and compares classification runs (torch-free).

Each run's ``predictions_test.csv`` (index, label or label_<k>, prob_<k>, sample_id) is read;
two rows are compared on the same test images with DeLong's test for a binary AUC (on each
row's run-averaged probabilities), else a paired bootstrap of the mean over runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medbench.leaderboard.per_sample import numeric_part
from medbench.leaderboard.stats import accuracy, delong_test, macro_auc, paired_bootstrap

PER_SAMPLE_FILE = "predictions_test.csv"
SCORES = {"auc": macro_auc, "acc": accuracy}
TEST_NOTE = ("for a binary AUC DeLong's test on each row's run-averaged probabilities, else a "
             "paired bootstrap of the mean over runs, 1000 resamples of the test images")


@dataclass(frozen=True)
class Predictions:
    """One run's test predictions, ordered by sample index."""

    labels: np.ndarray  # (N,) class indices, or (N, C) multi-label
    probs: np.ndarray  # (N, C)

    @classmethod
    def read(cls, path: Path) -> Predictions:
        # a plain numeric CSV parsed in one numpy call: pandas' per-file overhead is ~10x
        # this, and a leaderboard reads thousands of these files
        columns, body = numeric_part(path)
        values = np.fromstring(body.strip().replace("\n", ","), sep=",")  # numpy's C parser
        table = values.reshape(-1, len(columns))
        table = table[np.argsort(table[:, columns.index("index")], kind="stable")]
        label_columns = [i for i, c in enumerate(columns) if c == "label" or c.startswith("label_")]
        labels = table[:, label_columns].astype(np.int64)
        probs = table[:, [i for i, c in enumerate(columns) if c.startswith("prob_")]]
        return cls(labels[:, 0] if len(label_columns) == 1 and columns[label_columns[0]] == "label"
                   else labels, probs)


def paired_test(metric: str, a: list[Predictions], b: list[Predictions]) -> float:
    """p-value of rows ``a`` and ``b`` (their runs' predictions) differing on ``metric``; NaN
    when they were not tested on the same samples, or for multi-label labels."""
    if not np.array_equal(a[0].labels, b[0].labels):
        return np.nan
    labels = a[0].labels
    if labels.ndim > 1 or metric not in SCORES:  # multi-label, or no score here: no test
        return np.nan
    if metric == "auc" and a[0].probs.shape[1] == 2:
        mean_a = np.mean([r.probs[:, 1] for r in a], axis=0)
        mean_b = np.mean([r.probs[:, 1] for r in b], axis=0)
        return float(delong_test(labels, mean_a, mean_b)[2])
    return float(paired_bootstrap(labels, [r.probs for r in a], [r.probs for r in b],
                                  SCORES[metric])[1])
