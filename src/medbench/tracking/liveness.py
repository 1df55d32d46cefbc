"""Which runs are left RUNNING by a dead process: resume them, or mark them KILLED."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from medbench.atomic import pid_alive
from medbench.errors import ConfigError
from medbench.tracking.checkpoints import last_checkpoint as _last_checkpoint

HOST_TAG, PID_TAG = "medbench.host", "medbench.pid"
KIND_TAG, WORKER_TAG = "medbench.kind", "medbench.worker."
# how the store is reached, not what trained: a resume may change them
REACH_KEYS = ("resume", "tracking.timeout_s", "tracking.retries")


def process_tags() -> dict[str, str]:
    """Tags naming the process that owns a run."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def process_alive(tags: Mapping[str, str]) -> bool | None:
    """Whether the run's process still lives; None when it ran on another host (or is
    untagged), where this machine cannot tell."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG):
        return None
    return pid_alive(int(tags[PID_TAG]))


def worker_tag() -> dict[str, str]:
    """The tag a study's parent run gets from each worker that joins it (several workers, on
    several hosts, share one parent run): ``medbench.worker.<host>.<pid>`` = ``<host> <pid>``."""
    host, pid = socket.gethostname(), os.getpid()
    return {f"{WORKER_TAG}{re.sub(r'[^A-Za-z0-9_.-]', '_', host)}.{pid}": f"{host} {pid}"}


def workers_alive(tags: Mapping[str, str]) -> bool | None:
    """Whether any worker of a study's parent run lives; None when one ran on another host (or
    none is tagged: a study run of an older medbench), where this machine cannot tell."""
    workers = [v.rsplit(" ", 1) for k, v in tags.items() if k.startswith(WORKER_TAG)]
    verdicts = {process_alive({HOST_TAG: host, PID_TAG: pid}) for host, pid in workers}
    if True in verdicts:
        return True
    return None if not verdicts or None in verdicts else False


def orphaned_runs(client: MlflowClient) -> list[Run]:
    """RUNNING runs whose process, on this host, is gone; a study's parent run, once every
    worker that joined it is gone."""
    ids = [e.experiment_id for e in client.search_experiments()]
    running = client.search_runs(ids, "attributes.status = 'RUNNING'", max_results=50000)
    return [r for r in running if _alive(r.data.tags) is False]


def _alive(tags: Mapping[str, str]) -> bool | None:
    return workers_alive(tags) if tags.get(KIND_TAG) == "study" else process_alive(tags)


def mark_killed(client: MlflowClient, run: Run) -> str:
    """Ends an orphaned run KILLED, the reason in its ``error`` tag; returns the reason."""
    tags = run.data.tags
    if tags.get(KIND_TAG) == "study":
        pids = sorted(v for k, v in tags.items() if k.startswith(WORKER_TAG))
        reason = f"every worker of the study died ({', '.join(pids)})"
    else:
        reason = f"process {tags.get(PID_TAG)} on {tags.get(HOST_TAG)} died"
    client.set_tag(run.info.run_id, "error", reason)
    client.set_terminated(run.info.run_id, "KILLED")
    return reason


def resumable_run(client: MlflowClient, experiment_id: str, spec: str, runs_dir: Path,
                  resolved: Mapping[str, Any]) -> str:
    """The run id that ``resume=<run id|last>`` continues, checked: unfinished, owner process
    dead, a ``last.ckpt`` on disk, and trained with the same config as this command's."""
    if spec == "last":
        runs = client.search_runs([experiment_id], "attributes.status != 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=100)
        runs = [r for r in runs if _last_checkpoint(runs_dir, r.info.run_id).is_file()]
        if not runs:
            raise ConfigError(f"resume=last: no unfinished run with a checkpoint under {runs_dir}")
        run = runs[0]
    else:
        try:
            run = client.get_run(spec)
        except Exception:
            raise ConfigError(f"resume: run '{spec}' not found in the tracking store") from None
    run_id = run.info.run_id
    if run.info.status == "FINISHED":
        raise ConfigError(f"resume: run {run_id} already FINISHED")
    if run.info.status == "RUNNING" and process_alive(run.data.tags) is not False:
        raise ConfigError(f"resume: run {run_id} may still be running (pid "
                          f"{run.data.tags.get(PID_TAG)} on {run.data.tags.get(HOST_TAG)})")
    if not _last_checkpoint(runs_dir, run_id).is_file():
        raise ConfigError(f"resume: run {run_id} has no {_last_checkpoint(runs_dir, run_id)}")
    _check_same_config(runs_dir / run_id / "config.yaml", resolved)
    return run_id


def _check_same_config(saved: Path, resolved: Mapping[str, Any]) -> None:
    from medbench.tracking.mlflow_run import flatten

    before = flatten(yaml.safe_load(saved.read_text()))
    now = flatten(resolved)
    changed = sorted(k for k in before.keys() | now.keys()
                     if k not in REACH_KEYS and before.get(k) != now.get(k))
    if changed:
        key = changed[0]
        raise ConfigError(f"resume: the run was trained with {key}={before.get(key)}, this "
                          f"command has {key}={now.get(key)} ({len(changed)} key(s) differ): "
                          "resume with the run's own overrides")
