"""What Lightning shows while a run fits: the progress bar's metrics and the logging interval."""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import DictConfig


class MetricsProgressBar(RichProgressBar):
    """Rich's progress bar showing ``metrics`` (the train loss and the monitored validation
    metric, as the callbacks config names them) once they have a value, instead of the
    logger's version number (``v_num``)."""

    def __init__(self, metrics: Sequence[str] = ("train/loss",), metrics_format: str = ".4f",
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.metrics = list(dict.fromkeys(metrics))  # ordered, without repeats
        self.metrics_format = metrics_format

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule
                    ) -> dict[str, int | str | float | dict[str, float]]:
        logged = trainer.callback_metrics
        shown: dict[str, int | str | float | dict[str, float]] = {}
        for key in self.metrics:
            value = logged.get(key)
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                shown[key] = f"{value.item():{self.metrics_format}}"
        return shown


def log_interval(trainer_cfg: DictConfig, datamodule: pl.LightningDataModule) -> int:
    """``trainer.log_every_n_steps`` capped at one epoch's training batches, so Lightning has
    no interval longer than an epoch to warn about (medbench logs per epoch)."""
    try:
        train_batches: int | None = len(datamodule.train_dataloader())
    except (TypeError, NotImplementedError):  # no length (iterable data), or no train split
        train_batches = None
    interval = int(trainer_cfg.get("log_every_n_steps") or 50)
    limit = trainer_cfg.get("limit_train_batches")
    if train_batches is not None and isinstance(limit, float):
        train_batches = int(train_batches * limit)
    elif isinstance(limit, int):
        train_batches = limit if train_batches is None else min(train_batches, limit)
    return max(1, min(interval, train_batches or interval))
