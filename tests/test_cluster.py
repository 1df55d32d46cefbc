"""`cluster=slurm`: trainings, -m sweeps and tuning workers submitted through submitit. The
sbatch script is checked against a stand-in `sbatch` (no SLURM here); a job really runs
through submitit's local executor and is tracked like a training run here."""

from __future__ import annotations

import os
import re
import stat

import pytest
from mlflow.tracking import MlflowClient

from medbench.cli import main
from medbench.cluster import executor_parameters, submit_jobs
from medbench.config import compose_config
from medbench.errors import ConfigError


@pytest.fixture
def fake_sbatch(tmp_path, monkeypatch):
    """An `sbatch` on PATH that keeps the script it is given and answers as SLURM does (and
    an `srun`, never run: submitit looks for it to know it is on a SLURM cluster)."""
    bin_dir, kept = tmp_path / "bin", tmp_path / "sbatch_scripts"
    bin_dir.mkdir()
    kept.mkdir()
    script = bin_dir / "sbatch"
    script.write_text(f'#!/bin/sh\ncp "$1" "{kept}/$(ls {kept} | wc -l).sh"\n'
                      'echo "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod((bin_dir / tool).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return kept


def _sbatch(kept) -> dict[str, str]:
    [script] = kept.iterdir()
    return dict(re.findall(r"^#SBATCH --([\w-]+)=?(.*)$", script.read_text(), re.M))


def test_a_ddp_training_is_one_job_with_a_task_per_gpu(fake_sbatch, results_dir, capsys):
    flags = ["debug=fast_dev_run", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
             "cluster=slurm", "cluster.partition=gpu", "cluster.nodes=2",
             "cluster.tasks_per_node=4", "cluster.gpus_per_node=4", "cluster.timeout_min=90",
             "+cluster.additional_parameters.mail-type=END", f"paths.results_dir={results_dir}"]
    assert main(["train", *flags]) == 0
    assert "submitted 1 job(s) of medbench train to slurm: 4242" in capsys.readouterr().out
    options = _sbatch(fake_sbatch)
    assert {k: options[k] for k in ("partition", "nodes", "ntasks-per-node", "gpus-per-node",
                                    "time", "cpus-per-task", "job-name", "mail-type")} == {
        "partition": "gpu", "nodes": "2", "ntasks-per-node": "4", "gpus-per-node": "4",
        "time": "90", "cpus-per-task": "4", "job-name": "medbench", "mail-type": "END"}
    runs = results_dir / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # nothing trained here


def test_a_sweep_is_a_job_array_and_a_study_its_workers(fake_sbatch, results_dir, capsys):
    assert main(["train", "-m", "debug=fast_dev_run", "seed=0,1,2", "cluster=slurm",
                 f"paths.results_dir={results_dir}"]) == 0
    assert _sbatch(fake_sbatch)["array"] == "0-2%3"  # 3 jobs, at most 3 at once
    for script in fake_sbatch.iterdir():
        script.unlink()
    assert main(["tune", "model=lenet5", "search=optimizer", "study.n_trials=4",
                 "cluster=slurm", "cluster.workers=3", f"paths.results_dir={results_dir}"]) == 0
    out = capsys.readouterr().out
    assert "submitted 3 job(s) of medbench tune" in out and "share the SQLite" in out
    assert _sbatch(fake_sbatch)["array"] == "0-2%3"  # 3 jobs, at most 3 at once


def test_a_submitted_training_runs_and_is_tracked(results_dir):
    """submitit's local executor (a process of its own, as a SLURM node would run it)."""
    flags = ["debug=fast_dev_run", "model=lenet5", "cluster=slurm",
             f"cluster.folder={results_dir / 'jobs'}", f"paths.results_dir={results_dir}"]
    [job] = submit_jobs("train", [flags], cluster_name="local")
    assert job.result() == 0
    client = MlflowClient(f"sqlite:///{results_dir / 'mlflow.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("debug").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["cluster.name"] == "local"


def test_unknown_cluster_keys_are_one_line():
    cfg = compose_config(["cluster=slurm", "+cluster.partitoin=gpu"])
    with pytest.raises(ConfigError, match="cluster.partitoin: not a cluster=slurm key"):
        executor_parameters(cfg.cluster)
    assert executor_parameters(compose_config(["cluster=slurm"]).cluster) == {
        "timeout_min": 60, "nodes": 1, "tasks_per_node": 1, "cpus_per_task": 4,
        "name": "medbench", "slurm_array_parallelism": 16}
    with pytest.raises(ConfigError, match="cluster.name: expected local or slurm, got 'pbs'"):
        submit_jobs("train", [["cluster.name=pbs"]])
