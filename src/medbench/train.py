"""`medbench train`: config -> data -> model -> family runner -> MLflow run.

The one place a run's outcome is logged: runners return a :class:`RunOutcome` and never see
the tracker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf

from medbench import atomic
from medbench.config import REPO_ROOT
from medbench.console import console
from medbench.data import DATAMODULES, SplitDataModule
from medbench.errors import ConfigError, DataError
from medbench.family import Family, family_of
from medbench.models import create_model
from medbench.models.profile import count_macs, count_parameters
from medbench.models.registry import check_spatial_dims
from medbench.provenance import machine_tags
from medbench.repeats import config_hash
from medbench.store_check import sqlite_path
from medbench.tasks.runner import RunContext, RunOutcome
from medbench.tracking import Tracker, flatten, git_commit, is_rank_zero
from medbench.tracking.checkpoints import resume_state_dropped
from medbench.tracking.liveness import resumable_run
from medbench.uris import redact_config


def build_datamodule(cfg: DictConfig) -> SplitDataModule:
    options = OmegaConf.to_container(cfg.data, resolve=True)
    source = options.pop("source")
    family = options.pop("family", None) or "classification"
    builder = DATAMODULES.get(source).builder
    augment = OmegaConf.to_container(cfg.augment, resolve=True)
    cv = OmegaConf.to_container(cfg.cv, resolve=True) if cfg.get("cv") else None
    try:
        datamodule = builder(**options, augment=augment, seed=cfg.seed, cv=cv)
    except TypeError as err:
        raise ConfigError(f"data ({source}): {err}") from None
    if datamodule.info.family != family:
        raise ConfigError(f"data.family={family} but the '{source}' source serves "
                          f"{datamodule.info.family} targets")
    return datamodule


def build_model(cfg: DictConfig, family: Family, datamodule: SplitDataModule,
                tracker: Tracker | None = None, run_dir: Path | None = None) -> torch.nn.Module:
    """The registered model sized to the data. ``model.pretrained_path=run:<id>`` starts from
    the checkpoint another run selected (transfer and twice-transfer learning, survey 4.2.5)."""
    info = datamodule.info
    pretrained = cfg.model.pretrained_path
    if pretrained and str(pretrained).startswith("run:"):
        if tracker is None or run_dir is None:
            raise ConfigError("model.pretrained_path=run:<id> needs a tracking store")
        pretrained = tracker.selected_checkpoint(str(pretrained)[4:], run_dir / "pretrained",
                                                 run_dir.parent)
    kwargs = OmegaConf.to_container(cfg.model.kwargs, resolve=True)
    for i, member in enumerate(kwargs.get("members") or []):  # ensembles of tracked runs
        if str(member.get("checkpoint", "")).startswith("run:"):
            if tracker is None or run_dir is None:
                raise ConfigError("model.kwargs.members: checkpoint run:<id> needs a tracking "
                                  "store")
            member["checkpoint"] = str(tracker.selected_checkpoint(
                member["checkpoint"][4:], run_dir / "members" / str(i), run_dir.parent))
    if cfg.model.in_chans not in (None, datamodule.model_in_chans):
        raise DataError(
            f"model.in_chans={cfg.model.in_chans} but {info.name} images have "
            f"{datamodule.model_in_chans} channel(s): leave model.in_chans=null to follow the data"
        )
    check_spatial_dims(cfg.model.name, info.spatial_dims, f"data '{info.name}'")
    return create_model(
        cfg.model.name, in_chans=datamodule.model_in_chans, num_classes=family.num_outputs(info),
        pretrained_path=pretrained, input_size=datamodule.image_size,
        keep_output_neurons=cfg.model.get("keep_output_neurons", False),
        init=cfg.model.get("init", "library"), **kwargs,
    )


def model_cost(net: torch.nn.Module, example: torch.Tensor) -> dict[str, float]:
    """Parameters and MACs of one forward pass on the family's example input."""
    cost = {"model/params": float(count_parameters(net))}
    try:
        cost["model/macs"] = float(count_macs(net, example))
    except RuntimeError:  # a model torch's FLOP counter cannot trace: MACs stay unreported
        pass
    return cost


def dataset_name(cfg: DictConfig) -> str:
    return str(cfg.data.get("flag") or cfg.data.get("name") or cfg.data.source)


def run_tags(cfg: DictConfig, family: Family) -> dict[str, str]:
    """What the leaderboard groups and labels runs by (it reads tags and metrics only)."""
    tags = {"family": family.name, "runner": cfg.runner.name, "dataset": dataset_name(cfg),
            "model": cfg.model.name, "seed": str(cfg.seed), "git_commit": git_commit(REPO_ROOT),
            "medbench.kind": "run", "medbench.config_hash": config_hash(cfg),
            **machine_tags(str(cfg.trainer.get("accelerator", "cpu")))}
    if cfg.get("budget"):
        tags["medbench.budget"] = str(cfg.budget)
    if (cfg.get("cv") or {}).get("folds"):
        tags.update({"cv.folds": str(cfg.cv.folds), "cv.fold": str(cfg.cv.fold)})
    tags.update({f"choice.{k}": str(v) for k, v in (cfg.get("choices") or {}).items()
                 if v is not None})
    for key, value in (cfg.survey or {}).items():
        tags[f"survey.{key}"] = str(value)
    for key, value in (cfg.get("tuned") or {}).items():
        tags[f"tuned.{key}"] = str(value)
    return tags


def train(cfg: DictConfig) -> dict[str, float]:
    """Track one run: build data and model, let the family's runner fit and test, log outputs.

    Returns the test metrics (for the Lightning runner: those of the best-``cfg.monitor``
    checkpoint, reloaded from disk).
    """
    return train_run(cfg)[1]


def train_run(cfg: DictConfig, callbacks: Sequence[pl.Callback] = (),
              tags: Mapping[str, str] | None = None,
              run_name: str | None = None) -> tuple[str | None, dict[str, float]]:
    """:func:`train`, also returning the MLflow run id (None on DDP ranks other than 0).

    ``callbacks`` join the config's Lightning callbacks; ``tags`` join the run's tags (a tuning
    trial passes its pruning callback, its study and its parent run). The libraries' notes
    print only with ``verbose=true`` (:mod:`medbench.console`).
    """
    with console(bool(cfg.get("verbose"))):
        return _tracked_run(cfg, callbacks, tags, run_name)


def _tracked_run(cfg: DictConfig, callbacks: Sequence[pl.Callback],
                 tags: Mapping[str, str] | None,
                 run_name: str | None) -> tuple[str | None, dict[str, float]]:
    family = family_of(cfg)
    family.monitor_mode(cfg.monitor)
    family.check_runner(cfg.runner.name)
    survey = cfg.get("survey") or {}
    if survey.get("runnable") is False:
        raise ConfigError(f"survey entry '{survey.id}' is not runnable yet: "
                          f"{survey.get('not_runnable')}")
    check_writable(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment_name, cfg.tracking.artifact_root,
                      active=is_rank_zero(), timeout_s=cfg.tracking.get("timeout_s", 5),
                      retries=cfg.tracking.get("retries", 2))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    fold = (cfg.get("cv") or {}).get("fold")
    run_name = run_name or (f"{cfg.model.name}-{dataset_name(cfg)}-s{cfg.seed}"
                            + ("" if fold is None else f"-f{fold}"))
    runs_dir = Path(cfg.paths.runs_dir)
    resume = None
    if cfg.get("resume") and tracker.active:
        resume = resumable_run(tracker.client, tracker.experiment_id(), str(cfg.resume),
                               runs_dir, resolved)
    tags = {**run_tags(cfg, family), **(tags or {})}
    keep_last = bool(cfg.tracking.get("keep_last_checkpoint", False))
    with (resume_state_dropped(tracker, runs_dir, keep_last),
          tracker.run(flatten(resolved), tags, run_name, resume)):
        run_dir = runs_dir / (tracker.run_id or f"rank-{os.getpid()}")
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            atomic.write_text(run_dir / "config.yaml", OmegaConf.to_yaml(redact_config(resolved)))
            tracker.log_artifact(run_dir / "config.yaml")
        datamodule = build_datamodule(cfg)
        datamodule.setup()
        summary = datamodule.summary()
        tracker.set_tags({f"data.{k}": v for k, v in summary.items()})
        tracker.set_tags({"label_type": summary.get("label_type", "")})
        net = build_model(cfg, family, datamodule, tracker, run_dir)
        example = family.example_input(datamodule.info, datamodule.input_shape)
        tracker.log_metrics(model_cost(net, example))
        context = RunContext(cfg, family, datamodule, net, run_dir, callbacks,
                             loggers=[tracker.lightning_logger()])
        outcome = family.runner(cfg.runner.name)(context)
        if tracker.active:
            _log_outcome(tracker, cfg, outcome, run_dir)
            if (cfg.get("explain") or {}).get("at_test"):  # opt-in: +explain.at_test=true
                from medbench.explain.command import explain_after_test

                explain_after_test(tracker, cfg, net, datamodule, outcome.checkpoint, run_dir)
        return tracker.run_id, outcome.metrics


def check_writable(cfg: DictConfig) -> None:
    """One line before any run (nothing created) when a folder a run writes to, or its SQLite
    store, cannot be written: the results and runs folders, the local artifact root."""
    uri = str(cfg.tracking.uri)
    folders = {"paths.results_dir": cfg.paths.results_dir, "paths.runs_dir": cfg.paths.runs_dir}
    root = str(cfg.tracking.get("artifact_root") or "")
    if root and "://" not in root and not uri.startswith(("http://", "https://")):
        folders["tracking.artifact_root"] = root
    store = sqlite_path(uri) if uri.startswith("sqlite:///") else None
    if store is not None:
        folders["tracking.uri"] = store.parent  # SQLite writes its journal beside the store
    fix = "make it writable, or set paths.results_dir to a writable folder"
    for key, folder in folders.items():
        folder = Path(folder)
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir():
            raise ConfigError(f"{key}: {existing} is a file, not a folder: {fix}")
        if not os.access(existing, os.W_OK | os.X_OK):
            where = "" if existing == folder else f"cannot create {folder}: "
            raise ConfigError(f"{key}: {where}the folder {existing} is read-only (a run writes "
                              f"its files there): {fix}")
    if store is not None and store.is_file() and not os.access(store, os.W_OK):
        raise ConfigError(f"tracking.uri: the SQLite store {store} is read-only (a run writes "
                          f"to it): {fix}, or tracking.uri to a writable store")


def _log_outcome(tracker: Tracker, cfg: DictConfig, outcome: RunOutcome, run_dir: Path) -> None:
    tracker.log_metrics(outcome.metrics)
    for path in outcome.artifacts:  # a file in a sub-folder of the run folder keeps its folder
        folder = path.parent.relative_to(run_dir) if path.parent != run_dir else None
        tracker.log_artifact(path, None if folder is None else str(folder))
    timings = {"time/test_ms_per_image": 1000 * outcome.test_seconds / outcome.n_test_items}
    if outcome.infer_seconds is not None:  # the model alone: no loading, no metrics
        timings["time/infer_ms_per_image"] = 1000 * outcome.infer_seconds / outcome.n_test_items
    if outcome.fit_seconds is not None:
        timings["time/fit_s"] = outcome.fit_seconds
    tracker.log_metrics(timings)
    tracker.set_tags(outcome.tags)
    if outcome.checkpoint and cfg.tracking.log_checkpoint:
        tracker.log_artifact(Path(outcome.checkpoint), "checkpoints")
