"""A fifth task family that lives only in the tests: counting bright blobs in an image.

It is a plugin (``MEDBENCH_PLUGINS=medbench_counting``): this one file registers the family,
its target kind and a synthetic data source, and adds ``conf/`` (``data=synthetic_counts``) to
the config search path. No module of medbench imports or names it; it proves the seam.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from medbench.data.base import DatasetInfo, SplitDataModule
from medbench.data.registry import register_datamodule
from medbench.data.sources import ArraySource
from medbench.data.targets import TargetKind
from medbench.errors import DataError
from medbench.family import Family, LeaderboardSchema, MetricKey, register_family
from medbench.leaderboard.stats import paired_bootstrap
from medbench.plugins import add_config_dir
from medbench.tasks.module import FamilyModule

add_config_dir(Path(__file__).parent / "conf")


class Counts(TargetKind):
    """A non-negative count per image."""

    name = "counts"

    def validate(self, targets, where: str) -> np.ndarray:
        counts = np.asarray(targets, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(counts)) or (counts < 0).any():
            raise DataError(f"{where} counts must be finite and >= 0")
        return counts

    def strata(self, targets: np.ndarray) -> np.ndarray:
        return np.round(targets).astype(np.int64)

    def summary(self, targets: np.ndarray) -> dict:
        return {"mean_count": round(float(targets.mean()), 3)}

    def augmented(self, target, output) -> torch.Tensor:
        return torch.as_tensor(target, dtype=torch.float32)


@register_datamodule("synthetic_counts")
class SyntheticCounts(SplitDataModule):
    """Dark images with 0 to ``max_count`` bright Gaussian blobs; the target is their number."""

    def __init__(self, size: int = 32, max_count: int = 4, n_train: int = 200, n_val: int = 60,
                 n_test: int = 80, data_seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.size, self.max_count, self.data_seed = size, max_count, data_seed
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.info = DatasetInfo("synthetic_counts", "counting", 1, 1)

    @property
    def target_kind(self) -> TargetKind:
        return Counts()

    def load_splits(self):
        rng = np.random.default_rng(self.data_seed)
        grid = np.mgrid[:self.size, :self.size]
        splits = {}
        for split, n in self.sizes.items():
            counts = rng.integers(0, self.max_count + 1, n)
            images = rng.normal(20, 5, (n, self.size, self.size))
            for image, count in zip(images, counts, strict=True):
                for y, x in rng.uniform(4, self.size - 4, (count, 2)):
                    image += 200 * np.exp(-((grid[0] - y) ** 2 + (grid[1] - x) ** 2) / 4.0)
            splits[split] = (ArraySource(images.clip(0, 255).astype(np.uint8)), counts)
        return splits


class CountingModule(FamilyModule):
    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs[:, 0].float(), target)

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs[:, 0].float()


@dataclass(frozen=True)
class CountsPerImage:
    targets: np.ndarray
    predictions: np.ndarray

    @classmethod
    def read(cls, path: Path) -> CountsPerImage:
        table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        table = table[np.argsort(table[:, 0], kind="stable")]
        return cls(table[:, 1], table[:, 2])


def mae(targets: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(np.abs(predictions - targets)))


def rmse(targets: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predictions - targets) ** 2)))


def paired_test(metric: str, a: list[CountsPerImage], b: list[CountsPerImage]) -> float:
    if not np.array_equal(a[0].targets, b[0].targets):
        return float("nan")
    score = {"mae": mae, "rmse": rmse}[metric]
    return paired_bootstrap(a[0].targets, [r.predictions for r in a],
                            [r.predictions for r in b], score, n_resamples=300)[1]


@register_family
class CountingFamily(Family):
    name = "counting"
    target_kind = "counts"
    metric_keys = (MetricKey("mae", False, "MAE"), MetricKey("rmse", False, "RMSE"),
                   MetricKey("loss", False))
    default_monitor = "val/mae"
    leaderboard = LeaderboardSchema(
        columns=("mae", "rmse"), per_sample_file="counts_test.csv",
        read_per_sample=CountsPerImage.read, paired_test=paired_test,
        test_note="a paired bootstrap of the mean over runs, 300 resamples of the test images")

    def num_outputs(self, info: DatasetInfo) -> int:
        return 1

    def build_module(self, cfg, net, datamodule) -> CountingModule:
        from hydra.utils import instantiate

        return CountingModule(net, self.metric_collection(datamodule.info),
                              instantiate(cfg.runner.optimizer), instantiate(cfg.runner.scheduler))

    def metric_collection(self, info: DatasetInfo) -> MetricCollection:
        return MetricCollection({"mae": MeanAbsoluteError(),
                                 "rmse": MeanSquaredError(squared=False)})

    def write_test_outputs(self, predictions, info, folder: Path) -> list[Path]:
        path = folder / self.leaderboard.per_sample_file
        rows = torch.stack([predictions["index"].double(), predictions["target"].double(),
                            predictions["prediction"].double()], 1).numpy()
        np.savetxt(path, rows, delimiter=",", header="index,target,prediction", comments="",
                   fmt=["%d", "%.6g", "%.6g"])
        return [path]
