"""What a study leaves: its MLflow parent run, its plots, its best config as an experiment."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from mlflow.entities import Metric, RunTag  # noqa: E402
from mlflow.utils.time import get_current_time_millis  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from medbench import atomic  # noqa: E402
from medbench.config import compose_config  # noqa: E402
from medbench.tracking import Tracker, flatten, git_commit  # noqa: E402
from medbench.tracking.liveness import worker_tag  # noqa: E402
from medbench.uris import drop_secrets  # noqa: E402

PARENT_ATTR = "mlflow_parent_run_id"


class StudyRun:
    """The study's MLflow parent run, shared by every worker (its id is a study user attribute);
    one child run per trial points to it through ``mlflow.parentRunId``."""

    def __init__(self, cfg: DictConfig, study: optuna.Study,
                 lock: contextlib.AbstractContextManager, params: dict[str, Any]) -> None:
        self.tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment_name,
                               cfg.tracking.artifact_root,
                               timeout_s=cfg.tracking.get("timeout_s", 5),
                               retries=cfg.tracking.get("retries", 2))
        self.client, self.study, self.lock = self.tracker.client, study, lock
        with lock:
            run_id = study.user_attrs.get(PARENT_ATTR)
            if run_id is None or not self._exists(run_id):
                run = self.client.create_run(
                    self.tracker.experiment_id(), run_name=f"study-{study.study_name}",
                    tags={"medbench.kind": "study", "optuna.study": study.study_name,
                          "optuna.sampler": type(study.sampler).__name__.lstrip("_"),
                          "optuna.pruner": type(study.pruner).__name__,
                          "git_commit": git_commit(Path(cfg.paths.root_dir))})
                run_id = run.info.run_id
                self.tracker.run_id = run_id
                self.tracker.log_params(flatten(params))
                study.set_user_attr(PARENT_ATTR, run_id)
        self.run_id = self.tracker.run_id = run_id
        for key, value in worker_tag().items():  # `runs cleanup` ends it once all are gone
            self.client.set_tag(run_id, key, value)
        if self.client.get_run(run_id).info.status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")  # a resumed study

    def _exists(self, run_id: str) -> bool:
        try:
            self.client.get_run(run_id)
            return True
        except Exception:  # deleted, or another tracking store
            return False

    def interrupted(self) -> None:
        """This worker was stopped (Ctrl-C, SIGTERM): the parent run ends KILLED, unless another
        worker still runs a trial (a worker joining later reopens it)."""
        running = self.study.get_trials(deepcopy=False,
                                        states=(optuna.trial.TrialState.RUNNING,))
        if not running:
            self.client.set_terminated(self.run_id, "KILLED")

    def child_tags(self, number: int) -> dict[str, str]:
        return {"mlflow.parentRunId": self.run_id, "medbench.kind": "trial",
                "optuna.study": self.study.study_name, "optuna.trial": str(number)}

    def record_trial(self, number: int, outcome: dict[str, Any]) -> str | None:
        """Marks the trial's child run with its Optuna state and value; returns its run id."""
        query = (f"tags.`optuna.study` = '{self.study.study_name}' and "
                 f"tags.`optuna.trial` = '{number}'")
        runs = self.client.search_runs([self.tracker.experiment_id()], query, max_results=1)
        if not runs:
            return None
        run_id = runs[0].info.run_id
        self.client.set_tag(run_id, "optuna.state", outcome["state"])
        if outcome.get("value") is not None:
            self.client.log_metric(run_id, "optuna.value", float(outcome["value"]))
            self.client.log_metric(self.run_id, "trial_value", float(outcome["value"]),
                                   step=number)
        return run_id

    def finish(self, out_dir: Path, exported: Path | None, stopped: str | None = None) -> None:
        """The study's summary on its parent run, which ends FINISHED; written once, by the
        first worker to see every trial finished (two writing the same tags at once collided
        in the store: the second insert of ``best_trial`` failed, exit 1). ``stopped``: why
        the study ended before its budget (tag ``optuna.stopped``); while another worker
        still trains a trial, the run stays RUNNING (that worker ends it)."""
        with self.lock:
            if self.client.get_run(self.run_id).info.status == "FINISHED":
                return  # another worker summarised it
            if stopped is not None and self.study.get_trials(
                    deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                return
            best = best_trial(self.study)
            tags = {} if stopped is None else {"optuna.stopped": stopped}
            if best is not None:
                tags.update({"best_trial": str(best.number),
                             **{f"best.{k}": str(v) for k, v in best.params.items()}})
            metrics = [] if best is None else [
                Metric("best_value", best.value, get_current_time_millis(), 0)]
            self.client.log_batch(self.run_id, metrics=metrics,
                                  tags=[RunTag(k, v) for k, v in tags.items()])
            for path in study_plots(self.study, out_dir):
                self.tracker.log_artifact(path, "plots")
            if exported is not None:
                self.tracker.log_artifact(exported)
            self.client.set_terminated(self.run_id, "FINISHED")


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no trial completed
        return None


def study_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """Optimisation history, parameter importances and parallel coordinates as PNGs (a plot
    Optuna cannot draw yet, e.g. importances before two trials complete, is skipped)."""
    from optuna.visualization import matplotlib as plots

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (("optimization_history", plots.plot_optimization_history),
                       ("param_importances", plots.plot_param_importances),
                       ("parallel_coordinate", plots.plot_parallel_coordinate)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental" warnings of optuna's matplotlib
                axes = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError):
            continue
        figure = getattr(axes, "figure", None) or axes.flat[0].figure
        figure.set_size_inches(9, 5.5)
        figure.tight_layout()
        path = out_dir / f"{name}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def tuning_budget(study: optuna.Study) -> dict[str, object]:
    """What the search spent: trials run (complete, pruned or failed) and their compute hours
    summed over workers; shown beside the leaderboard row of the exported config."""
    done = [t for t in study.get_trials(deepcopy=False)
            if t.state.is_finished() and t.datetime_start and t.datetime_complete]
    seconds = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
    return {"study": study.study_name, "trials": len(done),
            "compute_hours": round(seconds / 3600, 3)}


def export_best(study: optuna.Study, overrides: list[str], export_dir: Path) -> Path | None:
    """Writes the best trial's full config as ``<export_dir>/<study>.yaml``, an experiment that
    ``medbench train experiment=tuned/<study>`` runs as is (export_dir: experiments/tuned)."""
    best = best_trial(study)
    if best is None:
        return None
    cfg = compose_config(overrides + list(best.user_attrs.get("overrides", [])))
    choices = {k: v for k, v in cfg.choices.items() if k != "experiment" and v is not None}
    values = OmegaConf.to_container(cfg, resolve=False)
    values.pop("choices")
    values, secret = drop_secrets(values)  # a URI with a password stays out of the file
    values["tuned"] = tuning_budget(study)
    lines = [
        "# @package _global_",
        f"# Best trial ({best.number}, {study.direction.name.lower()} value {best.value:.6g}) of "
        f"Optuna study '{study.study_name}', exported by `medbench tune`.",
        f"# Trial parameters: {best.params}",
        *([f"# Left out, they held credentials: {', '.join(secret)}"] if secret else []),
        "defaults:",
        *[f"  - override /{group}: {option}" for group, option in sorted(choices.items())],
        "  - _self_",
        "",
        OmegaConf.to_yaml(OmegaConf.create(values)),
    ]
    export_dir.mkdir(parents=True, exist_ok=True)
    path = export_dir / f"{study.study_name}.yaml"
    atomic.write_text(path, "\n".join(lines))
    return path
