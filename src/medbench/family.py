"""The task-family contract: the one seam every family (classification, segmentation,
detection, ...) plugs into, and the registry that finds a family by name.

A **family** is the problem a run solves. It declares what the data's targets are, its metric
keys with their direction, how its model is fitted (a LightningModule for the shared Lightning
runner, or a runner of its own), its metric collection, the files it writes for a test outcome,
an example input for a data description, and its leaderboard schema. Shared code (``train``,
the tuner, the leaderboard) reads a family only through this contract and never names one.

This module and every family's ``family.py`` are import-light (no torch at import time): the
torch-free leaderboard and the config composer read the declarations (metric directions,
leaderboard schema); the methods that build torch objects import them when called.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from medbench.errors import ConfigError
from medbench.registry import Registry

if TYPE_CHECKING:  # torch-side types, for annotations only
    import lightning.pytorch as pl
    import torch
    from omegaconf import DictConfig
    from torchmetrics import MetricCollection

    from medbench.data.base import DatasetInfo, SplitDataModule
    from medbench.tasks.runner import RunContext, RunOutcome

SPLIT_PREFIXES = ("train/", "val/", "test/")


@dataclass(frozen=True)
class MetricKey:
    """A metric a family logs as ``<split>/<name>``, with its direction (torchmetrics'
    ``higher_is_better``) and the label tables print."""

    name: str
    higher_is_better: bool
    label: str = ""

    @property
    def mode(self) -> str:
        """Lightning's ``mode`` for a checkpoint or early-stopping callback."""
        return "max" if self.higher_is_better else "min"


# selective prediction's keys (medbench.tasks.referral) of a family with a referral, and the
# uncertainty means of runner.uncertainty's passes; each adds selective_<quality>_at_90
REFERRAL_KEYS = (MetricKey("aurc", False, "AURC"), MetricKey("referral_excluded", False),
                 MetricKey("predictive_entropy", False, "predictive entropy"),
                 MetricKey("mutual_info", False, "mutual information"))


@dataclass(frozen=True)
class LeaderboardSchema:
    """How the torch-free leaderboard shows and compares a family's runs.

    ``columns`` are test metric names (``test/<name>`` of the family's metric keys), the
    primary first: rows rank by it, in its direction. ``read_per_sample`` parses a run's
    ``per_sample_file`` artifact; ``paired_test(metric, runs_a, runs_b)`` returns the p-value
    of two rows' difference on the same test items (NaN when they were not tested on the same
    items); ``test_note`` says which test that is, for the tables' caption.
    ``rank_choices``: other metric names a dataset may rank its rows by instead of the primary
    (its runs' ``data.rank_metric`` tag, from ``DatasetInfo.rank_metric``); shown as a column
    of the tables that hold such rows. ``optional_columns``: shown after ``columns`` in a
    table where some of the family's rows have them (metrics added after runs were tracked:
    a table of older runs reads as before).
    """

    columns: tuple[str, ...]
    per_sample_file: str
    read_per_sample: Callable[[Path], Any]
    paired_test: Callable[[str, list, list], float]
    test_note: str = ""
    rank_choices: tuple[str, ...] = ()
    optional_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class PredictContext:
    """What ``medbench predict`` hands a family: the run's config, its network (the selected
    checkpoint loaded, eval mode), its datamodule (set up), the checkpoint file (buffers chosen
    on validation: thresholds; read while the predictor is built, it may be a temporary
    download) and ``folder``, relative to the CSV's, that files go under."""

    cfg: DictConfig
    net: torch.nn.Module
    datamodule: SplitDataModule
    checkpoint: Path
    run_id: str
    folder: str


@dataclass
class Predicted:
    """A batch's predictions: CSV rows (``sample_id`` first; any number per file) and files
    written beside the CSV (path relative to the CSV's folder -> bytes)."""

    rows: list[dict[str, Any]]
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Referral:
    """A test outcome's per-item ``confidence`` (higher: surer) and ``quality`` (the family's
    per-item measure in [0, 1]; NaN: undefined, left out) for selective prediction
    (:mod:`medbench.tasks.referral`), each named for the logged keys and the curve."""

    confidence: Any
    quality: Any
    quality_name: str
    confidence_name: str


class Family:
    """Base of every task family; a family is registered with :func:`register_family`.

    Class attributes declare; methods build (torch objects, imported when called). Subclasses
    set the attributes and implement :meth:`build_module`, :meth:`metric_collection` and
    :meth:`write_test_outputs`; the other methods have defaults that suit most families.
    """

    name: ClassVar[str]
    # the data's target kind (a medbench.data.targets.TargetKind subclass, named to stay
    # import-light): validation, split strata, counts, collate and augmentation of targets
    target_kind: ClassVar[str]
    metric_keys: ClassVar[tuple[MetricKey, ...]]
    default_monitor: ClassVar[str]
    leaderboard: ClassVar[LeaderboardSchema]
    # the runners it accepts (``runner.name`` -> "module:function", imported when chosen);
    # "lightning" fits build_module's LightningModule
    runners: ClassVar[dict[str, str]] = {"lightning": "medbench.tasks.runner:fit_lightning"}
    # the test uses values chosen on validation (segmentation thresholds): a test-only run
    # (``trainer.max_epochs=0``) validates first
    tunes_on_validation: ClassVar[bool] = False

    # -- declarations ------------------------------------------------------------------------
    def metric(self, key: str) -> MetricKey:
        """The metric key behind ``val/<name>`` (or a bare name); a one-line error otherwise."""
        name = key.split("/", 1)[1] if key.startswith(SPLIT_PREFIXES) else key
        for metric in self.metric_keys:
            if metric.name == name:
                return metric
        known = [f"val/{m.name}" for m in self.metric_keys]
        close = difflib.get_close_matches(key, known, n=2)
        raise ConfigError(f"'{key}' is not a validation metric of {self.name}"
                          + (f"; did you mean {', '.join(close)}?" if close else "")
                          + f" (known: {', '.join(known)})")

    def monitor_mode(self, monitor: str) -> str:
        """'max' or 'min' for a validation metric such as ``val/auc``."""
        try:
            if not monitor.startswith("val/"):
                raise ConfigError(f"'{monitor}' is not a validation metric of {self.name}")
            return self.metric(monitor).mode
        except ConfigError as err:
            raise ConfigError(f"monitor: {err}") from None

    def check_runner(self, runner: str) -> None:
        if runner not in self.runners:
            close = difflib.get_close_matches(runner, list(self.runners), n=1, cutoff=0.5)
            raise ConfigError(f"unknown runner '{runner}' for {self.name}"
                              + (f"; did you mean '{close[0]}'?" if close else "")
                              + f" (known: {', '.join(self.runners)})")

    # -- torch side --------------------------------------------------------------------------
    def num_outputs(self, info: DatasetInfo) -> int:
        """Size of the network's output layer for this data (``num_classes`` of the factory)."""
        return info.num_classes

    def example_input(self, info: DatasetInfo, shape: Sequence[int]) -> torch.Tensor:
        """One input batch of a single item of ``shape`` (C, *spatial): MACs, export, predict."""
        import torch

        return torch.zeros(1, *shape)

    def runner(self, name: str) -> Callable[[RunContext], RunOutcome]:
        """The function that fits and tests a model for ``runner.name``."""
        self.check_runner(name)
        module, function = self.runners[name].split(":")
        return getattr(importlib.import_module(module), function)

    def build_module(self, cfg: DictConfig, net: torch.nn.Module,
                     datamodule: SplitDataModule) -> pl.LightningModule:
        raise NotImplementedError

    def metric_collection(self, info: DatasetInfo) -> MetricCollection:
        raise NotImplementedError

    def write_test_outputs(self, predictions: Mapping[str, Any], info: DatasetInfo,
                           folder: Path) -> list[Path]:
        """Files of a test outcome (the per-sample file the leaderboard reads, plots).
        ``predictions`` hold per test item its ``index``, its ``sample_id`` (file path or
        index; written last, as text) and the family's own keys."""
        raise NotImplementedError

    def prediction_columns(self, outputs: torch.Tensor, info: DatasetInfo) -> dict[str, list]:
        """Per-item columns for a batch of the network's outputs, one value per item each
        (``medbench predict``'s default :meth:`predictor`, served models); a family without
        them is refused in one line."""
        raise ConfigError(f"medbench predict: the {self.name} family writes no predictions "
                          "yet (classification, segmentation and detection runs only)")

    def test_passes(self, cfg: DictConfig, net: torch.nn.Module) -> dict[str, Any]:
        """``runner.uncertainty`` and ``.uncertainty_passes`` checked for this family's shared
        passes (:mod:`medbench.tasks.stochastic`; one line before training otherwise), as
        the family module's keyword arguments."""
        from medbench.tasks.stochastic import check_passes

        uncertainty = cfg.runner.get("uncertainty")
        check_passes(uncertainty, net, str((cfg.get("model") or {}).get("name", "this model")),
                     self.name)
        return {"uncertainty": uncertainty,
                "uncertainty_passes": int(cfg.runner.get("uncertainty_passes") or 20)}

    def referral(self, predictions: Mapping[str, Any]) -> Referral | None:
        """Per test item confidence and quality for selective prediction, from the outcome's
        per-item predictions; None (the default): the family logs its own or has none."""
        return None

    def served_network(self, net: torch.nn.Module, logged: Mapping[str, float]
                       ) -> torch.nn.Module:
        """The network ``medbench predict`` and served models run, from the trained one and
        the run's logged metrics (values its test fitted; classification: the temperature).
        Default: ``net``."""
        return net

    def predictor(self, context: PredictContext) -> Callable[[dict[str, Any]], Predicted]:
        """``medbench predict``'s function from a batch of new images to a :class:`Predicted`.
        A batch holds per file ``image`` (a (C, H, W) tensor after the run's eval pipeline),
        ``size`` (its (H, W) as read), ``path``, ``sample_id`` and ``stem`` (a unique relative
        name for the files written of it). Default: each image must have the network's input
        shape (one line naming the file otherwise), one row per file of
        :meth:`prediction_columns`."""
        import torch

        from medbench.errors import DataError

        shape, info = tuple(context.datamodule.input_shape), context.datamodule.info

        def predict(batch: dict[str, Any]) -> Predicted:
            for image, path in zip(batch["image"], batch["path"], strict=True):
                if tuple(image.shape) != shape:
                    raise DataError(f"medbench predict: {path} gives an input of shape "
                                    f"{list(image.shape)} (channels, size after the run's "
                                    f"pipeline); run '{context.run_id}' was built for "
                                    f"{list(shape)}")
            columns = self.prediction_columns(context.net(torch.stack(batch["image"])), info)
            return Predicted([{"sample_id": sample, **dict(zip(columns, values, strict=True))}
                              for sample, *values in zip(batch["sample_id"], *columns.values(),
                                                         strict=True)])

        return predict


FAMILIES = Registry("family")


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: registers a :class:`Family` subclass under its ``name``."""
    FAMILIES.register(cls.name)(cls)
    return cls


_INSTANCES: dict[str, Family] = {}


def get_family(name: str) -> Family:
    """The registered family ``name`` (built-ins and plugins loaded first)."""
    from medbench.plugins import load_plugins

    load_plugins()
    if name not in _INSTANCES:
        _INSTANCES[name] = FAMILIES.get(name).builder()
    return _INSTANCES[name]


def family_names() -> list[str]:
    from medbench.plugins import BUILTIN_FAMILIES, load_plugins

    load_plugins()
    # the survey's order (medbench's own as BUILTIN_FAMILIES lists them), then plugins' in the
    # order they registered; never alphabetical, never the order modules happened to import
    rank = {module: i for i, module in enumerate(BUILTIN_FAMILIES)}
    return sorted(FAMILIES.in_registration_order(),
                  key=lambda name: rank.get(FAMILIES.get(name).builder.__module__, len(rank)))


def family_of(cfg: Mapping[str, Any]) -> Family:
    """The family a composed config's data declares (``data.family``; classification when a
    config predates families)."""
    data = cfg.get("data") or {}
    return get_family(str(data.get("family") or "classification"))
