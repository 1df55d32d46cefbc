"""Classification as a LightningModule: binary, multi-class, multi-label and ordinal labels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import nn
from torch.nn import functional as F
from torchmetrics import MetricCollection

from medbench.errors import ConfigError
from medbench.metrics.calibration import fit_temperature
from medbench.metrics.uncertainty import predictive_summary
from medbench.tasks.classification.uncertainty import stochastic_logits
from medbench.tasks.module import FamilyModule


class ClassificationModule(FamilyModule):
    """Trains ``net``; logs ``<split>/<metric>`` per epoch; keeps test probabilities per item.

    Binary problems use two logits and cross-entropy (MedMNIST convention); multi-label uses
    BCE-with-logits; ordinal labels train as multi-class and report quadratic-weighted kappa.
    ``calibration="temperature"``: before testing, T is fitted on the validation split's logits
    of the tested weights (:func:`fit_temperature`) and the test uses ``logits / T``.
    ``uncertainty`` (``mc_dropout`` or ``tta``): each test batch is the mean of several passes,
    with per item its predictive entropy and mutual information.
    """

    def __init__(
        self,
        net: nn.Module,
        label_type: str,
        num_classes: int,
        metrics: MetricCollection,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        class_weights: torch.Tensor | None = None,
        label_names: list[str] | None = None,
        channels_last: bool = True,
        positive_class: int = 1,
        calibration: str | None = None,
        uncertainty: str | None = None,
        uncertainty_passes: int = 20,
    ) -> None:
        super().__init__(net, metrics, optimizer, scheduler)
        self.save_hyperparameters(
            ignore=["net", "metrics", "optimizer", "scheduler", "class_weights"], logger=False)
        self.label_type, self.num_classes = label_type, num_classes
        self.positive_class = positive_class  # binary: the class sensitivity etc. count as positive
        # channels-last: ResNet-18 (28), batch 128, 2 CPU threads trained at 38 vs 30 img/s here
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last and any(p.dim() == 5 for p in self.net.parameters()):
            # 3D and fused 2D+3D nets hold 5D kernels, which Module.to refuses as channels-last:
            # their 4D tensors alone are converted
            for tensor in (*self.net.parameters(), *self.net.buffers()):
                if tensor.dim() == 4:
                    tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
        else:  # 2D nets exactly as before (Module.to; the same metrics as earlier runs)
            self.net.to(memory_format=self.memory_format)
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.calibration = calibration
        self.temperature = 1.0  # fitted in on_test_start (not stored in checkpoints)
        self._calibration_log: dict[str, float] = {}
        # runner.uncertainty: several stochastic passes per test batch (tasks/.../uncertainty)
        self.uncertainty, self.uncertainty_passes = uncertainty, uncertainty_passes
        self._summary: dict[str, torch.Tensor] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 4:
            images = images.contiguous(memory_format=self.memory_format)
        return self.net(images)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.label_type == "multilabel":
            return F.binary_cross_entropy_with_logits(
                logits, labels.float(), pos_weight=self.class_weights)
        return F.cross_entropy(logits, labels, weight=self.class_weights)

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return logits.sigmoid() if self.label_type == "multilabel" else logits.softmax(dim=1)

    def metric_inputs(self, probs: torch.Tensor) -> torch.Tensor:
        return probs[:, self.positive_class] if self.label_type == "binary" else probs

    def metric_target(self, labels: torch.Tensor) -> torch.Tensor:
        if self.label_type == "binary":
            return (labels == self.positive_class).long()
        return labels.long()

    def on_test_start(self) -> None:
        """Temperature scaling: T from the validation logits of the weights under test."""
        self.temperature, self._calibration_log = 1.0, {}
        if self.calibration != "temperature":
            return
        datamodule = self.trainer.datamodule
        if datamodule is None:
            raise ConfigError("runner.calibration: 'temperature' needs the data's validation "
                              "split (test with a datamodule, or use null)")
        logits, labels = [], []
        with torch.no_grad(), self.trainer.precision_plugin.forward_context():
            for batch in datamodule.val_dataloader():
                images = move_data_to_device(batch["image"], self.device)
                logits.append(self(images).float().cpu())
                labels.append(batch["target"])
        fit = fit_temperature(torch.cat(logits), torch.cat(labels),
                              multilabel=self.label_type == "multilabel")
        self.temperature = fit.temperature
        self._calibration_log = {"calibration/temperature": fit.temperature,
                                 "calibration/val_nll_before": fit.nll_before,
                                 "calibration/val_nll_after": fit.nll_after}

    def on_test_epoch_end(self) -> None:
        if self._calibration_log:
            self.log_dict(self._calibration_log)
        super().on_test_epoch_end()

    def test_outputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch["image"], batch["target"]
        if self.uncertainty is not None:
            return self._uncertain_outputs(images, labels)
        if not hasattr(self.net, "mc_predict"):
            logits = self(images) / self.temperature
            return self.predictions(logits), self.loss(logits, labels)
        # Bayesian CNN: the mean of Monte-Carlo dropout passes, and their variance
        probs, variance = self.net.mc_predict(images.contiguous(memory_format=self.memory_format))
        self.log("test/mc_variance", variance.sum(1).mean(), on_epoch=True,
                 batch_size=len(labels))
        return probs, F.nll_loss(probs.clamp_min(1e-12).log(), labels)

    def _uncertain_outputs(self, images: torch.Tensor,
                           labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The predictive mean of the passes; its entropy and mutual information per item are
        kept for the per-sample file and logged as test means."""
        if self.uncertainty == "ensemble":  # the members' probabilities are the passes
            passes = self.net.member_probabilities(
                images.contiguous(memory_format=self.memory_format))
        else:
            logits = stochastic_logits(self, self.net, images, self.uncertainty,
                                       self.uncertainty_passes) / self.temperature
            passes = torch.stack([self.predictions(x) for x in logits])
        self._summary = predictive_summary(passes, multilabel=self.label_type == "multilabel")
        for key in ("entropy", "mutual_info"):
            self.log(f"test/{'predictive_' * (key == 'entropy')}{key}", self._summary[key].mean(),
                     on_epoch=True, batch_size=len(labels))
        probs = self._summary["probs"]
        if self.label_type == "multilabel":
            loss = F.binary_cross_entropy(probs.clamp(1e-7, 1 - 1e-7), labels.float())
        else:
            loss = F.nll_loss(probs.clamp_min(1e-12).log(), labels)
        return probs, loss

    def per_sample(self, batch: dict[str, Any], probs: torch.Tensor) -> dict[str, torch.Tensor]:
        kept = {key: self._summary[key] for key in ("entropy", "mutual_info") if self._summary}
        return {"label": batch["target"], "probs": probs, **kept}
