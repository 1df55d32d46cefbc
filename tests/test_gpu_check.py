"""benchmark/gpu_check: its CPU smoke mode runs every step of the GPU check (tiny sizes), the
report names a step that timed out or crashed, and the wrapper refuses in one line without a
GPU or a Python environment; nothing reaches the network. The GPU paths themselves (CUDA
timings, fp16, NVML utilisation, NCCL) need a GPU and are not run here."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from medbench.config import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmark"))
import gpu_check  # noqa: E402
from gpu_check_steps import PRECISIONS  # noqa: E402

SCRIPT = REPO_ROOT / "benchmark" / "gpu_check.sh"
NETWORK_TOOLS = ("pip", "pip3", "curl", "wget", "apt-get", "conda", "uv")
SMOKE = ["--device", "cpu", "--tiny"]


@pytest.fixture
def no_network(monkeypatch) -> list:
    """Any TCP or UDP connect from this process fails (and is recorded)."""
    attempts: list = []
    real = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError("network blocked by the test")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.fixture
def shims(tmp_path: Path) -> tuple[Path, Path]:
    """A folder of stand-ins for pip, curl, wget, ... that log any call and fail, and the log."""
    folder, log = tmp_path / "shims", tmp_path / "network_calls.log"
    folder.mkdir()
    for tool in NETWORK_TOOLS:
        (folder / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\nexit 99\n')
        (folder / tool).chmod(0o755)
    return folder, log


def fake_nvidia_smi(folder: Path) -> Path:
    """An nvidia-smi answering the name/driver/memory query, as on a machine whose torch
    still sees no CUDA device."""
    path = folder / "nvidia-smi"
    path.write_text('#!/bin/sh\necho "name, driver_version, memory.total [MiB]"\n'
                    'echo "NVIDIA Fake, 1.0, 1024 MiB"\n')
    path.chmod(0o755)
    return path


def offline(cmd: list[str]) -> list[str]:
    """``cmd`` in a network namespace of its own (no interface up) where unshare allows it."""
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False) \
        if Path("/usr/bin/unshare").exists() else None
    return ["unshare", "-rn", *cmd] if probe is not None and probe.returncode == 0 else cmd


def wrapper(args: list[str], env: dict[str, str], shims: tuple[Path, Path],
            script: Path = SCRIPT, timeout: int = 120) -> subprocess.CompletedProcess:
    """Runs the .sh offline with the network tools shimmed; asserts none was called."""
    folder, log = shims
    env = {**env, "PATH": f"{folder}:{env.get('PATH', os.environ['PATH'])}"}
    done = subprocess.run(offline(["bash", str(script), *args]), capture_output=True,
                          text=True, env=env, timeout=timeout, check=False)
    assert not log.exists(), f"the script called {log.read_text()}"
    return done


def base_env(out: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    return {**env, "OUT": str(out), "NVIDIA_SMI": "/nonexistent/nvidia-smi"}


def test_cpu_smoke_mode_records_every_step(tmp_path: Path, no_network: list, capsys) -> None:
    out = tmp_path / "gpu"
    for step in ("facts", "amp", "loader", "ddp"):
        assert gpu_check.main(["--step", step, *SMOKE, "--out", str(out)]) == 0, step
    assert gpu_check.main(["--step", "report", *SMOKE, "--out", str(out)]) == 0
    data = json.loads((out / "gpu_check.json").read_text())
    steps = data["steps"]
    assert data["mode"] == "cpu-smoke" and data["exit"]["code"] == 0
    facts = steps["facts"]
    assert facts["status"] == "ok" and facts["cores"] >= 1 and facts["torch"]
    assert facts["machine"].startswith("CPU only") and facts["data_root"]
    rows = steps["amp"]["rows"]
    assert [(r["model"], r["precision"]) for r in rows] == [
        (model, p) for model in ("resnet50", "unet") for p in PRECISIONS]
    for row in rows:
        if row["precision"] == "fp16":  # a CUDA path: skipped with its reason
            assert "CUDA" in row["skipped"] and "images_per_s" not in row
        else:
            assert row["images_per_s"] > 0 and row["step_ms"] > 0, row
            assert row["vs_fp32"] > 0
    loader = steps["loader"]
    assert loader["status"] == "ok" and [r["num_workers"] for r in loader["rows"]] == [0, 2]
    for row in loader["rows"]:
        assert row["images_per_s"] > 0 and 0 <= row["loader_wait_fraction"] <= 1, row
        assert row["util_samples"] >= 1 and row["util_mean"] >= 0, row
    assert steps["ddp"]["status"] == "skipped" and "--ddp-on-cpu" in steps["ddp"]["skipped"]
    text = (out / "gpu_check.md").read_text()
    assert "| resnet50 | 32 px | 2 | bf16 |" in text and "## Loader" in text
    assert capsys.readouterr().out == text  # the summary is printed
    assert not no_network


def test_report_names_a_step_that_timed_out_or_crashed(tmp_path: Path, capsys) -> None:
    steps = tmp_path / "steps"
    steps.mkdir()
    (steps / "facts.json").write_text(json.dumps({"status": "ok", "machine": "m"}))
    (steps / "facts.rc").write_text("0 4 45\n")
    (steps / "amp.rc").write_text("124 120 120\n")
    (steps / "loader.rc").write_text("139 3 75\n")
    (steps / "loader.log").write_text("importing\nSegmentation fault (core dumped)\n")
    (steps / "ddp.rc").write_text("skip 0 0\n")
    assert gpu_check.report(tmp_path, "gpu") == 1
    data = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
    assert data["amp"] == {"status": "error", "error": "timed out after its 120 s limit "
                           "(stopped)", "rc": 124, "wall_s": 120, "limit_s": 120}
    assert data["loader"]["error"] == ("exited 139 without a result: Segmentation fault "
                                       "(core dumped)")
    assert data["ddp"]["status"] == "skipped"
    assert "exit 1: no measuring step produced figures" in capsys.readouterr().out


def test_without_nvidia_smi_the_script_exits_2_in_one_line(tmp_path: Path, shims) -> None:
    done = wrapper([], base_env(tmp_path / "gpu"), shims)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("gpu_check: no NVIDIA GPU: nvidia-smi not found")
    saved = json.loads((tmp_path / "gpu" / "gpu_check.json").read_text())
    assert saved["exit"]["code"] == 2


def test_without_a_python_environment_the_script_says_what_it_needs(tmp_path: Path,
                                                                       shims) -> None:
    repo = tmp_path / "repo"  # a bare checkout: no .venv, and no python3 with torch
    (repo / "benchmark").mkdir(parents=True)
    script = repo / "benchmark" / "gpu_check.sh"
    script.write_text(SCRIPT.read_text())
    for name in ("python3", "python"):
        (shims[0] / name).write_text("#!/bin/sh\nexit 1\n")
        (shims[0] / name).chmod(0o755)
    env = {**base_env(tmp_path / "gpu"), "NVIDIA_SMI": str(fake_nvidia_smi(tmp_path))}
    done = wrapper([], env, shims, script=script)
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no Python environment"), lines
    assert "PYTHON=" in lines[0] and "torch==2.14.1" in lines[0]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_torch_without_cuda_exits_2_with_the_reason(tmp_path: Path, shims) -> None:
    env = {**base_env(tmp_path / "gpu"), "NVIDIA_SMI": str(fake_nvidia_smi(tmp_path)),
           "PYTHON": sys.executable, "GPU_CHECK_TOTAL_S": "120"}
    done = wrapper([], env, shims)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("gpu_check: no GPU: torch") and "sees no CUDA device" in last
    saved = json.loads((tmp_path / "gpu" / "gpu_check.json").read_text())
    assert saved["exit"]["code"] == 2 and saved["steps"]["facts"]["rc"] == 2


# the two below (80 s together) repeat, end to end, what the smoke test runs in process: run
# them with MEDBENCH_GPU_CHECK_E2E=1 after changing the wrapper or the DDP step
END_TO_END = pytest.mark.skipif(not os.environ.get("MEDBENCH_GPU_CHECK_E2E"),
                                reason="set MEDBENCH_GPU_CHECK_E2E=1 (80 s)")


@END_TO_END
def test_the_wrapper_runs_the_cpu_smoke_mode_offline(tmp_path: Path, shims) -> None:
    out = tmp_path / "gpu"
    done = wrapper(["--cpu-smoke"], base_env(out), shims, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((out / "gpu_check.json").read_text())
    assert [data["steps"][s]["status"] for s in gpu_check.STEPS] == ["ok", "ok", "ok", "skipped"]
    assert all(data["steps"][s]["rc"] == 0 for s in gpu_check.STEPS)
    assert (out / "gpu_check.md").read_text() in done.stdout


@END_TO_END
def test_the_ddp_step_trains_through_medbench_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    assert gpu_check.main(["--step", "ddp", *SMOKE, "--ddp-on-cpu", "--out", str(out)]) == 0
    result = json.loads((out / "steps" / "ddp.json").read_text())
    assert result["status"] == "ok" and result["exit_code"] == 0, result
    assert result["backend"] == "gloo" and result["wall_s"] > 0
    assert 0 <= result["test_auc"] <= 1
    assert "trainer.strategy=ddp" in result["overrides"]
