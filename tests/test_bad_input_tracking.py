"""Bad tracking stores and leaks: a server that refuses or never answers costs about
``tracking.timeout_s`` and one line; no credential reaches params, tags, config.yaml, error
tags, error.txt, exported configs, leaderboard captions or the console."""

from __future__ import annotations

import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import optuna
import pytest
import yaml

from medbench.cli import main
from medbench.errors import TrackingError
from medbench.tracking import Tracker, flatten
from medbench.uris import (
    BACKOFF_VAR,
    QUIET_URL_VAR,
    RETRIES_VAR,
    TIMEOUT_VAR,
    reach,
    redact,
    redact_config,
    shown,
)

PASSWORD = "pa55-secret"  # no param, tag or file of a run may hold it
ENV_SECRET = "envsecret-4711"


@pytest.fixture(autouse=True)
def _mlflow_http_variables(monkeypatch) -> None:
    """What a test's Tracker sets in os.environ is undone afterwards."""
    for name in (TIMEOUT_VAR, RETRIES_VAR, BACKOFF_VAR, QUIET_URL_VAR):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def refused_port() -> int:
    """A port nothing listens on: bound, then closed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def _one_line(code: int, err: str, out: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in err, err
    assert PASSWORD not in err + out
    return errors[0]


def _command(kind: str, results_dir: Path, uri: str, *extra: str) -> list[str]:
    common = [f"paths.results_dir={results_dir}", *extra]
    if kind == "train":
        return ["train", f"tracking.uri={uri}", *common]
    if kind == "tune":
        return ["tune", "search=optimizer", f"tracking.uri={uri}", *common]
    if kind == "runs":
        return ["runs", "cleanup", f"tracking.uri={uri}", *common]
    return ["leaderboard", "--uri", uri]


@pytest.mark.parametrize("kind", ["train", "tune", "runs", "leaderboard"])
def test_a_refused_tracking_server_is_one_line_without_its_password(
        kind, refused_port, results_dir, capsys, store_untouched):
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{refused_port}"
    start = time.monotonic()
    code = main(_command(kind, results_dir, uri, "tracking.timeout_s=2"))
    elapsed = time.monotonic() - start
    captured = capsys.readouterr()
    line = _one_line(code, captured.err, captured.out)
    assert (f"tracking server http://127.0.0.1:{refused_port} (credentials hidden) refused the "
            "connection: start it, or set") in line
    assert ("--uri" if kind == "leaderboard" else "tracking.uri") in line
    assert elapsed < 15  # was 256 s: MLflow's 7 retries with backoff
    assert store_untouched()


def test_a_server_that_never_answers_is_bounded_by_the_timeout(silent_port, results_dir,
                                                               capsys):
    uri = f"http://bob:{PASSWORD}@127.0.0.1:{silent_port}/mlflow"
    start = time.monotonic()
    code = main(_command("train", results_dir, uri, "tracking.timeout_s=1"))
    elapsed = time.monotonic() - start
    captured = capsys.readouterr()
    line = _one_line(code, captured.err, captured.out)
    assert (f"tracking server http://127.0.0.1:{silent_port}/mlflow (credentials hidden) did "
            "not answer within 1 s") in line
    assert 0.9 < elapsed < 15  # was a hang with no output


def test_bad_timeout_settings_are_one_line(refused_port, results_dir, capsys):
    uri = f"http://127.0.0.1:{refused_port}"
    code = main(_command("train", results_dir, uri, "tracking.timeout_s=0"))
    captured = capsys.readouterr()
    assert "tracking.timeout_s: expected seconds > 0, got 0" in _one_line(code, captured.err,
                                                                          captured.out)


def test_a_server_that_answers_is_reached_with_mlflow_bounded():
    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            self.send_response(404)  # any answer will do
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        reach(f"http://u:{PASSWORD}@127.0.0.1:{server.server_port}", 3.2, 1)
        assert os.environ[TIMEOUT_VAR] == "4" and os.environ[RETRIES_VAR] == "1"
        assert os.environ[QUIET_URL_VAR] == "true"  # MLflow's "View run at <uri>" lines
    finally:
        server.shutdown()
    with pytest.raises(TrackingError, match="tracking.retries: expected an integer >= 0"):
        reach("https://example.invalid", 5, -1)


def test_one_redaction_for_uris_queries_keys_and_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ENV_SECRET)
    text = (f"postgresql://u:{PASSWORD}@db:5432/x, https://tok{PASSWORD}@h/p?a=1&token="
            f"{PASSWORD}&b=2, sqlite:///a@b.db, the password is {ENV_SECRET}")
    assert redact(text) == ("postgresql://***@db:5432/x, https://***@h/p?a=1&token=***&b=2, "
                            "sqlite:///a@b.db, the password is ***")
    assert shown(f"http://u:{PASSWORD}@h:5000/x?q=1") == "http://h:5000/x (credentials hidden)"
    assert shown("http://h:5000") == "http://h:5000"
    config = {"study": {"storage": f"postgresql://u:{PASSWORD}@h/db"},
              "tracking": {"uri": "sqlite:///r/mlflow.db", "api_key": "abc"},
              "members": [f"http://a:{PASSWORD}@c", 3]}
    assert redact_config(config) == {"study": {"storage": "postgresql://***@h/db"},
                                     "tracking": {"uri": "sqlite:///r/mlflow.db",
                                                  "api_key": "***"},
                                     "members": ["http://***@c", 3]}
    params = flatten(config)
    assert params["tracking.api_key"] == "***" and PASSWORD not in str(params)


def test_a_failed_run_logs_no_secret(results_dir, mlflow_client):
    tracker = Tracker(f"sqlite:///{results_dir}/mlflow.db", "leaks",
                      artifact_root=str(results_dir / "mlartifacts"))
    with pytest.raises(RuntimeError), tracker.run(
            {"tracking.uri": f"http://u:{PASSWORD}@h:5000", "db.password": PASSWORD},
            {"note": f"https://x:{PASSWORD}@h"}, "leaky"):
        raise RuntimeError(f"cannot reach postgresql://u:{PASSWORD}@db/x")
    run = mlflow_client.get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: cannot reach postgresql://***@db/x"
    error_txt = Path(mlflow_client.download_artifacts(run.info.run_id, "error.txt",
                                                      str(results_dir)))
    logged = f"{run.data.params} {run.data.tags} {error_txt.read_text()}"
    assert PASSWORD not in logged and "http://***@h:5000" in logged


def test_a_real_run_writes_no_secret(results_dir, mlflow_client, only_run, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", ENV_SECRET)
    code = main(["train", f"paths.results_dir={results_dir}", "model=lenet5",
                 "debug=fast_dev_run", "trainer.enable_progress_bar=false",
                 f"+extra.storage=postgresql://user:{PASSWORD}@db.example/optuna",
                 f"+extra.password={PASSWORD}-2", f"+extra.note=token {ENV_SECRET}"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    run = only_run()
    assert run.info.status == "FINISHED"
    assert run.data.params["extra.storage"] == "postgresql://***@db.example/optuna"
    assert run.data.params["extra.password"] == "***"
    saved = Path(results_dir) / "runs" / run.info.run_id / "config.yaml"
    if not saved.is_file():  # paths.runs_dir elsewhere: the artifact is the same file
        saved = Path(mlflow_client.download_artifacts(run.info.run_id, "config.yaml",
                                                      str(results_dir)))
    config = yaml.safe_load(saved.read_text())
    assert config["extra"] == {"storage": "postgresql://***@db.example/optuna",
                               "password": "***", "note": "token ***"}
    logged = (f"{run.data.params} {run.data.tags} {saved.read_text()} {captured.out} "
              f"{captured.err}")
    assert PASSWORD not in logged and ENV_SECRET not in logged


def test_a_storage_url_with_a_password_is_never_shown(refused_port, results_dir, capsys):
    url = f"postgresql+psycopg2://user:{PASSWORD}@127.0.0.1:{refused_port}/optuna"
    code = main(["tune", "search=optimizer", f"paths.results_dir={results_dir}",
                 f"study.storage={url}"])
    captured = capsys.readouterr()
    line = _one_line(code, captured.err, captured.out)
    assert ("study.storage: cannot open 'postgresql+psycopg2://***@127.0.0.1:"
            f"{refused_port}/optuna' (") in line


def test_an_exported_best_config_leaves_credentials_out(tmp_path, monkeypatch):
    from medbench.leaderboard.writers import caption
    from medbench.tuning.outputs import export_best

    study = optuna.create_study(study_name="leaky", direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    uri = f"http://u:{PASSWORD}@tracker.example:5000"
    path = export_best(study, [f"tracking.uri={uri}"], tmp_path)
    text = path.read_text()
    assert PASSWORD not in text and "# Left out, they held credentials: tracking.uri" in text
    monkeypatch.setattr("sys.argv", ["/usr/bin/medbench", "leaderboard", "--uri", uri])
    note = caption(uri)
    assert PASSWORD not in note and "from http://***@tracker.example:5000" in note


def test_only_secret_named_variables_are_redacted(monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("HF_TOKEN", "disabled")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)
    assert redact(f"flag false, hub disabled, key {ENV_SECRET}") == (
        "flag false, hub disabled, key ***")


def test_the_printed_config_hides_credentials(capsys):
    uri = f"http://u:{PASSWORD}@tracker.example:5000"
    assert main(["train", "--cfg", "job", f"tracking.uri={uri}"]) == 0
    out = capsys.readouterr().out
    assert "uri: http://***@tracker.example:5000" in out and PASSWORD not in out
