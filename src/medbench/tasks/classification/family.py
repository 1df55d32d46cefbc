"""The classification family's declaration (import-light: torch is imported when building)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medbench.errors import ConfigError
from medbench.family import Family, LeaderboardSchema, MetricKey, register_family
from medbench.tasks.classification import ranking

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig
    from torchmetrics import MetricCollection

    from medbench.data.base import DatasetInfo, SplitDataModule
    from medbench.tasks.classification.module import ClassificationModule

TEMPERATURE = "calibration/temperature"  # logged by the module's test (runner.calibration)

@register_family
class ClassificationFamily(Family):
    """Class labels per image; MedMNIST v2's metrics (AUC: macro one-vs-rest, ACC: argmax)."""

    name = "classification"
    target_kind = "class_labels"
    metric_keys = (
        MetricKey("auc", True, "AUC"), MetricKey("acc", True, "ACC"),
        MetricKey("sensitivity", True), MetricKey("specificity", True),
        MetricKey("precision", True), MetricKey("f1", True, "F1"),
        MetricKey("kappa", True, "Cohen's kappa"), MetricKey("loss", False),
        MetricKey("jkappa", True, "jκ index"), MetricKey("fpr", False, "FPR"),
        MetricKey("mc_variance", False, "MC-dropout variance"),
        # calibration (15 equal-width bins, top-label) and selective prediction
        MetricKey("ece", False, "ECE"), MetricKey("brier", False, "Brier"),
        MetricKey("aurc", False, "AURC"),
        MetricKey("selective_acc_at_90", True, "ACC at 90% coverage"),
        # runner.uncertainty: means over the test items (nats)
        MetricKey("predictive_entropy", False, "predictive entropy"),
        MetricKey("mutual_info", False, "mutual information"),
    )
    default_monitor = "val/auc"
    leaderboard = LeaderboardSchema(
        columns=("auc", "acc"), per_sample_file=ranking.PER_SAMPLE_FILE,
        read_per_sample=ranking.Predictions.read, paired_test=ranking.paired_test,
        test_note=ranking.TEST_NOTE, rank_choices=("f1", "kappa", "jkappa", "sensitivity"),
        optional_columns=("ece", "brier"))  # calibration: runs before it have none
    runners = {**Family.runners,
               "deep_features": "medbench.tasks.classification.deep_features:fit_deep_features",
               "semi_supervised":
                   "medbench.tasks.classification.semi_supervised:fit_semi_supervised"}

    def build_module(self, cfg: DictConfig, net: torch.nn.Module,
                     datamodule: SplitDataModule) -> ClassificationModule:
        from hydra.utils import instantiate

        from medbench.tasks.classification.module import ClassificationModule
        from medbench.tasks.classification.uncertainty import check_uncertainty

        weighting = cfg.runner.class_weighting
        if weighting not in (None, "balanced"):
            raise ConfigError(
                f"runner.class_weighting: expected null or 'balanced', got '{weighting}'")
        calibration = cfg.runner.get("calibration")
        if calibration == "temperature" and hasattr(net, "mc_predict"):
            raise ConfigError("runner.calibration: 'temperature' needs logits; this model "
                              "averages Monte-Carlo dropout probabilities (use null)")
        info = datamodule.info
        uncertainty = cfg.runner.get("uncertainty")
        check_uncertainty(uncertainty, net, info.spatial_dims, str(cfg.model.name))
        if uncertainty == "ensemble" and calibration == "temperature":
            raise ConfigError("runner.calibration: 'temperature' scales one network's logits; "
                              "runner.uncertainty=ensemble averages its members' "
                              "probabilities (use one of them)")
        return ClassificationModule(
            net=net, label_type=info.label_type, num_classes=info.num_classes,
            metrics=self.metric_collection(info),
            optimizer=instantiate(cfg.runner.optimizer),
            scheduler=instantiate(cfg.runner.scheduler),
            class_weights=datamodule.class_weights() if weighting == "balanced" else None,
            label_names=info.label_names, channels_last=cfg.runner.channels_last,
            positive_class=info.positive_class if info.label_type == "binary" else 1,
            calibration=calibration, uncertainty=uncertainty,
            uncertainty_passes=int(cfg.runner.get("uncertainty_passes", 20)),
        )

    def metric_collection(self, info: DatasetInfo) -> MetricCollection:
        from medbench.metrics.aami import extra_metrics
        from medbench.metrics.classification import scalar_metrics

        collection = scalar_metrics(info.label_type, info.num_classes)
        extras = extra_metrics(tuple(info.extra_metrics), info.label_type, info.num_classes,
                               list(info.label_names))
        if extras is not None:  # per-dataset groups (DatasetInfo.extra_metrics)
            collection.add_metrics(dict(extras.items()))
        return collection

    def write_test_outputs(self, predictions: dict[str, Any], info: DatasetInfo,
                           folder: Path) -> list[Path]:
        from medbench.tasks.classification.artifacts import write_test_outputs

        return write_test_outputs(predictions, info.label_type, info.label_names, folder,
                                  positive_class=info.positive_class or 1)

    def served_network(self, net: torch.nn.Module, logged: Mapping[str, float]
                       ) -> torch.nn.Module:
        """A run tested with ``runner.calibration=temperature`` divides its logits by the T
        its test fitted on validation (logged as ``calibration/temperature``)."""
        temperature = logged.get(TEMPERATURE)
        if temperature is None or temperature == 1.0:
            return net
        from medbench.metrics.calibration import TemperatureScaled

        return TemperatureScaled(net, temperature)

    def prediction_columns(self, outputs: torch.Tensor, info: DatasetInfo) -> dict[str, list]:
        """``predicted`` (the class name; multi-label: the labels at probability >= 0.5,
        joined by ';') and ``prob_<class>`` per class (softmax; sigmoid for multi-label)."""
        names = list(info.label_names) or [str(i) for i in range(info.num_classes)]
        if info.label_type == "multilabel":
            probs = outputs.float().sigmoid()
            predicted = [";".join(n for n, p in zip(names, row, strict=True) if p >= 0.5)
                         for row in probs.tolist()]
        else:
            probs = outputs.float().softmax(1)
            predicted = [names[i] for i in probs.argmax(1).tolist()]
        return {"predicted": predicted,
                **{f"prob_{name}": probs[:, i].tolist() for i, name in enumerate(names)}}
