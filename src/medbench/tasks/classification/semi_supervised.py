"""The `semi_supervised` runner: a labelled fraction of the training split, the rest unlabelled.

Survey 4.4.3 (Sun et al., 2017: breast masses, a CNN helped by unlabelled data through
graph-based semi-supervised co-training). From the paper: few labelled and many unlabelled
training images, a graph over feature vectors of both that carries the labels to the
unlabelled ones, and a CNN. Chosen here where it is silent or what it used is not available
(its 21 hand-crafted mass features, data weighing, two-view co-training): a seeded,
stratified ``runner.labelled_fraction`` of the training split keeps its labels and the rest
is unlabelled (the validation split stays labelled: it selects the CNN's checkpoint); the CNN
(``model``) is trained on the labelled part alone (Lightning, ``trainer.*``; its own test
metrics and curves logged under ``labelled_only/``); the features its last Linear layer
receives (``runner.layers``, as ``deep_features``) of every training image then feed
scikit-learn's ``LabelSpreading`` (a k-nearest-neighbour graph, ``runner.method=
label_spreading``) or ``SelfTrainingClassifier`` (``self_training``), fitted with the
unlabelled images' labels hidden (-1), which predicts the val and test splits.
``trainer.max_epochs=0`` trains no CNN: features of the model as built (``model.
pretrained_path``, else random weights), as ``deep_features``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
from lightning.pytorch.loggers import Logger

from medbench.data.sources import PooledSource
from medbench.errors import ConfigError
from medbench.tasks.classification.deep_features import (
    LayerFeatures,
    predict_splits,
    sklearn_classifier,
)
from medbench.tasks.runner import RunContext, RunOutcome, finish, fit_lightning

METHODS = ("label_spreading", "self_training")
LABELLED_ONLY = "labelled_only"  # the CNN trained on the labelled images alone: its folder


def checked_fraction(value: Any) -> float:
    """``runner.labelled_fraction`` as a float in (0, 1], else one line."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigError(f"runner.labelled_fraction: expected a number in (0, 1] (the share "
                          f"of the training split that keeps its labels), got {value!r}")
    return float(value)


def labelled_mask(targets: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Which training items keep their label: ``round(fraction * n_c)`` (at least one) of each
    class c, drawn with ``seed``; the same targets, fraction and seed give the same items."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(targets), dtype=bool)
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label)
        keep = max(1, round(fraction * len(members)))
        mask[rng.permutation(members)[:keep]] = True
    return mask


class Prefixed(Logger):
    """A Lightning logger whose metrics go to ``inner`` under ``<prefix>/``: the labelled-only
    CNN's curves apart from the run's own ``val/...`` and ``test/...``."""

    def __init__(self, inner: Logger, prefix: str) -> None:
        super().__init__()
        self.inner, self.prefix = inner, prefix

    @property
    def name(self) -> str | None:
        return self.inner.name

    @property
    def version(self) -> int | str | None:
        return self.inner.version

    @property
    def save_dir(self) -> str | None:
        return self.inner.save_dir

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.inner.log_hyperparams(params, *args, **kwargs)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.inner.log_metrics({f"{self.prefix}/{k}": v for k, v in metrics.items()}, step)


def fit_on_labelled(ctx: RunContext, labelled: np.ndarray) -> RunOutcome:
    """The Lightning runner on the labelled training items alone (the datamodule's training
    split is given back afterwards); its files in ``<run>/labelled_only/``."""
    datamodule = ctx.datamodule
    source, targets = datamodule.splits["train"]
    picks = np.stack([np.zeros(labelled.sum(), dtype=np.int64), np.flatnonzero(labelled)], 1)
    folder = ctx.run_dir / LABELLED_ONLY
    folder.mkdir(parents=True, exist_ok=True)
    datamodule.splits["train"] = (PooledSource([source], picks), targets[labelled])
    try:
        return fit_lightning(dataclasses.replace(
            ctx, run_dir=folder, loggers=[Prefixed(lg, LABELLED_ONLY) for lg in ctx.loggers]))
    finally:
        datamodule.splits["train"] = (source, targets)


def fit_semi_supervised(ctx: RunContext) -> RunOutcome:
    """The CNN on the labelled fraction, then a graph-based (or self-training) scikit-learn
    estimator over its features of the labelled and unlabelled training images."""
    cfg, datamodule = ctx.cfg, ctx.datamodule
    fraction = checked_fraction(cfg.runner.get("labelled_fraction"))
    method = cfg.runner.get("method")
    if method not in METHODS:
        raise ConfigError(f"runner.method: expected one of {', '.join(METHODS)}, got "
                          f"{method!r}")
    if datamodule.info.label_type == "multilabel":
        raise ConfigError("runner=semi_supervised supports binary, multi-class and ordinal "
                          "labels")
    labelled = labelled_mask(datamodule.splits["train"][1], fraction,
                             int(cfg.runner.labelled_seed))
    start = time.perf_counter()
    metrics: dict[str, float] = {}
    cnn = None
    if cfg.trainer.max_epochs > 0:
        cnn = fit_on_labelled(ctx, labelled)
        metrics.update({f"{LABELLED_ONLY}/{k}": v for k, v in cnn.metrics.items()
                        if k.startswith("test/")})
    extractor = LayerFeatures(ctx.net, [str(layer) for layer in cfg.runner.layers])
    x, y, index = extractor.transform(datamodule.eval_dataloader("train"))
    hidden = np.where(labelled[index], y, -1)  # the unlabelled images' labels are never seen
    estimator = sklearn_classifier(cfg.runner[method], cfg.runner.standardize)
    estimator.fit(x, hidden)
    fit_seconds = time.perf_counter() - start
    scores, predictions, test_seconds = predict_splits(extractor, estimator, datamodule)
    metrics.update(scores)
    tags = {"medbench.variant": f"{100 * fraction:.3g}% labelled",  # its leaderboard row
            "semi.labelled": str(int(labelled.sum())),
            "semi.unlabelled": str(int((~labelled).sum())), "semi.method": method,
            "features.dim": str(x.shape[1]),
            "features.pretrained": str(bool(cfg.model.pretrained_path))}
    if cnn is not None:
        tags.update({f"{LABELLED_ONLY}.{k}": v for k, v in cnn.tags.items()})
    return finish(ctx, RunOutcome(metrics, predictions, artifacts=cnn.artifacts if cnn else [],
                                  tags=tags, fit_seconds=fit_seconds, test_seconds=test_seconds))

