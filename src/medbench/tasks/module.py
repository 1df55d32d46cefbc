"""The LightningModule glue every family shares: a family writes its loss and predictions.

Lightning owns the loop; this base owns what every family does inside it the same way:
optimiser and schedule from config, a finite-loss check, ``val/`` and ``test/`` metric
collections cloned from one, and the per-sample test predictions (gathered across DDP ranks,
the sampler's padded repeats dropped, ordered by item index) that the family writes out.

The test metrics are computed once, at the test's end, on those gathered predictions: under
DDP, Lightning's DistributedSampler pads the test split with repeats so every rank has as many
batches, and metrics updated per batch counted the repeated items twice (torchmetrics syncs
its states across ranks but cannot know which items are repeats; Lightning advises testing on
one device instead). Each item now counts once, as in a one-process test of the same weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import MetricCollection

from medbench.errors import ConfigError, TrainingError


class FamilyModule(pl.LightningModule):
    """Subclasses implement :meth:`loss` and :meth:`predictions`; they may override
    :meth:`metric_inputs`, :meth:`metric_target`, :meth:`test_outputs` and :meth:`per_sample`.
    Batches are dicts with ``image``, ``target`` and ``index``."""

    def __init__(self, net: nn.Module, metrics: MetricCollection,
                 optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None
                 ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        for metric in self.test_metrics.values(copy_state=False):
            # fed every rank's items once (see the module): nothing to sync at compute (the
            # constructor's `distributed_available_fn`; `sync_on_compute` is read at init)
            metric.distributed_available_fn = _computed_locally
        self.test_predictions: dict[str, torch.Tensor] = {}
        self._test_batches: list[dict[str, torch.Tensor]] = []
        # seconds in the network's forward passes during test (no loading, no metrics): the
        # model-only inference time (time/infer_ms_per_image)
        self.test_forward_seconds = 0.0
        self._test_timers: list[Any] = []

    # -- the family's part -------------------------------------------------------------------
    def loss(self, outputs: torch.Tensor, target: Any) -> torch.Tensor:
        raise NotImplementedError

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        """Per-item predictions from the network's outputs (e.g. class probabilities)."""
        raise NotImplementedError

    def metric_inputs(self, predictions: torch.Tensor) -> torch.Tensor:
        return predictions

    def metric_target(self, target: Any) -> Any:
        return target

    def test_outputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, loss) of a test batch."""
        outputs = self(batch["image"])
        return self.predictions(outputs), self.loss(outputs, batch["target"])

    def per_sample(self, batch: dict[str, Any], predictions: torch.Tensor) -> dict[str, Any]:
        """What the test outcome keeps per item (the family's writer reads these keys)."""
        return {"target": batch["target"], "prediction": predictions}

    # -- shared --------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch["image"]), batch["target"])
        if not torch.isfinite(loss):
            lr = self.optimizers().param_groups[0]["lr"]
            raise TrainingError(
                f"training loss is {loss.item()} at epoch {self.current_epoch} step "
                f"{self.global_step} (lr={lr:g}): lower runner.optimizer.lr or check the inputs"
            )
        self.log("train/loss", loss, on_step=False, on_epoch=True,
                 batch_size=len(batch["index"]))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        outputs = self(batch["image"])
        self.log("val/loss", self.loss(outputs, batch["target"]), on_epoch=True,
                 batch_size=len(batch["index"]))
        self.val_metrics.update(self.metric_inputs(self.predictions(outputs)),
                                self.metric_target(batch["target"]))

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute())
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        predictions, loss = self.test_outputs(batch)
        self.log("test/loss", loss, on_epoch=True, batch_size=len(batch["index"]))
        self._test_batches.append({"index": batch["index"],
                                   **_flat(METRIC_INPUTS, self.metric_inputs(predictions)),
                                   **_flat(METRIC_TARGET, self.metric_target(batch["target"])),
                                   **self.per_sample(batch, predictions)})

    def on_test_epoch_start(self) -> None:
        self._test_batches.clear()
        self.test_forward_seconds, started = 0.0, [0.0]

        def tic(*_: Any) -> None:
            _synchronize(self.device)
            started[0] = time.perf_counter()

        def toc(*_: Any) -> None:
            _synchronize(self.device)
            self.test_forward_seconds += time.perf_counter() - started[0]

        self._test_timers = [self.net.register_forward_pre_hook(tic),
                               self.net.register_forward_hook(toc)]

    def on_test_epoch_end(self) -> None:
        for hook in self._test_timers:
            hook.remove()
        self._test_timers = []
        kept = {key: torch.cat([b[key] for b in self._test_batches])
                for key in self._test_batches[0]}
        if self.trainer.world_size > 1:  # gather all ranks, drop the sampler's padded repeats
            kept = {key: self.all_gather(value).flatten(0, 1) for key, value in kept.items()}
            index, first = _first_occurrence(kept["index"])
            kept = {key: index if key == "index" else value[first]
                    for key, value in kept.items()}
        order = kept["index"].argsort()  # item order: ties rank as in one process
        kept = {key: value[order] for key, value in kept.items()}
        self.test_metrics.update(_unflat(METRIC_INPUTS, kept), _unflat(METRIC_TARGET, kept))
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()
        self.test_predictions = {key: value.cpu() for key, value in kept.items()
                                 if not key.startswith((METRIC_INPUTS, METRIC_TARGET))}
        self._test_batches.clear()

    def log_uncertainty_means(self) -> None:
        """``test/predictive_entropy`` and ``test/mutual_info``: the means over the test items
        of the per-item ``entropy`` and ``mutual_info`` (nats) a family kept (after
        :meth:`on_test_epoch_end` gathered them)."""
        for name, key in (("entropy", "test/predictive_entropy"),
                          ("mutual_info", "test/mutual_info")):
            if name in self.test_predictions:
                self.log(key, float(self.test_predictions[name].double().mean()))

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler,
                                                         "interval": "epoch"}}


METRIC_INPUTS, METRIC_TARGET = "_metric_inputs", "_metric_target"


def _computed_locally() -> bool:
    """A test metric's ``distributed_available_fn``: it syncs nothing across ranks."""
    return False


def _flat(name: str, value: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A metric's input (a tensor, or a dict of them) as per-item keys of a test batch."""
    if isinstance(value, dict):
        return {f"{name}.{key}": item for key, item in value.items()}
    return {name: value}


def _unflat(name: str, kept: dict[str, torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
    if name in kept:
        return kept[name]
    return {key.removeprefix(f"{name}."): value for key, value in kept.items()
            if key.startswith(f"{name}.")}


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels, so wall time is compute time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _first_occurrence(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique indices and the position of each one's first occurrence."""
    unique, inverse = torch.unique(index, return_inverse=True)
    positions = torch.arange(len(index), device=index.device)
    first = torch.full((len(unique),), len(index), device=index.device, dtype=positions.dtype)
    first.scatter_reduce_(0, inverse, positions, reduce="amin")
    return unique, first


def load_module_state(module: nn.Module, checkpoint: str | Path, what: str) -> None:
    """A family module's weights and buffers (values its validation chose: thresholds) from
    a Lightning checkpoint of that module, every tensor matched; one line otherwise."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    tensors = state.get("state_dict") if isinstance(state, dict) else None
    own = module.state_dict()
    missing = [key for key in own if not isinstance(tensors, dict) or key not in tensors]
    if missing:
        raise ConfigError(f"{what}: {checkpoint} does not hold this module's state "
                          f"({len(missing)} tensor(s) missing, e.g. '{missing[0]}'): not a "
                          "checkpoint of this family's Lightning runner")
    module.load_state_dict({key: tensors[key] for key in own})
