"""The segmentation family's declaration (import-light: torch is imported when building)."""

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
from medbench.tasks.segmentation import ranking

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch
    from omegaconf import DictConfig

    from medbench.data.base import DatasetInfo, SplitDataModule
    from medbench.family import PredictContext, Predicted
    from medbench.tasks.segmentation.module import SegmentationModule

_PER_IMAGE = ("dice", "iou", "sensitivity", "specificity", "acc", "precision")
# runner.loss -> (MONAI class, its arguments): softmax over the classes, integer masks
LOSSES = {
    "dice_ce": ("DiceCELoss", {"softmax": True}), "dice": ("DiceLoss", {"softmax": True}),
    "ce": ("DiceCELoss", {"softmax": True, "lambda_dice": 0.0}),
    "focal": ("FocalLoss", {"use_softmax": True}), "tversky": ("TverskyLoss", {"softmax": True}),
}


@register_family
class SegmentationFamily(Family):
    """A class per pixel. Metrics inside the field of view (``fov``): per-image means of Dice,
    IoU, sensitivity, specificity, accuracy and precision (``<m>``) and the pooled-pixel ones
    (``<m>_pooled``), the pooled pixel AUC, HD95 and ASD (test), at validation-chosen thresholds."""

    name = "segmentation"
    target_kind = "masks"
    metric_keys = (
        MetricKey("dice", True, "Dice"), MetricKey("auc", True, "AUC"),
        MetricKey("acc", True, "ACC"), MetricKey("sensitivity", True),
        MetricKey("specificity", True), MetricKey("iou", True, "IoU"),
        MetricKey("precision", True),
        *(MetricKey(f"{m}_pooled", True) for m in _PER_IMAGE),
        *(MetricKey(f"{m}_excluded", False) for m in _PER_IMAGE),
        MetricKey("hd95", False, "HD95"), MetricKey("hd95_excluded", False),
        MetricKey("asd", False, "ASD"), MetricKey("asd_excluded", False),
        MetricKey("threshold", True), MetricKey("loss", False),
        *REFERRAL_KEYS, MetricKey("selective_dice_at_90", True, "Dice at 90% coverage"),
    )
    default_monitor = "val/dice"
    runners = {**Family.runners, "observer": "medbench.tasks.segmentation.observer:score_observer"}
    tunes_on_validation = True
    leaderboard = LeaderboardSchema(
        columns=("dice", "auc", "acc", "sensitivity", "specificity"),
        per_sample_file=ranking.PER_SAMPLE_FILE, read_per_sample=ranking.PerImage.read,
        paired_test=ranking.paired_test, test_note=ranking.TEST_NOTE,
        optional_columns=("aurc",))

    def build_module(self, cfg: DictConfig, net: torch.nn.Module,
                     datamodule: SplitDataModule) -> SegmentationModule:
        import monai.losses
        from hydra.utils import instantiate

        from medbench.tasks.segmentation.module import SegmentationModule

        name = str(cfg.runner.get("loss") or "dice_ce")
        if name not in LOSSES:
            raise ConfigError(f"runner.loss: '{name}' is not one of {', '.join(LOSSES)}")
        cls, options = LOSSES[name]
        loss = getattr(monai.losses, cls)(to_onehot_y=True, **options)
        return SegmentationModule(
            net, datamodule.info.num_classes, loss, instantiate(cfg.runner.optimizer),
            instantiate(cfg.runner.scheduler), window=datamodule.spatial_shape,
            overlap=float(cfg.runner.get("window_overlap") or 0.25),
            **self.test_passes(cfg, net))

    def metric_collection(self, info: DatasetInfo):
        from medbench.metrics.segmentation import FovPixelMetrics

        return FovPixelMetrics(info.num_classes)

    def write_test_outputs(self, predictions: dict[str, Any], info: DatasetInfo,
                           folder: Path) -> list[Path]:
        from medbench.tasks.segmentation.artifacts import write_examples, write_per_image

        examples = predictions.pop("examples", [])
        return [write_per_image(predictions, folder),
                *write_examples(examples, info.label_names, folder)]

    def referral(self, predictions: dict[str, Any]) -> Referral | None:
        """Images referred by their mean pixel entropy in the FOV (the least sure first),
        scored by their Dice (NaN, empty reference and prediction: left out)."""
        if "entropy" not in predictions:
            return None  # the second observer: no probabilities
        import numpy as np

        return Referral(-np.asarray(predictions["entropy"]), predictions["dice"], "dice",
                        "-mean pixel entropy")

    def predictor(self, context: PredictContext) -> Callable[[dict[str, Any]], Predicted]:
        """Masks of new images predicted whole by sliding windows, at the checkpoint's
        validation thresholds (``predict_masks``)."""
        from medbench.tasks.segmentation.predict_masks import mask_predictor

        return mask_predictor(self, context)
