"""MLflow tracking: run lifecycle and artifacts."""

from medbench.tracking.mlflow_run import RunLogger, Tracker, flatten, git_commit, is_rank_zero

__all__ = ["RunLogger", "Tracker", "flatten", "git_commit", "is_rank_zero"]
