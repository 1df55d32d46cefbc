"""The detection family's declaration (import-light: torch is imported when building)."""

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
from medbench.tasks.detection import ranking

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch
    from omegaconf import DictConfig

    from medbench.data.base import DatasetInfo, SplitDataModule
    from medbench.family import PredictContext, Predicted
    from medbench.tasks.detection.module import DetectionModule

BACKENDS = ("faster_coco_eval", "pycocotools")
FPPI = (1, 2, 4, 8)  # false positives per image of the FROC points (metrics.detection.FPPI)


@register_family
class DetectionFamily(Family):
    """Boxes per image (torchvision detectors). COCO mAP@[.5:.95], mAP@0.5 (the primary),
    mAP@0.75, AR@100 and per-class AP@0.5 (``ap50_<class>``, logged for each of the data's
    classes); precision, recall and F1 at IoU 0.5 at the score threshold chosen on validation
    (highest F1); FROC sensitivity at 1, 2, 4, 8 false positives per image and their mean."""

    name = "detection"
    target_kind = "boxes"
    metric_keys = (
        MetricKey("map50", True, "mAP@0.5"), MetricKey("map", True, "mAP@[.5:.95]"),
        MetricKey("map75", True, "mAP@0.75"), MetricKey("mar100", True, "AR@100"),
        MetricKey("precision", True), MetricKey("recall", True), MetricKey("f1", True, "F1"),
        MetricKey("froc", True, "FROC (mean sensitivity at 1-8 FP/image)"),
        *(MetricKey(f"froc_{rate}", True, f"sensitivity at {rate} FP/image") for rate in FPPI),
        MetricKey("threshold", True), MetricKey("loss", False),
        *REFERRAL_KEYS, MetricKey("selective_f1_at_90", True, "F1 at 90% coverage"),
    )
    default_monitor = "val/map50"
    # rcnn: the original R-CNN's stages (selective search, CNN, SVMs, box regression, NMS)
    # patch_heatmap: the survey's patch classifiers as heatmaps, peaks as detections (Table 13)
    runners = {**Family.runners, "rcnn": "medbench.tasks.detection.rcnn:fit_rcnn",
               "patch_heatmap": "medbench.tasks.detection.patch_heatmap:fit_patch_heatmap"}
    tunes_on_validation = True
    leaderboard = LeaderboardSchema(
        columns=("map50", "map", "f1", "froc"), per_sample_file=ranking.PER_SAMPLE_FILE,
        read_per_sample=ranking.PerImage.read, paired_test=ranking.paired_test,
        test_note=ranking.TEST_NOTE, optional_columns=("aurc",))

    def num_outputs(self, info: DatasetInfo) -> int:
        """The data's classes and the background (index 0, torchvision's convention)."""
        return info.num_classes + 1

    def build_module(self, cfg: DictConfig, net: torch.nn.Module,
                     datamodule: SplitDataModule) -> DetectionModule:
        from hydra.utils import instantiate

        from medbench.tasks.detection.module import DetectionModule

        backend = str(cfg.runner.get("map_backend") or "faster_coco_eval")
        if backend not in BACKENDS:
            raise ConfigError(f"runner.map_backend: '{backend}' is not one of "
                              f"{', '.join(BACKENDS)}")
        iou = float(cfg.runner.get("match_iou") or 0.5)
        if not 0 < iou < 1:
            raise ConfigError(f"runner.match_iou: expected a value in (0, 1), got {iou}")
        return DetectionModule(net, datamodule.info.label_names,
                               instantiate(cfg.runner.optimizer),
                               instantiate(cfg.runner.scheduler), iou=iou, backend=backend,
                               **self.test_passes(cfg, net))

    def metric_collection(self, info: DatasetInfo):
        """Scored by :class:`medbench.metrics.detection.DetectionScores` (lists of boxes, not a
        torchmetrics collection of tensors); an empty collection for the shared base."""
        from torchmetrics import MetricCollection

        return MetricCollection({})

    def write_test_outputs(self, predictions: dict[str, Any], info: DatasetInfo,
                           folder: Path) -> list[Path]:
        from medbench.tasks.detection.artifacts import write_examples, write_per_image

        examples = predictions.pop("examples", [])
        names = predictions.pop("label_names", info.label_names)
        return [write_per_image(predictions, folder), *write_examples(examples, names, folder)]

    def predictor(self, context: PredictContext) -> Callable[[dict[str, Any]], Predicted]:
        """Boxes of new images at the checkpoint's validation score threshold, in the
        files' pixels (``predict_boxes``)."""
        from medbench.tasks.detection.predict_boxes import box_predictor

        return box_predictor(self, context)

    def referral(self, predictions: dict[str, Any]) -> Referral | None:
        """Images referred by their detections' mean score entropy (the least sure first),
        scored by their F1 at IoU 0.5 and the validation threshold (NaN, no true and no kept
        box: left out)."""
        import numpy as np

        return Referral(-np.asarray(predictions["entropy"]), predictions["f1"], "f1",
                        "-mean box-score entropy")
