"""Hyperparameter search with Optuna over any experiment (`medbench tune`)."""

from medbench.tuning.space import SearchSpace
from medbench.tuning.strategies import PRUNERS, SAMPLERS

__all__ = ["PRUNERS", "SAMPLERS", "SearchSpace"]
