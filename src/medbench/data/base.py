"""Dataset and datamodule base shared by every classification data source."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from medbench.data.samplers import EpochSampler
from medbench.data.splits import cross_validation_fold
from medbench.data.transforms import build_pipeline
from medbench.errors import ConfigError, DataError

TASK_TYPES = ("binary", "multiclass", "multilabel", "ordinal")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What the task and model need to know about a dataset."""

    name: str
    task: str  # one of TASK_TYPES
    num_classes: int
    in_chans: int
    label_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.task not in TASK_TYPES:
            raise ConfigError(f"dataset '{self.name}': task '{self.task}' not in {TASK_TYPES}")


class ImageSource:
    """Random access to uint8 images as (H, W, C) arrays; subclasses read arrays or files."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> np.ndarray:
        raise NotImplementedError


class ArraySource(ImageSource):
    """Images held in one (N, H, W[, C]) uint8 array."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images if images.ndim == 4 else images[..., None]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.images[index]


class PooledSource(ImageSource):
    """Chosen images of several sources, in order: ``picks`` rows are (source, index)."""

    def __init__(self, sources: list[ImageSource], picks: np.ndarray) -> None:
        self.sources, self.picks = sources, picks

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, index: int) -> np.ndarray:
        source, item = self.picks[index]
        return self.sources[source][int(item)]


class LabelledImages(Dataset):
    """Yields ``(image, label, index)``; the index lets test predictions be written per sample."""

    def __init__(self, source: ImageSource, labels: np.ndarray, transform) -> None:
        self.source, self.labels, self.transform = source, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        image = self.transform(image=self.source[index])["image"]
        return image, torch.as_tensor(self.labels[index]), index


class ClassificationDataModule(pl.LightningDataModule):
    """Loads three labelled splits, validates them, and serves augmented loaders.

    Subclasses set ``self.info`` and implement :meth:`load_splits`.
    """

    info: DatasetInfo

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        sampler: str | None = None,
        augment: dict[str, Any] | None = None,
        normalize: dict[str, list[float]] | None = None,
        resize: int | None = None,
        seed: int = 0,
        cv: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if sampler not in (None, "weighted"):
            raise ConfigError(f"data.sampler: expected null or 'weighted', got '{sampler}'")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.sampler = sampler
        self.augment = augment or {}
        self.normalize = normalize or {"mean": [0.5], "std": [0.5]}
        self.resize = resize
        self.seed = seed
        self.cv = _checked_cv(cv or {})
        self.splits: dict[str, tuple[ImageSource, np.ndarray]] = {}

    # -- to implement ---------------------------------------------------------------------
    def load_splits(self) -> dict[str, tuple[ImageSource, np.ndarray]]:
        """Return ``{split: (images, labels)}`` for train, val and test."""
        raise NotImplementedError

    def patient_groups(self, split: str) -> np.ndarray | None:
        """Patient id of each sample of ``split``, or None when the data has none."""
        return None

    @property
    def model_in_chans(self) -> int:
        """Channels the model receives: the image's, once per view (``augment.views``)."""
        return self.info.in_chans * max(1, len(self.augment.get("views") or []))

    @property
    def image_size(self) -> int:
        """Side of the images the model receives (after any resize)."""
        if self.resize:
            return self.resize
        self.setup()
        return int(self.splits["train"][0][0].shape[0])

    # -- shared ---------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        splits = self.load_splits()
        for split in SPLITS:
            source, labels = splits[split]
            splits[split] = (source, self._validated_labels(split, labels))
            self._check_channels(split, source)
        if self.cv.get("folds"):
            splits = self._cross_validation_splits(splits)
        self.splits = splits

    def _cross_validation_splits(self, splits: dict) -> dict:
        """Train and val pooled and re-split: fold ``cv.fold`` validates, the rest trains; the
        test split stays as it is, so every fold is tested on the same images."""
        pooled = ("train", "val")
        labels = np.concatenate([splits[s][1] for s in pooled])
        groups = [self.patient_groups(s) for s in pooled]
        groups = None if any(g is None for g in groups) else np.concatenate(groups)
        held = cross_validation_fold(labels, groups, self.cv["folds"], self.cv["fold"],
                                     self.cv.get("seed", 0))
        picks = np.concatenate([np.stack([np.full(len(splits[s][1]), i),
                                          np.arange(len(splits[s][1]))], 1)
                                for i, s in enumerate(pooled)])
        sources = [splits[s][0] for s in pooled]
        return {"train": (PooledSource(sources, picks[~held]), labels[~held]),
                "val": (PooledSource(sources, picks[held]), labels[held]),
                "test": splits["test"]}

    def _validated_labels(self, split: str, labels: np.ndarray) -> np.ndarray:
        info = self.info
        labels = np.asarray(labels)
        if info.task == "multilabel":
            if labels.ndim != 2 or labels.shape[1] != info.num_classes:
                raise DataError(
                    f"{info.name} {split} labels have shape {labels.shape}, "
                    f"expected (N, {info.num_classes}) for multi-label"
                )
            if not np.isin(labels, (0, 1)).all():
                raise DataError(f"{info.name} {split} multi-label targets must be 0 or 1")
            return labels.astype(np.float32)
        labels = labels.reshape(-1)
        if labels.size and (labels.min() < 0 or labels.max() >= info.num_classes):
            raise DataError(
                f"{info.name} {split} labels span [{labels.min()}, {labels.max()}] but the "
                f"dataset declares {info.num_classes} classes (expected 0..{info.num_classes - 1})"
            )
        return labels.astype(np.int64)

    def _check_channels(self, split: str, source: ImageSource) -> None:
        if len(source) == 0:
            raise DataError(f"{self.info.name} {split} split is empty")
        chans = source[0].shape[-1]
        if chans != self.info.in_chans:
            raise DataError(
                f"{self.info.name} {split} images have {chans} channel(s), "
                f"the dataset declares {self.info.in_chans}"
            )

    def class_counts(self, split: str = "train") -> np.ndarray:
        self.setup()
        labels = self.splits[split][1]
        if self.info.task == "multilabel":
            return labels.sum(axis=0).astype(np.int64)
        return np.bincount(labels, minlength=self.info.num_classes)

    def class_weights(self) -> torch.Tensor:
        """Inverse-frequency weights normalised to mean 1 (sklearn's 'balanced')."""
        counts = self.class_counts().astype(np.float64)
        if (counts == 0).any():
            raise DataError(f"{self.info.name}: a class has no training sample: counts {counts}")
        weights = counts.sum() / (len(counts) * counts)
        return torch.tensor(weights, dtype=torch.float32)

    def summary(self) -> dict[str, Any]:
        """Fingerprint logged with each run: sizes and class balance per split."""
        self.setup()
        out: dict[str, Any] = {k: v for k, v in asdict(self.info).items() if k != "label_names"}
        for split in SPLITS:
            out[f"n_{split}"] = len(self.splits[split][1])
            out[f"class_counts_{split}"] = self.class_counts(split).tolist()
        return out

    def _dataset(self, split: str, augmented: bool) -> LabelledImages:
        self.setup()
        source, labels = self.splits[split]
        steps = self.augment.get("train" if augmented else "eval", [])
        transform = build_pipeline(steps, self.normalize, self.resize, self.augment.get("views"))
        return LabelledImages(source, labels, transform)

    def _loader_options(self, batch_size: int) -> dict[str, Any]:
        return dict(batch_size=batch_size, num_workers=self.num_workers,
                    persistent_workers=self.num_workers > 0)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Any split in order, with the evaluation pipeline (no augmentation)."""
        return DataLoader(self._dataset(split, augmented=False), shuffle=False,
                          **self._loader_options(self.eval_batch_size))

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train", augmented=True)
        options = self._loader_options(self.batch_size)
        weights = None
        if self.sampler == "weighted":
            if self.info.task == "multilabel":
                raise ConfigError("data.sampler=weighted is not defined for multi-label data")
            weights = self.class_weights()[torch.as_tensor(dataset.labels)].double()
        if self.trainer is not None and self.trainer.world_size > 1:
            # DDP: Lightning shards this sampler across ranks (DistributedSampler: seed + epoch)
            generator = torch.Generator().manual_seed(self.seed)
            if weights is None:
                return DataLoader(dataset, shuffle=True, generator=generator, **options)
            sampler = WeightedRandomSampler(weights, len(dataset), generator=generator)
            return DataLoader(dataset, sampler=sampler, **options)
        return DataLoader(dataset, sampler=EpochSampler(len(dataset), self.seed, weights),
                          **options)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")


def _checked_cv(cv: dict[str, Any]) -> dict[str, Any]:
    """``cv.folds`` (None, or at least 2) and ``cv.fold`` (0 .. folds-1) validated."""
    folds, fold = cv.get("folds"), cv.get("fold")
    if folds is None:
        return {}
    if not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"cv.folds: expected an integer >= 2 or null, got {folds!r}")
    if not isinstance(fold, int) or not 0 <= fold < folds:
        raise ConfigError(f"cv.fold: expected an integer in 0..{folds - 1}, got {fold!r}")
    return dict(cv)
