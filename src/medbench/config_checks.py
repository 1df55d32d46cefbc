"""The types and ranges of the keys every run reads, checked once a config is composed.

Hydra types an override by how it is spelled (`trainer.max_epochs=abc` is a string, `2.5` a
float), and the libraries downstream fail far from the cause (a TypeError in the runner, an
assertion in Lightning's loop) or not at all (`max_epochs=-1` trains nothing and ends
FINISHED; `seeds=[0,0]` reports a zero standard deviation). Each key here gets one line
naming it, the value and what was expected. Import-light: OmegaConf only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medbench.errors import ConfigError

MISSING = object()


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _seeds(value: Any) -> bool:
    return value is None or (isinstance(value, list) and len(value) > 0
                             and all(_whole(v, 0) for v in value)
                             and len(set(value)) == len(value))


# key -> (is it valid?, what is expected); a key the config lacks is not checked
CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (lambda v: _whole(v, 0), "a whole number >= 0"),
    "seeds": (_seeds, "null or a list of distinct whole numbers, e.g. [0,1,2] (a seed repeated "
                      "would count one run twice and shrink the standard deviation)"),
    "trainer.max_epochs": (lambda v: _whole(v, 0),
                           "a whole number of epochs >= 0 (0: test without training)"),
    "data.batch_size": (lambda v: _whole(v, 1), "a whole number >= 1"),
    "data.eval_batch_size": (lambda v: v is None or _whole(v, 1), "null or a whole number >= 1"),
    "data.num_workers": (lambda v: _whole(v, 0), "a whole number >= 0"),
    # 0 is allowed: tests and two-stage methods freeze a network that way
    "runner.optimizer.lr": (lambda v: _positive_number(v) or v == 0, "a number >= 0"),
    "runner.calibration": (lambda v: v in (None, "temperature"),
                           "null or 'temperature' (scaling fitted on validation)"),
    "runner.uncertainty": (lambda v: v in (None, "mc_dropout", "tta", "ensemble"),
                           "null, 'mc_dropout', 'tta' or 'ensemble'"),
    "runner.uncertainty_passes": (lambda v: _whole(v, 2), "a whole number of passes >= 2"),
    "study.n_trials": (lambda v: _whole(v, 1), "a whole number of trials >= 1"),
    "study.timeout": (lambda v: v is None or _positive_number(v), "null or seconds > 0"),
}


def check_config(cfg: DictConfig) -> None:
    """Raises :class:`ConfigError` for the first key of :data:`CHECKS` whose value is wrong
    (``cv.folds`` and ``cv.fold`` are checked with the data, ``data/base.py``)."""
    for key, (valid, expected) in CHECKS.items():
        value = OmegaConf.select(cfg, key, default=MISSING, throw_on_missing=False)
        if value is MISSING:
            continue
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if not valid(value):
            raise ConfigError(f"{key}: expected {expected}, got {value!r}")
