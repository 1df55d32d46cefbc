"""The Lightning callback through which a training reports to its Optuna trial."""

from __future__ import annotations

import hashlib
import math

import lightning.pytorch as pl
import optuna

from medbench.errors import RunStopped, TrainingError


class PrunedTrial(RunStopped, optuna.TrialPruned):
    """Optuna's pruner stopped the trial; the MLflow run ends KILLED."""


class OptunaPruning(pl.Callback):
    """Reports ``monitor`` to the trial after each validation epoch; prunes when Optuna says so.

    Only global rank 0 talks to Optuna (``trial`` is None elsewhere); its decision is broadcast
    so that every DDP rank stops at the same epoch. At set-up the ranks check that they train
    with the same trial parameters (``fingerprint``), the failure of lightning-hydra-template
    #639 where each rank sampled its own.
    """

    def __init__(self, trial: optuna.Trial | None, monitor: str, direction: str,
                 fingerprint: str) -> None:
        self.trial, self.monitor, self.direction = trial, monitor, direction
        self.fingerprint = hashlib.sha256(fingerprint.encode()).hexdigest()
        self.values: list[float] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.world_size == 1:
            return
        same = trainer.strategy.broadcast(self.fingerprint, src=0) == self.fingerprint
        if not trainer.strategy.reduce_boolean_decision(same, all=True):
            raise TrainingError("DDP ranks were given different trial parameters")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        value = trainer.callback_metrics.get(self.monitor)
        value = float(value) if value is not None else math.nan
        self.values.append(value)
        prune = False
        if self.trial is not None and math.isfinite(value):
            self.trial.report(value, step=epoch)
            prune = self.trial.should_prune()
        if trainer.world_size > 1:
            prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            raise PrunedTrial(f"pruned after epoch {epoch}: {self.monitor}={value:.4f}")

    @property
    def epochs(self) -> int:
        return len(self.values)

    def best(self) -> float:
        """The best reported value (the objective of a finished trial)."""
        finite = [v for v in self.values if math.isfinite(v)]
        if not finite:
            return math.nan
        return max(finite) if self.direction == "maximize" else min(finite)
