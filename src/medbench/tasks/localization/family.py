"""The localization family's declaration (import-light: torch is imported when building)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from medbench.errors import ConfigError
from medbench.family import (
    REFERRAL_KEYS,
    Family,
    LeaderboardSchema,
    MetricKey,
    Referral,
    register_family,
)
from medbench.tasks.localization import ranking

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig
    from torchmetrics import MetricCollection

    from medbench.data.base import DatasetInfo, SplitDataModule
    from medbench.tasks.localization.module import LocalizationModule


@register_family
class LocalizationFamily(Family):
    """One object per image: its class (0: no object) and its box as centre x, centre y,
    width, height normalised to the image (survey eq. 3). Mean IoU (the primary), accuracy at
    IoU >= 0.5 with the right class, centre error in px of the original image, class
    sensitivity / specificity (one-vs-rest per object class) and class accuracy
    (:mod:`medbench.metrics.localization`). The network outputs 4 box logits then a logit per
    class: any registered classifier sized by :meth:`num_outputs` fits."""

    name = "localization"
    target_kind = "one_box"
    metric_keys = (
        MetricKey("iou", True, "IoU"), MetricKey("acc50", True, "ACC@IoU0.5"),
        MetricKey("centre_error", False, "centre error (px)"),
        MetricKey("sensitivity", True), MetricKey("specificity", True),
        MetricKey("class_acc", True, "class ACC"), MetricKey("loss", False),
        *REFERRAL_KEYS, MetricKey("selective_acc50_at_90", True, "ACC@IoU0.5 at 90% coverage"),
    )
    default_monitor = "val/iou"
    leaderboard = LeaderboardSchema(
        columns=("iou", "acc50", "centre_error", "sensitivity", "specificity"),
        per_sample_file=ranking.PER_SAMPLE_FILE, read_per_sample=ranking.PerImage.read,
        paired_test=ranking.paired_test, test_note=ranking.TEST_NOTE,
        optional_columns=("aurc",))

    def num_outputs(self, info: DatasetInfo) -> int:
        """Four box values (centre x, centre y, width, height) and one logit per class."""
        return 4 + info.num_classes

    def build_module(self, cfg: DictConfig, net: torch.nn.Module,
                     datamodule: SplitDataModule) -> LocalizationModule:
        from hydra.utils import instantiate

        from medbench.tasks.localization.module import LocalizationModule

        weights = {k: float(cfg.runner.get(k, default)) for k, default in
                   (("box_weight", 5.0), ("giou_weight", 1.0))}
        for key, value in weights.items():
            if value < 0:
                raise ConfigError(f"runner.{key}: expected a weight >= 0, got {value:g}")
        info = datamodule.info
        return LocalizationModule(net, self.metric_collection(info), info.label_names,
                                  instantiate(cfg.runner.optimizer),
                                  instantiate(cfg.runner.scheduler), **weights,
                                  **self.test_passes(cfg, net))

    def metric_collection(self, info: DatasetInfo) -> MetricCollection:
        from medbench.metrics.localization import localization_metrics

        return localization_metrics(info.num_classes)

    def write_test_outputs(self, predictions: dict[str, Any], info: DatasetInfo,
                           folder: Path) -> list[Path]:
        from medbench.tasks.localization.artifacts import write_examples, write_per_image

        examples = predictions.pop("examples", [])
        return [write_per_image(predictions, folder),
                *write_examples(examples, list(info.label_names), folder)]

    def referral(self, predictions: dict[str, Any]) -> Referral | None:
        """Images referred by the predicted class's probability (the least sure first),
        scored by ``hit50`` (right class and IoU >= 0.5; NaN without a true object: left
        out)."""
        return Referral(predictions["score"], predictions["hit50"], "acc50",
                        "predicted class probability")
