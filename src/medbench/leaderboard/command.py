"""`medbench leaderboard`: read an existing store, write a user's own folder unless told.

The tables under ``<results>/leaderboards`` are committed to git: they are rebuilt only on
request (``--committed``, or ``--out`` naming them). By default the tables go to
``<results>/leaderboards-local`` (a ``.gitignore`` inside keeps them out of git).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

from medbench.errors import ConfigError
from medbench.store_check import check_store

COMMITTED = "leaderboards"
LOCAL = "leaderboards-local"


def output_folder(results_dir: str | Path, out: str | None, committed: bool,
                  quick: bool) -> Path:
    """``out``; else the committed tables' folder (``committed``); else the local one."""
    if out:
        return Path(out)
    folder = Path(results_dir) / (COMMITTED if committed else LOCAL)
    return folder / "quick" if quick else folder


def _ignored(results_dir: str | Path) -> None:
    """The local folder, with a ``.gitignore`` that keeps it out of git."""
    folder = Path(results_dir) / LOCAL
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# written by medbench leaderboard: a user's own tables\n*\n")


def store_path(uri: str) -> Path | None:
    """The file or folder of a local store (``sqlite:///...``, ``file:...``); None otherwise
    (a server, an in-memory database)."""
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):].split("?")[0]
        return None if path in ("", ":memory:") else Path(path)
    if uri.startswith("file:"):
        return Path(unquote(urlparse(uri).path))
    return None


def require_store(uri: str, timeout_s: float = 5) -> None:
    """A one-line error for a local store that does not exist, is empty (MLflow would make a
    store there, and every table would say that nothing ran) or is not a readable MLflow
    store (:func:`medbench.store_check.check_store`: the file is left as it is)."""
    path = store_path(uri)
    if path is not None and not path.exists():
        raise ConfigError(f"leaderboard: no tracking store at {path} (train a run first, or "
                          f"name an existing store with --uri)")
    if uri.startswith("sqlite:"):
        check_store(uri, timeout_s, "--uri", create=False)


def leaderboard(uri: str, results_dir: str | Path, out: str | None = None,
                committed: bool = False, quick: bool = False, all_configs: bool = False,
                say: Callable[[str], None] = print) -> list[Path]:
    """Builds every table from an existing store and writes them (:func:`output_folder`);
    says what it wrote and how many rows hide other configurations."""
    from medbench.leaderboard.build import build_tables
    from medbench.leaderboard.writers import write_all

    require_store(uri)
    tables = build_tables(uri, quick=quick, all_configs=all_configs)
    if not out and not committed:
        _ignored(results_dir)
    written = write_all(tables, output_folder(results_dir, out, committed, quick), uri)
    for path in written:
        say(f"wrote {path}")
    every = next((t for t in tables if t.key == "all_methods"), None)
    hidden = [n for n in (every.notes if every else []) if "other configuration(s)" in n]
    if hidden:
        say(f"{len(hidden)} row(s) show one of several configurations (named in the notes); "
            f"--all-configs shows a row per configuration")
    return written
