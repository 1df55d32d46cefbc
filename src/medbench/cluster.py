"""``cluster=slurm``: a command's jobs submitted to SLURM through submitit instead of run here.

A training is one job, a ``-m`` sweep one job per point (a job array), a study
``cluster.workers`` workers. Each job runs the same ``medbench`` command with ``cluster=local``
on its node. submitit is the library hydra-submitit-launcher wraps; that launcher itself is a
Hydra plugin for ``@hydra.main`` applications, and medbench composes its configs with Hydra's
compose API, so the plugin would never run: conf/cluster/slurm.yaml keeps its keys instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medbench.errors import ConfigError

# conf/cluster/slurm.yaml key -> submitit's AutoExecutor parameter
PARAMETERS = {"timeout_min": "timeout_min", "nodes": "nodes", "tasks_per_node": "tasks_per_node",
              "gpus_per_node": "gpus_per_node", "cpus_per_task": "cpus_per_task",
              "mem_gb": "mem_gb", "name_in_queue": "name", "partition": "slurm_partition",
              "qos": "slurm_qos", "account": "slurm_account", "constraint": "slurm_constraint",
              "comment": "slurm_comment", "exclude": "slurm_exclude",
              "setup": "slurm_setup", "additional_parameters": "slurm_additional_parameters",
              "array_parallelism": "slurm_array_parallelism"}


def executor_parameters(cluster: DictConfig) -> dict[str, Any]:
    """submitit's parameters for ``cluster`` (the keys left null are SLURM's defaults)."""
    values = OmegaConf.to_container(cluster, resolve=True)
    unknown = sorted(set(values) - set(PARAMETERS) - {"name", "folder", "workers"})
    if unknown:
        raise ConfigError(f"cluster.{unknown[0]}: not a cluster=slurm key (known: "
                          f"{', '.join(sorted(PARAMETERS))}, folder, workers)")
    return {PARAMETERS[k]: v for k, v in values.items()
            if k in PARAMETERS and v is not None and v != [] and v != {}}


def run_here(command: str, overrides: list[str]) -> int:
    """What a submitted job runs on its node: the command, here (``cluster=local``)."""
    from medbench.cli import main

    here = [o for o in overrides if not o.lstrip("+~").split("=")[0].split(".")[0] == "cluster"]
    code = main([command, *here, "cluster=local"])
    if code:
        raise RuntimeError(f"medbench {command} {' '.join(overrides)} exited {code}")
    return code


def submit_jobs(command: str, jobs: list[list[str]],
                cluster_name: str | None = None) -> list[Any] | None:
    """Submits ``jobs`` (each the overrides of one ``medbench <command>``) when they say
    ``cluster=slurm``; returns the submitit jobs, or None when they are to run here.
    ``cluster_name``: submitit's cluster (tests: ``local`` or ``debug``); default SLURM's."""
    from medbench.config import compose_config

    keys = {o.lstrip("+~").split("=")[0].split(".")[0].split("/")[0] for o in jobs[0]}
    if not keys & {"cluster", "experiment"}:  # the default (cluster=local): nothing to compose
        return None
    cfg = compose_config(jobs[0], "tune" if command == "tune" else "train")
    cluster = cfg.get("cluster") or {}
    if cluster.get("name", "local") == "local":
        return None
    if cluster.name != "slurm":
        raise ConfigError(f"cluster.name: expected local or slurm, got '{cluster.name}'")
    import submitit

    if command == "tune":
        workers = int(cluster.get("workers") or 1)
        if workers > 1 and str(cfg.study.storage).startswith("sqlite"):
            print(f"warning: cluster.workers={workers} share the SQLite study.storage "
                  f"{cfg.study.storage}: on several nodes use a server (postgresql://...)")
        jobs = jobs * workers
    folder = Path(str(cluster.folder))
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster_name or "slurm")
    executor.update_parameters(**executor_parameters(cluster))
    with executor.batch():
        submitted = [executor.submit(run_here, command, job) for job in jobs]
    ids = [str(job.job_id) for job in submitted]
    print(f"submitted {len(ids)} job(s) of medbench {command} to {executor.cluster}: "
          f"{', '.join(ids)} (logs under {str(folder).replace('%j', '<job id>')})")
    return submitted
