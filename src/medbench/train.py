"""`medbench train`: config -> datamodule -> model -> task -> Lightning -> MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from medbench.config import REPO_ROOT
from medbench.data import DATAMODULES, ClassificationDataModule
from medbench.errors import ConfigError, DataError
from medbench.metrics.classification import HIGHER_IS_BETTER
from medbench.models import create_model
from medbench.tasks import ClassificationTask
from medbench.tracking import Tracker, flatten, git_commit
from medbench.tracking.artifacts import plot_confusion_matrix, plot_roc, write_predictions


def build_datamodule(cfg: DictConfig) -> ClassificationDataModule:
    options = OmegaConf.to_container(cfg.data, resolve=True)
    source = options.pop("source")
    builder = DATAMODULES.get(source).builder
    augment = OmegaConf.to_container(cfg.augment, resolve=True)
    try:
        return builder(**options, augment=augment, seed=cfg.seed)
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
    if cfg.model.in_chans not in (None, info.in_chans):
        raise DataError(
            f"model.in_chans={cfg.model.in_chans} but {info.name} images have {info.in_chans} "
            f"channel(s): leave model.in_chans=null to follow the data"
        )
    return create_model(
        cfg.model.name, in_chans=info.in_chans, num_classes=info.num_classes,
        pretrained_path=pretrained, input_size=datamodule.image_size,
        **OmegaConf.to_container(cfg.model.kwargs, resolve=True),
    )


def build_task(cfg: DictConfig, net: torch.nn.Module,
               datamodule: ClassificationDataModule) -> ClassificationTask:
    weighting = cfg.task.class_weighting
    if weighting not in (None, "balanced"):
        raise ConfigError(f"task.class_weighting: expected null or 'balanced', got '{weighting}'")
    return ClassificationTask(
        net=net, task=datamodule.info.task, num_classes=datamodule.info.num_classes,
        optimizer=instantiate(cfg.task.optimizer), scheduler=instantiate(cfg.task.scheduler),
        class_weights=datamodule.class_weights() if weighting == "balanced" else None,
        label_names=datamodule.info.label_names, channels_last=cfg.task.channels_last,
    )


def monitor_mode(monitor: str) -> str:
    metric = monitor.rsplit("/", 1)[-1]
    if not monitor.startswith("val/") or metric not in HIGHER_IS_BETTER:
        known = ", ".join(f"val/{m}" for m in HIGHER_IS_BETTER)
        raise ConfigError(f"monitor: '{monitor}' is not a validation metric (known: {known})")
    return "max" if HIGHER_IS_BETTER[metric] else "min"


def build_callbacks(cfg: DictConfig, run_dir: Path) -> list[pl.Callback]:
    callbacks = []
    for name, options in (cfg.callbacks or {}).items():
        if options is None:
            continue
        if "_target_" not in options:
            raise ConfigError(f"callbacks.{name}: entry has no _target_")
        extra: dict[str, Any] = {}
        if options.get("mode") == "auto":
            extra["mode"] = monitor_mode(options.monitor)
        if options._target_.endswith("ModelCheckpoint"):
            extra["dirpath"] = str(run_dir / "checkpoints")
        callback = instantiate(options, **extra)
        if isinstance(callback, ProgressBar) and not cfg.trainer.get("enable_progress_bar", 1):
            continue
        callbacks.append(callback)
    return callbacks


def dataset_name(cfg: DictConfig) -> str:
    return str(cfg.data.get("flag") or cfg.data.get("name") or cfg.data.source)


def run_tags(cfg: DictConfig) -> dict[str, str]:
    tags = {"task": cfg.task.name, "dataset": dataset_name(cfg), "model": cfg.model.name,
            "seed": str(cfg.seed), "git_commit": git_commit(REPO_ROOT)}
    tags.update({f"choice.{k}": str(v) for k, v in (cfg.get("choices") or {}).items()})
    for key, value in (cfg.survey or {}).items():
        tags[f"survey.{key}"] = str(value)
    return tags


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, select the best checkpoint on ``cfg.monitor``, test it; returns the test metrics."""
    monitor_mode(cfg.monitor)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment_name, cfg.tracking.artifact_root)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    run_name = f"{cfg.model.name}-{dataset_name(cfg)}-s{cfg.seed}"
    with tracker.run(flatten(resolved), run_tags(cfg), run_name):
        run_dir = Path(cfg.paths.runs_dir) / tracker.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
        tracker.log_artifact(run_dir / "config.yaml")
        datamodule = build_datamodule(cfg)
        datamodule.setup()
        tracker.set_tags({f"data.{k}": v for k, v in datamodule.summary().items()})
        tracker.set_tags({"label_type": datamodule.info.task})
        task = build_task(cfg, build_model(cfg, datamodule, tracker, run_dir), datamodule)
        trainer: pl.Trainer = instantiate(
            cfg.trainer, callbacks=build_callbacks(cfg, run_dir),
            logger=tracker.lightning_logger(), default_root_dir=str(run_dir))
        best = None
        if cfg.trainer.max_epochs > 0:
            trainer.fit(task, datamodule=datamodule)
            best = trainer.checkpoint_callback.best_model_path
        # test the selected checkpoint, reloaded from disk (not the live, last-epoch weights);
        # max_epochs=0 evaluates the model as built (pretrained weights, ensembles)
        metrics = trainer.test(task, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
        _log_outputs(tracker, cfg, task, datamodule, run_dir, best)
        return {k: float(v) for k, v in metrics.items()}


def _log_outputs(tracker: Tracker, cfg: DictConfig, task: ClassificationTask,
                 datamodule: ClassificationDataModule, run_dir: Path, best: str | None) -> None:
    names = datamodule.info.label_names or [str(i) for i in range(datamodule.info.num_classes)]
    predictions = task.test_predictions
    files = [
        write_predictions(predictions, run_dir / "predictions_test.csv"),
        plot_confusion_matrix(task.test_confusion.compute().cpu().numpy(), names,
                              run_dir / "confusion_matrix.png"),
        plot_roc(predictions["label"].numpy(), predictions["probs"].numpy(), names,
                 run_dir / "roc.png"),
    ]
    for path in files:
        tracker.log_artifact(path)
    if not best:
        return
    epoch = torch.load(best, map_location="cpu", weights_only=True, mmap=True)["epoch"]
    tracker.set_tags({"best_checkpoint": Path(best).name, "best_epoch": epoch})
    if cfg.tracking.log_checkpoint:
        tracker.log_artifact(Path(best), "checkpoints")
