"""A new SQLite tracking store is created whole or not at all.

MLflow creates a missing SQLite store in place: the initial tables, then some 60 migrations,
each committed on its own. A process stopped in between (Ctrl-C, SIGTERM, kill -9 during a
user's first command) leaves a half-migrated file that every later command fails on ("table
... already exists"). Here the store is built in a temp file beside it and renamed into place.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from medbench.atomic import atomic_path
from medbench.store_check import sqlite_path


def create_missing_store(uri: str, artifact_root: str | None = None) -> None:
    """Creates the SQLite store ``uri`` names, when its file does not exist yet."""
    path = sqlite_path(uri) if uri.startswith("sqlite:///") else None
    if path is None or _has_content(path):
        return
    from filelock import FileLock

    # one creator when several commands start on a new store together; the lock lives in the
    # temp folder, as MLflow's own, so that results/ holds the store alone
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    with FileLock(Path(tempfile.gettempdir()) / f"medbench-store-{digest}.lock"):
        if _has_content(path):
            return
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        with atomic_path(path) as temp:
            store = SqlAlchemyStore(f"sqlite:///{temp}", artifact_root or str(path.parent))
            store.engine.dispose()


def _has_content(path: Path) -> bool:
    """An existing store, or anything but an empty file (SQLite reads 0 bytes as a new
    database: the store is built whole over it)."""
    return path.exists() and not (path.is_file() and path.stat().st_size == 0)
