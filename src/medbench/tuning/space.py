"""Search spaces from ``conf/search/*.yaml``: Optuna distributions keyed by Hydra override keys."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from medbench.errors import ConfigError

_PLAIN = re.compile(r"^[A-Za-z_][\w\-./]*$")


class SearchSpace:
    """``{name: spec}`` -> Optuna distributions, and Hydra overrides for sampled values.

    A spec is ``{type: float|int, low, high[, log][, step]}`` or ``{type: categorical,
    choices: [...]}``, plus ``key``: the Hydra override key it sets (default: the name), e.g.
    ``runner.optimizer.lr`` (a value), ``model`` (a config group option) or
    ``+model.kwargs.drop_rate`` (a key the config does not have yet). Names stay short so that
    ``search.params.lr.high=0.01`` overrides a bound from the command line.
    """

    def __init__(self, params: Mapping[str, Mapping[str, Any]] | None) -> None:
        if not params:
            raise ConfigError("search.params: the search space is empty (conf/search/*.yaml)")
        self.keys: dict[str, str] = {}
        self.distributions: dict[str, BaseDistribution] = {}
        for name, spec in params.items():
            spec = dict(spec) if isinstance(spec, Mapping) else spec
            if isinstance(spec, dict):
                self.keys[name] = str(spec.pop("key", name))
            self.distributions[name] = _distribution(f"search.params.{name}", spec)

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """Hydra overrides that set ``values`` (one per parameter)."""
        return [f"{self.keys[k]}={format_value(v)}" for k, v in values.items()]

    def grid(self) -> dict[str, list[Any]]:
        """Every value of each parameter, for Optuna's grid sampler."""
        grid = {}
        for name, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                grid[name] = list(dist.choices)
            elif dist.step is not None:
                values = np.arange(dist.low, dist.high + dist.step / 2, dist.step)
                grid[name] = [v.item() for v in values]
            else:
                raise ConfigError(f"search.params.{name}: the grid sampler needs a categorical "
                                  "or a step")
        return grid

    def grid_size(self) -> int:
        return len(list(itertools.product(*self.grid().values())))


def _distribution(where: str, spec: Mapping[str, Any]) -> BaseDistribution:
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(f"{where}: expected {{type: float|int|categorical, ...}}, got {spec!r}")
    kind, options = spec["type"], {k: v for k, v in spec.items() if k != "type"}
    try:
        if kind == "categorical":
            return CategoricalDistribution(list(options.pop("choices")), **options)
        if kind in ("float", "int"):
            cls = FloatDistribution if kind == "float" else IntDistribution
            cast = float if kind == "float" else int
            low, high = cast(options.pop("low")), cast(options.pop("high"))
            if options.get("step") is not None:
                options["step"] = cast(options["step"])
            return cls(low, high, **options)
    except KeyError as err:
        raise ConfigError(f"{where}: missing {err.args[0]!r}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None
    raise ConfigError(f"{where}.type: expected float, int or categorical, got {kind!r}")


def format_value(value: Any) -> str:
    """A value as Hydra's override grammar reads it back unchanged."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in ("null", "true", "false"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
