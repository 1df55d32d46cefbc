"""A tracking store checked before MLflow opens it: MLflow migrates whatever SQLite file it is
given (a database of other tables gains MLflow's) and waits forever for a database server that
accepts connections and never answers. Each fault here is one :class:`TrackingError` line and
leaves the store's bytes as they were (SQLite is opened read-only).

Import-light (the standard library; SQLAlchemy only for a database server): the leaderboard
uses it through :func:`medbench.uris.reach`.
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
from contextlib import closing
from functools import cache
from importlib import metadata, util
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from medbench.errors import TrackingError, first_line
from medbench.uris import redact, shown

SQLITE_MAGIC = b"SQLite format 3\x00"
MLFLOW_TABLES = {"experiments", "runs"}  # alembic_version comes last in a new store
SERVERS = ("postgresql", "mysql", "mssql")  # SQLAlchemy dialects MLflow supports
# the driver SQLAlchemy's dialect imports -> the package that provides it
DRIVERS = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient",
           "pymysql": "pymysql", "pyodbc": "pyodbc"}
_REVISION = re.compile(r"^revision\s*(?::\s*str\s*)?=\s*['\"](\w+)['\"]", re.MULTILINE)


def check_store(uri: str, timeout_s: float = 5, setting: str = "tracking.uri",
                create: bool = True) -> None:
    """Raises a one-line :class:`TrackingError` when ``uri`` names a SQLite file that is not a
    readable MLflow store, a folder store MLflow will not open, or a database server that
    does not answer within ``timeout_s``. ``create``: a missing or empty SQLite file may
    become a new store (``train``); without it (``runs cleanup``) it is an error too."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path is not None:
            _check_sqlite(path, timeout_s, setting, create)
    elif scheme == "file":
        _check_folder(Path(unquote(urlsplit(uri).path)), uri, setting)
    elif scheme in SERVERS:
        _check_server(uri, timeout_s, setting)


def sqlite_path(uri: str) -> Path | None:
    """The file of ``sqlite:///<file>``; None for an in-memory database."""
    path = uri.split("://", 1)[1].removeprefix("/").split("?")[0] if "://" in uri else ""
    return None if path in ("", ":memory:") else Path(path)


def _unreadable(path: Path, reason: str, setting: str, hint: str = "") -> TrackingError:
    return TrackingError(f"tracking store {path} is not a readable MLflow store ({reason}): "
                         f"{hint or 'restore it from a backup'}, or point {setting} elsewhere")


def _check_sqlite(path: Path, timeout_s: float, setting: str, create: bool) -> None:
    if path.is_dir():
        raise _unreadable(path, "a folder, not a SQLite file", setting, "name the file in it")
    if not path.exists():
        if not create:
            raise TrackingError(f"no tracking store at {path}: train a run first, or point "
                                f"{setting} at an existing store")
        folder = next(p for p in path.absolute().parents if p.exists())  # made later
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            why = "a file" if not folder.is_dir() else "not writable"
            raise TrackingError(f"cannot create tracking store {path}: {folder} is {why}; "
                                f"point {setting} at a folder you can write")
        return
    size = path.stat().st_size
    if size == 0:
        if not create:
            raise TrackingError(f"tracking store {path} is empty (0 bytes): train a run first, "
                                f"or point {setting} at an existing store")
        return  # SQLite's new, empty database: MLflow makes its store there
    with path.open("rb") as file:
        header = file.read(100)
    if not header.startswith(SQLITE_MAGIC):
        raise _unreadable(path, "file is not a database", setting)
    expected = _header_size(header)
    if expected and size < expected and not Path(f"{path}-wal").exists():
        raise _unreadable(path, f"truncated: {size} of its {expected} bytes", setting)
    tables, revision = _read_schema(path, timeout_s, setting)
    if not tables:
        if not create:
            raise TrackingError(f"tracking store {path} is empty (no tables): train a run "
                                f"first, or point {setting} at an existing store")
        return
    if not MLFLOW_TABLES <= tables:
        others = ", ".join(sorted(tables - MLFLOW_TABLES)[:5])
        raise _unreadable(path, f"a SQLite database of other tables: {others}; left as it is",
                          setting, "name MLflow's store")
    known = mlflow_revisions()
    if revision and known and revision not in known:
        version = metadata.version("mlflow")
        raise _unreadable(path, f"schema revision {revision}, unknown to the installed MLflow "
                          f"{version}: written by a newer MLflow", setting,
                          "upgrade mlflow to the version that wrote it")


def _header_size(header: bytes) -> int:
    """The database's size in bytes by its header, or 0 when the header does not say."""
    if len(header) < 100 or header[24:28] != header[92:96]:
        return 0  # the page count is valid only when the change counters agree
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    return page_size * int.from_bytes(header[28:32], "big")


def _read_schema(path: Path, timeout_s: float, setting: str) -> tuple[set[str], str | None]:
    """The table names and MLflow's schema revision, read without writing a byte."""
    try:
        with closing(sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True,
                                     timeout=float(timeout_s))) as connection:
            tables = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            revision = None
            if "alembic_version" in tables:
                row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
                revision = row[0] if row else None
    except sqlite3.OperationalError as err:
        if "locked" in str(err):
            raise TrackingError(f"tracking store {path} is locked by another process (still "
                                f"after {float(timeout_s):g} s, tracking.timeout_s): let it "
                                f"finish, or point {setting} elsewhere") from None
        raise _unreadable(path, str(err), setting) from None
    except sqlite3.Error as err:  # DatabaseError: "file is not a database", "malformed"
        raise _unreadable(path, str(err), setting) from None
    return tables, revision


@cache
def mlflow_revisions() -> frozenset[str]:
    """The schema revisions the installed MLflow knows (its migration scripts), read without
    importing MLflow; empty when they cannot be found."""
    spec = util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    folder = Path(next(iter(spec.submodule_search_locations))) / "store" / "db_migrations"
    return frozenset(match.group(1) for script in (folder / "versions").glob("*.py")
                     for match in [_REVISION.search(script.read_text(errors="replace"))]
                     if match)


def _check_folder(path: Path, uri: str, setting: str) -> None:
    """A folder (``file:``) store: MLflow 3 opens one only when asked to."""
    if path.is_file():
        raise TrackingError(f"tracking store {redact(uri)} is a file, not a store folder: a "
                            f"SQLite store is named sqlite:///{path}")
    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("1", "true"):
        raise TrackingError(f"tracking store {redact(uri)} is a folder store, which MLflow 3 "
                            f"opens only with MLFLOW_ALLOW_FILE_STORE=true: migrate it (mlflow "
                            f"migrate-filestore), or point {setting} at a sqlite:///<file> store")
    import yaml

    for meta in sorted(path.glob("*/meta.yaml")):
        try:
            ok = isinstance(yaml.safe_load(meta.read_text()), dict)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            ok = False
        if not ok:
            raise _unreadable(path, f"{meta} is not an experiment's meta.yaml", setting)


def _check_server(uri: str, timeout_s: float, setting: str) -> None:
    """One connection to a database server, bounded by ``timeout_s`` (libpq and MySQL count
    whole seconds, at least 2)."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    seconds = max(2, math.ceil(float(timeout_s)))
    where = f"tracking store {shown(uri)}"
    try:
        engine = sqlalchemy.create_engine(uri, poolclass=NullPool,
                                          connect_args=server_connect_args(uri, timeout_s))
    except ModuleNotFoundError as err:
        package = DRIVERS.get(str(err.name), err.name)
        dialect = uri.split(":", 1)[0].split("+", 1)[0]
        raise TrackingError(f"{where} needs the database driver {err.name} (pip install "
                            f"{package}): install it, or name an installed driver in {setting} "
                            f"({dialect}+<driver>://...)") from None
    except Exception as err:  # ArgumentError: a malformed URL
        raise TrackingError(f"{where}: not a database URL ({_first_line(err)})") from None
    try:
        with engine.connect():
            pass
    except Exception as err:
        reason = _first_line(getattr(err, "orig", None) or err)
        what = (f"did not answer within {seconds} s" if "timeout" in reason.lower()
                else f"cannot be opened ({reason})")
        raise TrackingError(f"{where} {what}: start it, or point {setting} elsewhere "
                            f"(tracking.timeout_s={float(timeout_s):g} bounds the wait)") from None
    finally:
        engine.dispose()


def server_connect_args(uri: str, timeout_s: float) -> dict[str, int]:
    """SQLAlchemy ``connect_args`` bounding a database server's answer by ``timeout_s`` (libpq
    and MySQL count whole seconds, at least 2); {} for other URIs."""
    seconds = max(2, math.ceil(float(timeout_s)))
    scheme = uri.split(":", 1)[0]
    if scheme.startswith(("postgresql", "mysql")):
        return {"connect_timeout": seconds}
    return {"timeout": seconds} if scheme.startswith("mssql") else {}


def _first_line(err: object) -> str:
    return first_line(err, redact, limit=1000)
