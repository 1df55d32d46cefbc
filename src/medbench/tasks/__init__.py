"""Tasks: a LightningModule per task, and runners registered by ``task.name``."""

from medbench.tasks import deep_features, fit  # noqa: F401
from medbench.tasks.classification import ClassificationTask
from medbench.tasks.registry import TASKS, TestOutcome, register_task

__all__ = ["TASKS", "ClassificationTask", "TestOutcome", "register_task"]
