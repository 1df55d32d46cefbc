"""Per-sample test outputs of tracked runs (the family's per-sample artifact, e.g.
``predictions_test.csv``), read with the family's own reader."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from mlflow.tracking import MlflowClient

from medbench.family import LeaderboardSchema


class PredictionStore:
    """Reads runs' per-sample files: in place for a local artifact store, else downloaded
    once; parsed files are kept for the tests of every table."""

    def __init__(self, uri: str, artifact_uris: dict[str, str]) -> None:
        self.client = MlflowClient(tracking_uri=uri)
        self.artifact_uris = artifact_uris  # run id -> its artifact root, as collected
        self._cache: dict[tuple[str, str], Any] = {}
        self.p_values: dict[tuple, float] = {}  # the leaderboard's tests, by pair of rows
        self._download_dir: Path | None = None

    def runs(self, run_ids: list[str], schema: LeaderboardSchema) -> list[Any] | None:
        """Each run's parsed per-sample file; None when any run lacks it."""
        found = [self.get(run_id, schema) for run_id in run_ids]
        return None if any(p is None for p in found) else found

    def get(self, run_id: str, schema: LeaderboardSchema) -> Any | None:
        key = (run_id, schema.per_sample_file)
        if key not in self._cache:
            path = self._local(run_id, schema.per_sample_file)
            self._cache[key] = None if path is None else schema.read_per_sample(path)
        return self._cache[key]

    def _local(self, run_id: str, name: str) -> Path | None:
        parsed = urlparse(self.artifact_uris[run_id])
        if parsed.scheme in ("", "file"):
            path = Path(unquote(parsed.path)) / name
            return path if path.is_file() else None
        if self._download_dir is None:
            self._download_dir = Path(tempfile.mkdtemp(prefix="medbench-predictions-"))
        try:
            return Path(self.client.download_artifacts(run_id, name, str(self._download_dir)))
        except Exception:  # noqa: BLE001 - any store error means the artifact is not there
            return None
