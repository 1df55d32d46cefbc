"""The `classification` runner: Lightning fits the network and tests its selected checkpoint."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig

from medbench.data import ClassificationDataModule
from medbench.errors import ConfigError
from medbench.metrics.classification import HIGHER_IS_BETTER
from medbench.tasks.classification import ClassificationTask
from medbench.tasks.registry import TestOutcome, register_task
from medbench.tasks.rng import RngState
from medbench.tracking import Tracker


def monitor_mode(monitor: str) -> str:
    """'max' or 'min' for a validation metric key such as ``val/auc``."""
    metric = monitor.rsplit("/", 1)[-1]
    if not monitor.startswith("val/") or metric not in HIGHER_IS_BETTER:
        known = ", ".join(f"val/{m}" for m in HIGHER_IS_BETTER)
        raise ConfigError(f"monitor: '{monitor}' is not a validation metric (known: {known})")
    return "max" if HIGHER_IS_BETTER[metric] else "min"


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


@register_task("classification")
def fit_classification(cfg: DictConfig, datamodule: ClassificationDataModule,
                       net: torch.nn.Module, tracker: Tracker, run_dir: Path,
                       callbacks: Sequence[pl.Callback] = ()) -> TestOutcome:
    """Fit, select the best checkpoint on ``cfg.monitor``, test it reloaded from disk.

    ``trainer.max_epochs=0`` tests the model as built (pretrained weights, ensembles).
    ``callbacks`` join those of the config (e.g. a tuning trial's pruning callback).
    """
    task = build_task(cfg, net, datamodule)
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=[*build_callbacks(cfg, run_dir), RngState(), *callbacks],
        logger=tracker.lightning_logger(), default_root_dir=str(run_dir))
    best, fit_seconds = None, None
    if cfg.trainer.max_epochs > 0:
        # resume=<run>: continue from the run's last checkpoint (model, optimiser, schedule,
        # loops, callbacks, RNG states)
        last = run_dir / "checkpoints" / "last.ckpt" if cfg.get("resume") else None
        start = time.perf_counter()
        trainer.fit(task, datamodule=datamodule, ckpt_path=last, weights_only=True)
        fit_seconds = time.perf_counter() - start
        best = trainer.checkpoint_callback.best_model_path
    start = time.perf_counter()
    metrics = trainer.test(task, datamodule=datamodule, ckpt_path=best, verbose=False)[0]
    test_seconds = time.perf_counter() - start
    return TestOutcome({k: float(v) for k, v in metrics.items()}, task.test_predictions,
                       task.test_confusion.compute().cpu().numpy(), best, fit_seconds,
                       test_seconds)
