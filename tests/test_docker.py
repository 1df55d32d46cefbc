"""docker/: the image and the team's compose file, checked statically (no Docker engine here):
a CUDA base, an unprivileged user, the project installed with the pinned torch; PostgreSQL, an
MLflow server on it and a worker, ports on 127.0.0.1 only, no password in the files."""

from __future__ import annotations

import re

import yaml

from medbench.config import REPO_ROOT

DOCKER = REPO_ROOT / "docker"


def _instructions() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    return [(line.split()[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_image_is_cuda_unprivileged_and_installs_the_project():
    steps = _instructions()
    assert steps[0][0] == "FROM" and steps[0][1].startswith("nvidia/cuda:")
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    user_at = max(i for i, (op, _) in enumerate(steps) if op == "USER")
    installs = [i for i, (op, arg) in enumerate(steps) if op == "RUN" and "pip install" in arg]
    assert installs and min(installs) > user_at  # installed by the user, not root
    run = " ".join(arg for op, arg in steps if op == "RUN")
    torch_pin = re.search(r"TORCH_SPEC \?= (.+)", (REPO_ROOT / "Makefile").read_text())[1]
    assert torch_pin.strip() in run and 'pip install -e ".[postgres]"' in run
    for op, arg in steps:  # every file copied exists in the repository
        if op == "COPY":
            for source in arg.split()[:-1]:
                if not source.startswith("--"):
                    assert (REPO_ROOT / source).exists(), source
    assert ("ENTRYPOINT", '["medbench"]') in steps


def test_the_compose_file_is_the_team_set_up():
    text = (DOCKER / "compose.yaml").read_text()
    compose = yaml.safe_load(text)
    services = compose["services"]
    assert set(services) == {"postgres", "mlflow", "worker"}
    for service in services.values():  # published ports on the loopback only
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port
    server = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri postgresql+psycopg2://" in server
    worker = services["worker"]["environment"]
    assert worker["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert worker["MEDBENCH_OPTUNA_STORAGE"].startswith("postgresql+psycopg2://")
    assert services["worker"]["command"][0] == "tune"
    # the password only from the environment, never written in the file
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?")
    assert not re.search(r"://\w+:(?!\$\{)[^@\s]+@", text)  # user:password@ in a URL
    init = DOCKER / services["postgres"]["volumes"][1].split(":")[0]
    assert "CREATE DATABASE optuna" in (init / "optuna.sql").read_text()
