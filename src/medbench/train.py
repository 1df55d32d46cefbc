"""`medbench train`: config -> datamodule -> model -> task runner -> MLflow run."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf

from medbench.config import REPO_ROOT
from medbench.data import DATAMODULES, ClassificationDataModule
from medbench.errors import ConfigError, DataError
from medbench.models import create_model
from medbench.models.profile import count_macs, count_parameters
from medbench.provenance import machine_tags
from medbench.repeats import config_hash
from medbench.tasks import TASKS, TestOutcome
from medbench.tasks.fit import monitor_mode
from medbench.tracking import Tracker, flatten, git_commit, is_rank_zero
from medbench.tracking.artifacts import plot_confusion_matrix, plot_roc, write_predictions
from medbench.tracking.liveness import resumable_run


def build_datamodule(cfg: DictConfig) -> ClassificationDataModule:
    options = OmegaConf.to_container(cfg.data, resolve=True)
    source = options.pop("source")
    builder = DATAMODULES.get(source).builder
    augment = OmegaConf.to_container(cfg.augment, resolve=True)
    cv = OmegaConf.to_container(cfg.cv, resolve=True) if cfg.get("cv") else None
    try:
        return builder(**options, augment=augment, seed=cfg.seed, cv=cv)
    except TypeError as err:
        raise ConfigError(f"data ({source}): {err}") from None


def build_model(cfg: DictConfig, datamodule: ClassificationDataModule,
                tracker: Tracker | None = None, run_dir: Path | None = None) -> torch.nn.Module:
    """The registered model sized to the data. ``model.pretrained_path=run:<id>`` starts from
    the checkpoint another run selected (transfer and twice-transfer learning, survey 4.2.5)."""
    info = datamodule.info
    pretrained = cfg.model.pretrained_path
    if pretrained and str(pretrained).startswith("run:"):
        if tracker is None or run_dir is None:
            raise ConfigError("model.pretrained_path=run:<id> needs a tracking store")
        pretrained = tracker.selected_checkpoint(str(pretrained)[4:], run_dir / "pretrained")
    if cfg.model.in_chans not in (None, datamodule.model_in_chans):
        raise DataError(
            f"model.in_chans={cfg.model.in_chans} but {info.name} images have "
            f"{datamodule.model_in_chans} channel(s): leave model.in_chans=null to follow the data"
        )
    return create_model(
        cfg.model.name, in_chans=datamodule.model_in_chans, num_classes=info.num_classes,
        pretrained_path=pretrained, input_size=datamodule.image_size,
        keep_output_neurons=cfg.model.get("keep_output_neurons", False),
        init=cfg.model.get("init", "library"),
        **OmegaConf.to_container(cfg.model.kwargs, resolve=True),
    )


def model_cost(net: torch.nn.Module, datamodule: ClassificationDataModule) -> dict[str, float]:
    """Parameters and MACs of one forward pass on one image of the data."""
    cost = {"model/params": float(count_parameters(net))}
    try:
        cost["model/macs"] = float(count_macs(net, datamodule.model_in_chans,
                                              datamodule.image_size))
    except RuntimeError:  # a model torch's FLOP counter cannot trace: MACs stay unreported
        pass
    return cost


def dataset_name(cfg: DictConfig) -> str:
    return str(cfg.data.get("flag") or cfg.data.get("name") or cfg.data.source)


def run_tags(cfg: DictConfig) -> dict[str, str]:
    """What the leaderboard groups and labels runs by (it reads tags and metrics only)."""
    tags = {"task": cfg.task.name, "dataset": dataset_name(cfg), "model": cfg.model.name,
            "seed": str(cfg.seed), "git_commit": git_commit(REPO_ROOT),
            "medbench.kind": "run", "medbench.config_hash": config_hash(cfg),
            **machine_tags(str(cfg.trainer.get("accelerator", "cpu")))}
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
    """Track one run: build data and model, let the task's runner fit and test, log outputs.

    Returns the test metrics (for ``classification``: those of the best-``cfg.monitor``
    checkpoint, reloaded from disk).
    """
    return train_run(cfg)[1]


def train_run(cfg: DictConfig, callbacks: Sequence[pl.Callback] = (),
              tags: Mapping[str, str] | None = None,
              run_name: str | None = None) -> tuple[str | None, dict[str, float]]:
    """:func:`train`, also returning the MLflow run id (None on DDP ranks other than 0).

    ``callbacks`` join the config's Lightning callbacks; ``tags`` join the run's tags (a tuning
    trial passes its pruning callback, its study and its parent run).
    """
    monitor_mode(cfg.monitor)
    survey = cfg.get("survey") or {}
    if survey.get("runnable") is False:
        raise ConfigError(f"survey entry '{survey.id}' is not runnable yet: "
                          f"{survey.get('not_runnable')}")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment_name, cfg.tracking.artifact_root,
                      active=is_rank_zero())
    resolved = OmegaConf.to_container(cfg, resolve=True)
    fold = (cfg.get("cv") or {}).get("fold")
    run_name = run_name or (f"{cfg.model.name}-{dataset_name(cfg)}-s{cfg.seed}"
                            + ("" if fold is None else f"-f{fold}"))
    runs_dir = Path(cfg.paths.runs_dir)
    resume = None
    if cfg.get("resume") and tracker.active:
        resume = resumable_run(tracker.client, tracker.experiment_id(), str(cfg.resume),
                               runs_dir, resolved)
    tags = {**run_tags(cfg), **(tags or {})}
    with tracker.run(flatten(resolved), tags, run_name, resume):
        run_dir = runs_dir / (tracker.run_id or f"rank-{os.getpid()}")
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
            tracker.log_artifact(run_dir / "config.yaml")
        datamodule = build_datamodule(cfg)
        datamodule.setup()
        tracker.set_tags({f"data.{k}": v for k, v in datamodule.summary().items()})
        tracker.set_tags({"label_type": datamodule.info.task})
        net = build_model(cfg, datamodule, tracker, run_dir)
        tracker.log_metrics(model_cost(net, datamodule))
        outcome = TASKS.get(cfg.task.name).builder(cfg, datamodule, net, tracker, run_dir,
                                                   callbacks=callbacks)
        if tracker.active:
            _log_outputs(tracker, cfg, outcome, datamodule, run_dir)
        return tracker.run_id, outcome.metrics


def _log_outputs(tracker: Tracker, cfg: DictConfig, outcome: TestOutcome,
                 datamodule: ClassificationDataModule, run_dir: Path) -> None:
    names = datamodule.info.label_names or [str(i) for i in range(datamodule.info.num_classes)]
    predictions, best = outcome.predictions, outcome.checkpoint
    files = [
        write_predictions(predictions, run_dir / "predictions_test.csv"),
        plot_confusion_matrix(outcome.confusion, names, run_dir / "confusion_matrix.png"),
        plot_roc(predictions["label"].numpy(), predictions["probs"].numpy(), names,
                 run_dir / "roc.png"),
    ]
    for path in files:
        tracker.log_artifact(path)
    timings = {"time/test_ms_per_image": 1000 * outcome.test_seconds / len(predictions["index"])}
    if outcome.fit_seconds is not None:
        timings["time/fit_s"] = outcome.fit_seconds
    tracker.log_metrics(timings)
    if not best:
        return
    epoch = torch.load(best, map_location="cpu", weights_only=True, mmap=True)["epoch"]
    tracker.set_tags({"best_checkpoint": Path(best).name, "best_epoch": epoch})
    if cfg.tracking.log_checkpoint:
        tracker.log_artifact(Path(best), "checkpoints")
