"""Task registry: ``task.name`` picks the runner that fits a model and tests it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medbench.registry import Registry

TASKS = Registry("task")
register_task = TASKS.register


@dataclass
class TestOutcome:
    """What a runner hands back for tracking: metrics, per-sample predictions, the checkpoint."""

    metrics: dict[str, float]
    predictions: dict[str, torch.Tensor]  # index, label, probs
    confusion: np.ndarray
    checkpoint: str | None = None
    fit_seconds: float | None = None  # wall time of training (None: nothing was trained)
    test_seconds: float | None = None  # wall time of predicting the test split
