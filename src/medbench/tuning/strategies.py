"""Optuna samplers and pruners by name (``conf/study/sampler``, ``conf/study/pruner``)."""

from __future__ import annotations

from typing import Any

import optuna

from medbench.errors import ConfigError
from medbench.registry import Registry
from medbench.tuning.space import SearchSpace

SAMPLERS = Registry("sampler")
PRUNERS = Registry("pruner")


@SAMPLERS.register("tpe")
def tpe(space: SearchSpace, seed: int | None, **kwargs: Any) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, **kwargs)


@SAMPLERS.register("gp")
def gp(space: SearchSpace, seed: int | None, **kwargs: Any) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed, **kwargs)


@SAMPLERS.register("cmaes")
def cmaes(space: SearchSpace, seed: int | None, **kwargs: Any) -> optuna.samplers.BaseSampler:
    return optuna.samplers.CmaEsSampler(seed=seed, **kwargs)


@SAMPLERS.register("random")
def random_sampler(space: SearchSpace, seed: int | None,
                   **kwargs: Any) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed, **kwargs)


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler calls ``Study.stop()`` once the grid is covered, which raises
    outside ``Study.optimize``; the worker loop stops on its own budget (capped at the grid)."""

    def after_trial(self, study, trial, state, values) -> None:  # noqa: ANN001
        pass


@SAMPLERS.register("grid")
def grid(space: SearchSpace, seed: int | None, **kwargs: Any) -> optuna.samplers.BaseSampler:
    return _GridSampler(space.grid(), seed=seed, **kwargs)


@PRUNERS.register("median")
def median(**kwargs: Any) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(**kwargs)


@PRUNERS.register("successive_halving")
def successive_halving(**kwargs: Any) -> optuna.pruners.BasePruner:
    return optuna.pruners.SuccessiveHalvingPruner(**kwargs)


@PRUNERS.register("hyperband")
def hyperband(**kwargs: Any) -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(**kwargs)


@PRUNERS.register("none")
def no_pruning(**kwargs: Any) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner(**kwargs)


def build_sampler(spec: dict[str, Any], space: SearchSpace,
                  seed: int | None) -> optuna.samplers.BaseSampler:
    return _build(SAMPLERS, "study.sampler", spec, space=space, seed=seed)


def build_pruner(spec: dict[str, Any]) -> optuna.pruners.BasePruner:
    return _build(PRUNERS, "study.pruner", spec)


def _build(registry: Registry, where: str, spec: dict[str, Any], **args: Any) -> Any:
    builder = registry.get(spec.get("name", "")).builder
    try:
        return builder(**args, **(spec.get("kwargs") or {}))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}.kwargs ({spec.get('name')}): {err}") from None
