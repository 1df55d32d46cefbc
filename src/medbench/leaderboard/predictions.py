"""Per-sample test predictions of tracked runs (their ``predictions_test.csv`` artifact)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
from mlflow.tracking import MlflowClient

FILE = "predictions_test.csv"


@dataclass(frozen=True)
class Predictions:
    """One run's test predictions, ordered by sample index."""

    labels: np.ndarray  # (N,) class indices, or (N, C) multi-label
    probs: np.ndarray  # (N, C)

    @classmethod
    def read(cls, path: Path) -> Predictions:
        # a plain numeric CSV parsed in one numpy call: pandas' per-file overhead is ~10x
        # this, and a leaderboard reads thousands of these files
        header, _, body = path.read_text().partition("\n")
        columns = header.strip().split(",")
        values = np.fromstring(body.strip().replace("\n", ","), sep=",")  # numpy's C parser
        table = values.reshape(-1, len(columns))
        table = table[np.argsort(table[:, columns.index("index")], kind="stable")]
        label_columns = [i for i, c in enumerate(columns) if c == "label" or c.startswith("label_")]
        labels = table[:, label_columns].astype(np.int64)
        probs = table[:, [i for i, c in enumerate(columns) if c.startswith("prob_")]]
        return cls(labels[:, 0] if len(label_columns) == 1 and columns[label_columns[0]] == "label"
                   else labels, probs)


class PredictionStore:
    """Reads runs' predictions: in place for a local artifact store, else downloaded once."""

    def __init__(self, uri: str, artifact_uris: dict[str, str]) -> None:
        self.client = MlflowClient(tracking_uri=uri)
        self.artifact_uris = artifact_uris  # run id -> its artifact root, as collected
        self._cache: dict[str, Predictions | None] = {}
        self.p_values: dict[tuple, float] = {}  # the leaderboard's tests, by pair of rows
        self._download_dir: Path | None = None

    def runs(self, run_ids: list[str]) -> list[Predictions] | None:
        """Each run's predictions; None when any run lacks them."""
        found = [self.get(run_id) for run_id in run_ids]
        return None if any(p is None for p in found) else found

    def get(self, run_id: str) -> Predictions | None:
        if run_id not in self._cache:
            self._cache[run_id] = self._read(run_id)
        return self._cache[run_id]

    def _read(self, run_id: str) -> Predictions | None:
        parsed = urlparse(self.artifact_uris[run_id])
        if parsed.scheme in ("", "file"):
            path = Path(unquote(parsed.path)) / FILE
            return Predictions.read(path) if path.is_file() else None
        if self._download_dir is None:
            self._download_dir = Path(tempfile.mkdtemp(prefix="medbench-predictions-"))
        try:
            local = self.client.download_artifacts(run_id, FILE, str(self._download_dir))
        except Exception:  # noqa: BLE001 - any store error means the artifact is not there
            return None
        return Predictions.read(Path(local))
