"""`medbench register`: a real run as a versioned pyfunc model of the MLflow Model Registry,
carrying its preprocessing; loaded it gives the run's own test probabilities, and
`mlflow models serve` (the local environment, 127.0.0.1) answers a real request."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from medbench.cli import main
from medbench.errors import DataError

NAME = "lenet5-breastmnist"
SERVE_TIMEOUT_S = 60
LABELS = ["malignant", "normal, benign"]  # BreastMNIST's; the run's CSV says prob_0, prob_1
COLUMNS = ["predicted", *(f"prob_{label}" for label in LABELS)]


@pytest.fixture(scope="module")
def registered(lenet_breastmnist_run):
    """The shared two-epoch BreastMNIST LeNet-5, registered once: (results, run id, uri)."""
    results, run_id, _ = lenet_breastmnist_run
    assert main(["register", run_id, f"paths.results_dir={results}"]) == 0
    return results, run_id, f"sqlite:///{results / 'mlflow.db'}"


@pytest.fixture(scope="module")
def test_images(data_dir):
    return np.load(data_dir / "medmnist" / "breastmnist.npz")["test_images"]


def _expected(results: Path, run_id: str, indices: list[int]) -> pd.DataFrame:
    table = pd.read_csv(results / "runs" / run_id / "predictions_test.csv").set_index("index")
    return table.loc[indices, ["prob_0", "prob_1"]].reset_index(drop=True)


@pytest.fixture
def tracking(registered, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered[2])
    mlflow.set_tracking_uri(registered[2])
    mlflow.set_registry_uri(registered[2])
    yield registered
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def test_the_registry_holds_a_tagged_version_that_predicts_as_the_run(tracking, test_images,
                                                                       capsys):
    results, run_id, uri = tracking
    version = MlflowClient(uri).get_model_version(NAME, "1")
    assert version.run_id == run_id
    assert version.tags["medbench.source_run"] == run_id
    assert version.tags["dataset"] == "breastmnist"
    auc = MlflowClient(uri).get_run(run_id).data.metrics["test/auc"]
    assert float(version.tags["test/auc"]) == pytest.approx(auc)

    model = mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    assert [s.name for s in model.metadata.get_output_schema().inputs] == COLUMNS
    indices = [0, 1, 2, 7, 41]
    got = model.predict(test_images[indices])  # (N, H, W) uint8, as the data source reads
    assert list(got.columns) == COLUMNS
    np.testing.assert_allclose(got[COLUMNS[1:]].to_numpy(),
                               _expected(results, run_id, indices).to_numpy(), atol=1e-5)
    assert set(got["predicted"]) <= set(LABELS)

    with pytest.raises(DataError) as err:  # an image the network was not built for
        model.predict(np.zeros((1, 32, 32), dtype=np.uint8))
    assert "image 0 gives an input of shape [1, 32, 32]" in str(err.value)
    assert "was built for [1, 28, 28]" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(mlflow.exceptions.MlflowException, match="(?i)shape"):  # the signature
        model.predict(np.zeros((1, 28, 28, 3), dtype=np.uint8))  # (N, H, W) for 1 channel

    # the study's best trial (the parent run's best_trial tag): the same run, version 2
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("medbench").experiment_id
    parent = client.create_run(experiment, tags={"medbench.kind": "study",
                                                 "optuna.study": "s1", "best_trial": "3"})
    client.set_terminated(parent.info.run_id)
    client.set_tag(run_id, "optuna.study", "s1")
    client.set_tag(run_id, "optuna.trial", "3")
    capsys.readouterr()
    assert main(["register", "study:s1", f"paths.results_dir={results}"]) == 0
    assert f"run {run_id} registered as model '{NAME}' version 2" in capsys.readouterr().out
    assert client.get_model_version(NAME, "2").tags["medbench.source_run"] == run_id


@pytest.mark.parametrize(("what", "says"), [
    ("study:nope", "no finished study 'nope' with a best trial"),
    ("0" * 32, f"run '{'0' * 32}' not found"),
])
def test_an_unknown_study_or_run_is_one_line(tracking, capsys, what, says):
    results = tracking[0]
    assert main(["register", what, f"paths.results_dir={results}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err
    assert len(err.strip().splitlines()) == 1


def test_a_leaderboard_row_serves_its_run_best_on_validation(tracking, capsys, results_dir):
    """``row:<method>@<dataset>``: the row's run of best val/auc, not of best test/auc."""
    from mlflow.tracking import MlflowClient

    from medbench.serving import row_run

    uri = f"sqlite:///{results_dir / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("medbench", str(results_dir / "mlartifacts"))
    ids = []
    for seed, (val, test) in enumerate([(0.7, 0.95), (0.9, 0.6), (0.8, 0.7)]):
        run = client.create_run(experiment, tags={
            "medbench.kind": "run", "family": "classification", "model": "lenet5",
            "dataset": "breastmnist", "medbench.config_hash": "abc", "seed": str(seed)})
        client.log_metric(run.info.run_id, "val/auc", val)
        client.log_metric(run.info.run_id, "test/auc", test)
        client.set_terminated(run.info.run_id)
        ids.append(run.info.run_id)
    assert row_run(client, uri, "lenet5@breastmnist") == row_run(client, uri, "lenet5") == ids[1]
    # the shared trained run's own row, registered by name
    results, run_id, _ = tracking
    assert main(["register", "row:lenet5@breastmnist", f"paths.results_dir={results}"]) == 0
    assert f"run {run_id} registered as model" in capsys.readouterr().out
    assert main(["register", "row:lenet", f"paths.results_dir={results}"]) == 1
    err = capsys.readouterr().err
    assert err == "error: medbench register: no leaderboard row 'lenet'; did you mean lenet5?\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_mlflow_models_serve_answers_a_real_request(tracking, test_images, tmp_path):
    results, run_id, uri = tracking
    port = _free_port()
    bin_dir = Path(sys.executable).parent  # the local env's mlflow and uvicorn
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri,
           "MEDBENCH_DATA_DIR": str(tmp_path / "no-data"),  # the preprocessing travels
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    mlflow_cli = bin_dir / "mlflow"
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([str(mlflow_cli), "models", "serve", "-m", f"models:/{NAME}/1",
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
                               "-w", "1"], env=env, stdout=log, stderr=subprocess.STDOUT,
                              cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        start = time.monotonic()
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() - start < SERVE_TIMEOUT_S, "mlflow models serve: no /ping"
            time.sleep(0.5)
        print(f"mlflow models serve ready in {time.monotonic() - start:.1f} s")
        body = json.dumps({"inputs": test_images[[3, 4]].tolist()}).encode()
        request = urllib.request.Request(f"{base}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            predictions = pd.DataFrame(json.loads(answer.read())["predictions"])
        assert list(predictions.columns) == COLUMNS
        np.testing.assert_allclose(predictions[COLUMNS[1:]].to_numpy(),
                                   _expected(results, run_id, [3, 4]).to_numpy(), atol=1e-5)

        wrong = json.dumps({"inputs": np.zeros((1, 32, 32), np.uint8).tolist()}).encode()
        request = urllib.request.Request(f"{base}/invocations", data=wrong,
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=30)
        assert err.value.code == 400  # MLflow's BAD_REQUEST; its stack trace names the cause
        assert "was built for [1, 28, 28]" in json.loads(err.value.read())["stack_trace"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_a_run_of_another_family_is_refused_in_one_line(tracking, capsys):
    """The source run's own config, its data declaring the segmentation family."""
    from omegaconf import OmegaConf

    results, run_id, uri = tracking
    client = MlflowClient(uri)
    other = client.create_run(client.get_experiment_by_name("medbench").experiment_id)
    cfg = OmegaConf.load(results / "runs" / run_id / "config.yaml")
    cfg.data.family = "segmentation"
    (results / "runs" / other.info.run_id).mkdir(parents=True)
    OmegaConf.save(cfg, results / "runs" / other.info.run_id / "config.yaml")
    before = client.search_registered_models()
    assert main(["register", other.info.run_id, f"paths.results_dir={results}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "is a segmentation run; only classification runs are served yet" in err
    assert [m.latest_versions for m in client.search_registered_models()] == [
        m.latest_versions for m in before]  # nothing registered
