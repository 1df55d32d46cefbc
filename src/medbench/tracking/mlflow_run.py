"""MLflow run lifecycle: one run per training, FAILED with the error when anything raises."""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from mlflow.entities import Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from medbench import signals
from medbench.errors import ConfigError, RunStopped, disk_fault, interruption
from medbench.provenance import git_commit
from medbench.signals import Uninterrupted
from medbench.tracking.liveness import process_tags
from medbench.tracking.new_store import create_missing_store
from medbench.uris import reach, redact, redact_value

MAX_PARAM_LENGTH = 6000
# the experiment tag by which MLflow 3 tells model training from GenAI (its UI's views, its
# assistant); 3.17's UI also has a sidebar switch (``?workflowType=machine_learning``) that wins
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
_INVALID_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. :/]")


def mlflow_key(name: str) -> str:
    """``name`` with the characters MLflow refuses in a param or tag key replaced by '_' (keys
    come from configs, e.g. a paper's reported figure 'accuracy (ResNet/InceptionNet)')."""
    return _INVALID_KEY_CHARS.sub("_", name)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists become their string form; keys are made
    valid for MLflow (:func:`mlflow_key`); values are redacted (:func:`medbench.uris.redact`:
    no password of a URI, no secret key's value, is ever a param)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = mlflow_key(f"{prefix}{key}")
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = redact_value(name, value)[:MAX_PARAM_LENGTH]
    return out


def is_rank_zero() -> bool:
    """Whether this process is global rank 0, from the variables DDP launchers (Lightning,
    torchrun, SLURM) set before any process group exists. Other ranks must not open runs."""
    for key in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key):
            return int(os.environ[key]) == 0
    return all(int(os.environ.get(key) or 0) == 0 for key in ("LOCAL_RANK", "NODE_RANK"))


class RunLogger(MLFlowLogger):
    """Lightning's MLflow logger bound to our run; the tracker, not Lightning, ends the run.

    Marked initialised up front: Lightning's lazy set-up calls ``mlflow.set_tracking_uri``,
    which also exports ``MLFLOW_TRACKING_URI`` and so redirects every later run of the process.
    """

    def __init__(self, experiment_id: str, **kwargs) -> None:
        # asynchronous: each epoch's metrics are written by MLflow's logging thread, so SQLite's
        # commits (0.39 s per epoch measured with synchronous writes, 2.2% of a ResNet-18 (28)
        # epoch here) overlap training instead of blocking it; `flush` waits for them
        super().__init__(synchronous=False, **kwargs)
        self._experiment_id = experiment_id
        self._initialized = True

    def flush(self) -> None:
        """Waits until the metrics logged so far are stored."""
        # MlflowClient has no public flush; its store owns the async queue
        self._mlflow_client._tracking_client.store.flush_async_logging()

    def finalize(self, status: str = "success") -> None:
        pass


class Tracker:
    """Creates the experiment and run, and ends it FINISHED or FAILED."""

    def __init__(self, uri: str, experiment_name: str, artifact_root: str | None = None,
                 active: bool = True, timeout_s: float = 5, retries: int = 2) -> None:
        """``timeout_s`` and ``retries`` (``tracking.timeout_s``, ``tracking.retries``) bound
        every request to an http(s) server; one that does not answer fails here, in one line."""
        self.uri = uri
        self.active = active  # False on DDP ranks other than 0: they read, never write
        if "://" not in uri:
            raise ConfigError(f"tracking.uri: '{redact(uri)}' is not a URI (sqlite:///..., "
                              "http://...)")
        reach(uri, timeout_s, retries)
        create_missing_store(uri, artifact_root)  # whole or not at all, by one process
        # every store call whole: a signal waits for it (medbench.signals)
        self.client = Uninterrupted(MlflowClient(tracking_uri=uri))
        self.experiment_name = experiment_name
        self.artifact_root = artifact_root
        self.run_id: str | None = None
        self._loggers: list[RunLogger] = []
        self._experiment: str | None = None

    def experiment_id(self) -> str:
        """The experiment's id, created on first use and then remembered (one query per run,
        not one per call)."""
        if self._experiment is None:
            self._experiment = self._find_or_create_experiment()
        return self._experiment

    def _find_or_create_experiment(self) -> str:
        key, kind = EXPERIMENT_KIND
        existing = self.client.get_experiment_by_name(self.experiment_name)
        if existing is not None:
            if self.active and key not in existing.tags:  # made before medbench set the kind
                self.client.set_experiment_tag(existing.experiment_id, key, kind)
            return existing.experiment_id
        location = None
        if self.artifact_root and not self.uri.startswith(("http://", "https://")):
            location = (Path(self.artifact_root) / self.experiment_name).resolve().as_uri()
        try:
            return self.client.create_experiment(self.experiment_name,
                                                 artifact_location=location, tags={key: kind})
        except MlflowException:  # another process created it since (concurrent first runs)
            existing = self.client.get_experiment_by_name(self.experiment_name)
            if existing is None:
                raise
            return existing.experiment_id

    @contextmanager
    def run(self, params: Mapping[str, str], tags: Mapping[str, str],
            run_name: str | None = None, resume: str | None = None) -> Iterator[Tracker]:
        """A new run, or with ``resume`` the run of that id reopened (its params stay)."""
        if not self.active:
            yield self
            return
        if resume:
            self.run_id = resume
            self.client.update_run(resume, status="RUNNING")
            self.set_tags({**process_tags(), "resumed": "true"})
        else:
            tags = {k: redact_value(k, v) for k, v in {**tags, **process_tags()}.items()}
            run = self.client.create_run(self.experiment_id(), run_name=run_name, tags=tags)
            self.run_id = run.info.run_id
        try:
            if not resume:
                self.log_params(params)
            yield self
        except BaseException as err:
            if interruption(err) is not None:
                signals.handled()  # the run ends KILLED below: its store calls go on
            self._flush()
            raised, fault = err, disk_fault(err)  # a full disk: one line, as the error tag
            err = interruption(err) or fault or err  # Ctrl-C or SIGTERM, via Lightning's exit
            name = type(err).__name__
            error = f"{name}: {redact(str(err)).splitlines()[0]}" if str(err).strip() else name
            self.client.set_tag(self.run_id, "error", error[:5000])
            trace = traceback.format_exception(raised if fault is not None else err)
            self.client.log_text(self.run_id, redact("".join(trace)), "error.txt")
            stopped = isinstance(err, (KeyboardInterrupt, RunStopped))
            status = "KILLED" if stopped else "FAILED"
            self.client.set_terminated(self.run_id, status)
            if fault is not None:
                raise fault from raised
            raise
        self._flush()
        self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FINISHED))

    def _flush(self) -> None:
        for logger in self._loggers:
            logger.flush()

    def lightning_logger(self) -> RunLogger:
        logger = RunLogger(experiment_id=self.experiment_id(),
                           experiment_name=self.experiment_name, tracking_uri=self.uri,
                           run_id=self.run_id)
        self._loggers.append(logger)
        return logger

    def selected_checkpoint(self, run_id: str, dst: Path, runs_dir: Path | None = None) -> Path:
        """The checkpoint a finished run selected: its file in the run's folder under
        ``runs_dir`` (read in place), else its ``checkpoints/`` artifact downloaded to ``dst``."""
        try:
            tags = self.client.get_run(run_id).data.tags
        except Exception as err:
            raise ConfigError(f"run '{run_id}' not found in {redact(self.uri)} "
                              f"({redact(str(err))})") from None
        name = tags.get("best_checkpoint")
        local = runs_dir / run_id / "checkpoints" / name if runs_dir and name else None
        if local is not None and local.is_file():
            return local
        ckpts = [f.path for f in self.client.list_artifacts(run_id, "checkpoints")
                 if f.path.endswith(".ckpt")]
        if not ckpts:
            where = f"{runs_dir / run_id / 'checkpoints'}" if runs_dir else "no run folder given"
            raise ConfigError(f"run '{run_id}' has no selected checkpoint: none in {where} nor "
                              "in its artifacts (the run did not finish, ran on another "
                              "machine without tracking.log_checkpoint=true, or was deleted)")
        dst.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(run_id, ckpts[0], str(dst)))

    def log_params(self, params: Mapping[str, str]) -> None:
        if not self.active:
            return
        items = [Param(k, redact_value(k, v)) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self.active:
            return
        for key, value in metrics.items():
            self.client.log_metric(self.run_id, key, float(value), step=step or 0)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        if not self.active:
            return
        self.client.log_artifact(self.run_id, str(path), folder)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.active:
            return
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, redact_value(key, value))


__all__ = ["Tracker", "RunLogger", "flatten", "git_commit", "is_rank_zero"]
