"""Bad tracking stores, round two: a corrupt, truncated, foreign, newer, empty, missing or
locked SQLite store, a folder store, and database servers that accept connections and never
answer. Each costs one ``error:`` line naming the store without credentials, and no store
file is modified, replaced or created by the command that fails."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import time
from pathlib import Path

import pytest

from medbench.cli import main
from medbench.errors import TrackingError
from medbench.uris import reach

PASSWORD = "pa55-secret"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.name.endswith(".lock")}


def _one_line(code: int, err: str, out: str = "") -> str:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in err, err
    assert PASSWORD not in err + out
    return errors[0]


def _command(kind: str, results_dir: Path, uri: str, *extra: str) -> list[str]:
    if kind == "train":
        return ["train", f"tracking.uri={uri}", f"paths.results_dir={results_dir}",
                "model=lenet5", "debug=fast_dev_run", *extra]
    if kind == "runs":
        return ["runs", "cleanup", f"tracking.uri={uri}", f"paths.results_dir={results_dir}",
                *extra]
    return ["leaderboard", "--uri", uri, "--out", str(results_dir / "tables")]


def _bad_store(kind: str, store: Path) -> str:
    """Turns the real (empty, migrated) MLflow store ``store`` into a bad one of ``kind``;
    returns the reason its message names."""
    if kind == "random":
        store.write_bytes(random.Random(0).randbytes(64 * 1024))
        return "(file is not a database)"
    if kind == "truncated":
        data = store.read_bytes()
        store.write_bytes(data[: len(data) // 2])
        return f"(truncated: {len(data) // 2} of its {len(data)} bytes)"
    if kind == "foreign":
        store.unlink()
        with sqlite3.connect(store) as connection:
            connection.execute("CREATE TABLE patients (id INTEGER, name TEXT)")
        connection.close()
        return "(a SQLite database of other tables: patients; left as it is)"
    with sqlite3.connect(store) as connection:  # "newer": a schema revision MLflow lacks
        connection.execute("UPDATE alembic_version SET version_num = 'ffffeeee0000'")
    connection.close()
    return "(schema revision ffffeeee0000, unknown to the installed MLflow"


@pytest.mark.parametrize("command", ["train", "leaderboard", "runs"])
@pytest.mark.parametrize("kind", ["random", "truncated", "foreign", "newer"])
def test_a_store_that_is_not_a_readable_mlflow_store_is_one_line_and_left_as_it_is(
        kind, command, results_dir, capsys):
    store = results_dir / "mlflow.db"
    reason = _bad_store(kind, store)
    before, files = _digest(store), _listing(results_dir)
    code = main(_command(command, results_dir, f"sqlite:///{store}"))
    line = _one_line(code, capsys.readouterr().err)
    assert line.startswith(f"error: tracking store {store} is not a readable MLflow store "
                           f"{reason}"), line
    assert ("--uri" if command == "leaderboard" else "tracking.uri") + " elsewhere" in line
    assert _digest(store) == before  # was migrated in place ("foreign") or a traceback
    assert _listing(results_dir) == files


def test_an_empty_file_may_become_a_store_but_is_not_read_as_one(results_dir, capsys):
    store = results_dir / "empty.db"
    store.touch()
    for command in ("leaderboard", "runs"):
        code = main(_command(command, results_dir, f"sqlite:///{store}"))
        line = _one_line(code, capsys.readouterr().err)
        assert f"tracking store {store} is empty (0 bytes): train a run first" in line
        assert store.stat().st_size == 0  # not migrated into an empty MLflow store
    reach(f"sqlite:///{store}", 2, 0)  # train: SQLite's new database, MLflow's store to be


def test_a_missing_store_is_not_created_by_reading_commands(results_dir, capsys):
    folder = results_dir / "nowhere"
    uri = f"sqlite:///{folder}/mlflow.db"
    code = main(_command("runs", results_dir, uri))
    line = _one_line(code, capsys.readouterr().err)
    assert f"no tracking store at {folder}/mlflow.db: train a run first, or point " \
           "tracking.uri at an existing store" in line
    code = main(_command("leaderboard", results_dir, uri))
    assert "no tracking store at" in _one_line(code, capsys.readouterr().err)
    assert not folder.exists()  # runs cleanup made the folder and a new store before


def test_a_folder_is_not_a_store(results_dir, capsys, monkeypatch):
    code = main(_command("train", results_dir, f"sqlite:///{results_dir}"))
    assert (f"tracking store {results_dir} is not a readable MLflow store (a folder, not a "
            "SQLite file)") in _one_line(code, capsys.readouterr().err)
    code = main(_command("train", results_dir, f"file://{results_dir}/mlruns"))
    assert "is a folder store, which MLflow 3 opens only with MLFLOW_ALLOW_FILE_STORE=true" \
        in _one_line(code, capsys.readouterr().err)  # was MLflow's traceback
    assert not (results_dir / "mlruns").exists()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    meta = results_dir / "mlruns" / "0" / "meta.yaml"
    meta.parent.mkdir(parents=True)
    meta.write_bytes(b"\x00\xff: [unclosed")
    with pytest.raises(TrackingError, match="0/meta.yaml is not an experiment's meta.yaml"):
        reach(f"file://{results_dir}/mlruns", 2, 0)
    with pytest.raises(TrackingError, match="is a file, not a store folder: a SQLite store is "
                       "named sqlite:///"):
        reach(f"file://{results_dir}/mlflow.db", 2, 0)


def test_a_store_locked_longer_than_the_timeout_is_one_line(results_dir, capsys):
    store = results_dir / "mlflow.db"
    before = _digest(store)
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than the timeout
    try:
        start = time.monotonic()
        code = main(_command("runs", results_dir, f"sqlite:///{store}",
                             "tracking.timeout_s=1"))
        elapsed = time.monotonic() - start
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    line = _one_line(code, capsys.readouterr().err)
    assert f"tracking store {store} is locked by another process (still after 1 s" in line
    assert elapsed < 10 and _digest(store) == before


@pytest.mark.parametrize("command", ["train", "runs", "leaderboard", "tune"])
def test_a_database_server_that_never_answers_is_bounded_by_the_timeout(
        command, silent_port, results_dir, capsys):
    pytest.importorskip("psycopg2")
    uri = f"postgresql+psycopg2://alice:{PASSWORD}@127.0.0.1:{silent_port}/mlflow"
    start = time.monotonic()
    if command == "tune":
        code = main(["tune", "search=optimizer", f"paths.results_dir={results_dir}",
                     f"study.storage={uri}", "tracking.timeout_s=2"])
    elif command == "leaderboard":  # tracking.timeout_s of the default config: 5 s
        code = main(_command(command, results_dir, uri))
    else:
        code = main(_command(command, results_dir, uri, "tracking.timeout_s=2"))
    elapsed = time.monotonic() - start
    line = _one_line(code, capsys.readouterr().err)
    if command == "tune":  # the study's lock connects first
        assert (f"study.storage: cannot open 'postgresql+psycopg2://***@127.0.0.1:{silent_port}"
                "/mlflow'") in line and "timeout expired" in line
    else:
        seconds = 5 if command == "leaderboard" else 2
        assert (f"tracking store postgresql+psycopg2://127.0.0.1:{silent_port}/mlflow "
                f"(credentials hidden) did not answer within {seconds} s") in line
    assert elapsed < 15  # was a hang with no output (killed after 45 s)


def test_a_missing_database_driver_is_one_line(results_dir, capsys):
    try:
        import psycopg  # noqa: F401  (SQLAlchemy's driver for a plain postgresql://)
        pytest.skip("psycopg is installed")
    except ImportError:
        pass
    uri = f"postgresql://alice:{PASSWORD}@127.0.0.1:1/mlflow"
    code = main(_command("runs", results_dir, uri))
    line = _one_line(code, capsys.readouterr().err)  # was ModuleNotFoundError's traceback
    assert ("tracking store postgresql://127.0.0.1:1/mlflow (credentials hidden) needs the "
            "database driver psycopg (pip install psycopg[binary])") in line


def test_a_store_under_a_file_cannot_be_created(results_dir):
    # train's own check (paths) says so first; reach() guards every other opener of a store
    with pytest.raises(TrackingError, match=f"cannot create tracking store {results_dir}/"
                       f"mlflow.db/runs/mlflow.db: {results_dir}/mlflow.db is a file"):
        reach(f"sqlite:///{results_dir}/mlflow.db/runs/mlflow.db", 2, 0)
