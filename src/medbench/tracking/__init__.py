"""MLflow tracking: the run lifecycle (params, tags, artifacts, final status), liveness, resume."""

from medbench.tracking.mlflow_run import RunLogger, Tracker, flatten, git_commit, is_rank_zero

__all__ = ["RunLogger", "Tracker", "flatten", "git_commit", "is_rank_zero"]
