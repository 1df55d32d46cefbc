"""Shared fixtures: the real data mirror, isolated results folders, composed configs."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch  # noqa: F401  (binds its log handler before any capsys)
import pytest
from mlflow.tracking import MlflowClient

from medbench.config import REPO_ROOT, compose_config

MIRROR = REPO_ROOT.parent / "shared" / "data"
if not os.environ.get("MEDBENCH_DATA_DIR") and MIRROR.is_dir():
    os.environ["MEDBENCH_DATA_DIR"] = str(MIRROR)
os.environ["MEDBENCH_OFFLINE"] = "1"  # tests never download
os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="session", autouse=True)
def nothing_written_into_the_checkout():
    """No test leaves MLflow's default folders (``mlruns/``, ``mlartifacts/``) in the working
    directory or the checkout: an experiment made without an artifact location would."""
    places = {Path.cwd(), REPO_ROOT}
    before = {p / name for p in places for name in ("mlruns", "mlartifacts") if (p / name).exists()}
    yield
    after = {p / name for p in places for name in ("mlruns", "mlartifacts") if (p / name).exists()}
    assert not after - before, f"tests wrote {sorted(map(str, after - before))}"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ["MEDBENCH_DATA_DIR"])
    if not (path / "medmnist" / "breastmnist.npz").is_file():
        pytest.fail(f"real data mirror not found under {path}: set MEDBENCH_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An empty, migrated MLflow SQLite store, made once: creating one runs MLflow's schema
    migrations (seconds each), copying it takes milliseconds."""
    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def results_dir(tmp_path: Path, mlflow_template: Path) -> Path:
    """A test's results folder, holding a fresh copy of the empty MLflow store."""
    path = tmp_path / "results"
    path.mkdir()
    shutil.copyfile(mlflow_template, path / "mlflow.db")
    return path


@pytest.fixture
def store_untouched(results_dir: Path, mlflow_template: Path):
    """Whether the test's MLflow store is still the empty copy it started as (no experiment
    or run was ever opened)."""

    def check() -> bool:
        store = results_dir / "mlflow.db"
        return not store.exists() or store.read_bytes() == mlflow_template.read_bytes()

    return check


@pytest.fixture
def make_cfg(results_dir: Path):
    """Compose the real train.yaml, shrunk for CPU tests and writing under tmp_path."""

    def make(*overrides: str):
        return compose_config([
            f"paths.results_dir={results_dir}", "trainer.enable_progress_bar=false",
            *overrides,
        ])

    return make


@pytest.fixture
def mlflow_client(results_dir: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{results_dir}/mlflow.db")


@pytest.fixture
def only_run(mlflow_client: MlflowClient):
    """The single MLflow run a test produced."""

    def fetch():
        experiments = mlflow_client.search_experiments()
        runs = mlflow_client.search_runs([e.experiment_id for e in experiments])
        assert len(runs) == 1, f"expected one run, found {len(runs)}"
        return runs[0]

    return fetch


@pytest.fixture
def check_bccd_detection_run(mlflow_client: MlflowClient, results_dir: Path):
    """The outputs every detection runner owes a run on BCCD's first 3 test images (53 true
    boxes): metrics in [0, 1] on val and test, the threshold chosen on val, timings, drawings
    and the per-image file the leaderboard's paired tests read."""

    def check(run) -> None:
        import pandas as pd

        metrics = run.data.metrics
        for key in ("map50", "map", "f1", "froc", "precision", "recall", "ap50_WBC"):
            assert 0 <= metrics[f"test/{key}"] <= 1, key
            assert f"val/{key}" in metrics
        assert metrics["test/threshold"] == metrics["val/threshold"]  # chosen on validation
        assert metrics["time/test_ms_per_image"] > 0 and metrics["time/fit_s"] > 0
        files = {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
        assert {"per_image_test.csv", "detections"} <= files
        rows = pd.read_csv(mlflow_client.download_artifacts(
            run.info.run_id, "per_image_test.csv", str(results_dir)))
        assert list(rows.columns) == ["index", "n_true", "n_pred", "tp", "fp", "fn", "f1",
                                      "ap50", "entropy", "sample_id"]
        # every detection runner refers images by their box scores' entropy (tasks/referral)
        assert {"test/aurc", "test/selective_f1_at_90"} <= set(metrics)
        assert all(name.startswith("JPEGImages/BloodImage_") for name in rows["sample_id"])
        assert rows["index"].tolist() == [0, 1, 2] and rows["n_true"].sum() == 53
        assert (rows["tp"] + rows["fp"] == rows["n_pred"]).all()

    return check


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL cluster on a Unix socket (Debian's server binaries)."""
    pytest.importorskip("psycopg2")
    if not shutil.which("initdb") or not shutil.which("pg_ctl"):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    folder = Path(tempfile.mkdtemp(prefix="medbench-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        shutil.chown(folder, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data = folder / "data"
    subprocess.run([*as_owner, "initdb", "-D", str(data), "-A", "trust", "-U", "medbench"],
                   check=True, capture_output=True)
    subprocess.run([*as_owner, "pg_ctl", "-D", str(data), "-w", "-l", str(folder / "log"),
                    "-o", f"-k {folder} -c listen_addresses='' -p 54329", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://medbench@/postgres?host={folder}&port=54329"
    finally:
        subprocess.run([*as_owner, "pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def lenet_breastmnist_run(tmp_path_factory, mlflow_template):
    """A two-epoch LeNet-5 on the real BreastMNIST, in a store of its own, shared by the tests
    that use a trained run (evaluate, predict, register): (results folder, run id, test
    metrics). They add runs and model versions to that store, never change this run."""
    results = tmp_path_factory.mktemp("lenet_breastmnist") / "results"
    results.mkdir()
    shutil.copyfile(mlflow_template, results / "mlflow.db")
    from medbench.train import train_run

    cfg = compose_config([f"paths.results_dir={results}", "trainer.enable_progress_bar=false",
                          "data=breastmnist", "model=lenet5", "trainer.max_epochs=2"])
    run_id, metrics = train_run(cfg)
    return results, run_id, metrics


@contextlib.contextmanager
def mlflow_server(backend_store: str, artifacts: Path) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 over ``backend_store``, serving its artifacts; its
    URL once it answers /health."""
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", backend_store, "--artifacts-destination", str(artifacts),
         "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(180):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start within 90 s")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()
