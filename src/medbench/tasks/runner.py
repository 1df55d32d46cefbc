"""Runners fit and test a model and return an outcome; they never see the tracker.

``fit_lightning`` is the runner of every family with a LightningModule: Lightning fits it,
the best checkpoint on ``monitor`` is selected, reloaded from disk and tested. A family with
another loop (deep features + a scikit-learn classifier) returns the same :class:`RunOutcome`.
``medbench.train`` alone logs an outcome.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from medbench import signals
from medbench.data.base import SplitDataModule
from medbench.errors import ConfigError
from medbench.tasks.checkpoint_io import AtomicCheckpointIO
from medbench.tasks.progress import log_interval
from medbench.tasks.referral import referral_metrics, write_referral
from medbench.tasks.rng import RngState

if TYPE_CHECKING:
    from medbench.family import Family


@dataclass
class RunContext:
    """What a runner gets: the config, the family, built data and network, its run folder,
    extra Lightning callbacks (a tuning trial's pruning) and Lightning loggers (per-epoch
    metrics; Lightning's interface, not the tracker's)."""

    cfg: DictConfig
    family: Family
    datamodule: SplitDataModule
    net: torch.nn.Module
    run_dir: Path
    callbacks: Sequence[pl.Callback] = ()
    loggers: Sequence[Logger] = ()


@dataclass
class RunOutcome:
    """What a runner hands back to be tracked."""

    metrics: dict[str, float]  # final metrics (test/..., and val/... for epoch-free runners)
    predictions: dict[str, torch.Tensor]  # per test item, "index" plus the family's keys
    artifacts: list[Path] = field(default_factory=list)  # files the family wrote
    tags: dict[str, str] = field(default_factory=dict)
    checkpoint: str | None = None  # the selected checkpoint, if any
    best_score: float | None = None  # its value of the monitored metric
    fit_seconds: float | None = None  # wall time of training (None: nothing was trained)
    test_seconds: float | None = None  # wall time of predicting the test split
    infer_seconds: float | None = None  # of that, the network's forward passes alone

    @property
    def n_test_items(self) -> int:
        return len(self.predictions["index"])


class UnhandledStop(pl.Callback):
    """Raises, at the next batch, a Ctrl-C or SIGTERM whose exception Python dropped (raised
    in a garbage-collector callback; :func:`medbench.signals.check`): the run stops there."""

    def on_train_batch_start(self, *_: Any) -> None:
        signals.check()

    def on_validation_batch_start(self, *_: Any) -> None:
        signals.check()

    def on_test_batch_start(self, *_: Any) -> None:
        signals.check()


def build_callbacks(cfg: DictConfig, family: Family, run_dir: Path) -> list[pl.Callback]:
    """The config's callbacks; ``mode: auto`` takes the direction of the monitored metric."""
    callbacks = []
    for name, options in (cfg.callbacks or {}).items():
        if options is None:
            continue
        if "_target_" not in options:
            raise ConfigError(f"callbacks.{name}: entry has no _target_")
        extra: dict[str, Any] = {}
        if options.get("mode") == "auto":
            extra["mode"] = family.monitor_mode(options.monitor)
        if options._target_.endswith("ModelCheckpoint"):
            extra["dirpath"] = str(run_dir / "checkpoints")
        callback = instantiate(options, **extra)
        if isinstance(callback, ProgressBar) and not cfg.trainer.get("enable_progress_bar", 1):
            continue
        callbacks.append(callback)
    return callbacks


def finish(ctx: RunContext, outcome: RunOutcome) -> RunOutcome:
    """The family's test files (each sample with its id: file path or index), selective
    prediction where the family has a referral, and the selected checkpoint's name and epoch
    as tags."""
    ids = ctx.datamodule.splits["test"][0].sample_ids()
    outcome.predictions["sample_id"] = np.array([ids[int(i)]
                                                 for i in outcome.predictions["index"]])
    referral = ctx.family.referral(outcome.predictions)
    if referral is not None:
        outcome.metrics.update(referral_metrics(referral))
        outcome.artifacts += write_referral(referral, ctx.run_dir)
    outcome.artifacts += ctx.family.write_test_outputs(outcome.predictions, ctx.datamodule.info,
                                                       ctx.run_dir)
    if outcome.checkpoint:
        epoch = torch.load(outcome.checkpoint, map_location="cpu", weights_only=True,
                           mmap=True)["epoch"]
        outcome.tags.update({"best_checkpoint": Path(outcome.checkpoint).name,
                             "best_epoch": str(epoch)})
        if outcome.best_score is not None:
            outcome.tags["best_score"] = f"{outcome.best_score:.6g}"
    return outcome


def fit_lightning(ctx: RunContext) -> RunOutcome:
    """Fit, select the best checkpoint on ``cfg.monitor``, test it reloaded from disk.

    ``trainer.max_epochs=0`` tests the model as built (pretrained weights, ensembles).
    """
    cfg = ctx.cfg
    module = ctx.family.build_module(cfg, ctx.net, ctx.datamodule)
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=[*build_callbacks(cfg, ctx.family, ctx.run_dir), RngState(),
                                UnhandledStop(), *ctx.callbacks],
        logger=list(ctx.loggers) or False, default_root_dir=str(ctx.run_dir),
        log_every_n_steps=log_interval(cfg.trainer, ctx.datamodule),
        # in code, not conf/: checkpoints written whole or not at all (a config key would
        # change every stored config hash)
        plugins=[AtomicCheckpointIO()])
    best, score, fit_seconds = None, None, None
    if cfg.trainer.max_epochs > 0:
        # resume=<run>: continue from the run's last checkpoint (model, optimiser, schedule,
        # loops, callbacks, RNG states)
        last = ctx.run_dir / "checkpoints" / "last.ckpt" if cfg.get("resume") else None
        start = time.perf_counter()
        trainer.fit(module, datamodule=ctx.datamodule, ckpt_path=last, weights_only=True)
        fit_seconds = time.perf_counter() - start
        # fast_dev_run and checkpointing switched off save nothing: the weights in memory are
        # tested then
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        score = getattr(trainer.checkpoint_callback, "best_model_score", None) if best else None
    elif ctx.family.tunes_on_validation:
        trainer.validate(module, datamodule=ctx.datamodule, verbose=False)
    trainer.loggers = []  # the test metrics are the outcome's: train logs them, once
    start = time.perf_counter()
    metrics = trainer.test(module, datamodule=ctx.datamodule, ckpt_path=best, verbose=False)[0]
    test_seconds = time.perf_counter() - start
    outcome = RunOutcome({k: float(v) for k, v in metrics.items()}, module.test_predictions,
                         checkpoint=best or None, fit_seconds=fit_seconds,
                         best_score=None if score is None else float(score),
                         test_seconds=test_seconds,
                         infer_seconds=getattr(module, "test_forward_seconds", None))
    return finish(ctx, outcome)
