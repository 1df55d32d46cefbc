"""Tasks: one LightningModule per task."""

from medbench.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask"]
