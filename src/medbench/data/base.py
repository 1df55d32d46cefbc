"""The datamodule base shared by every data source, whatever its family.

A source yields three splits of (images, targets); its target kind (``data/targets.py``)
validates, stratifies, counts, augments and collates the targets. Items are dicts
(``data/sources.py``): ``image``, ``target``, ``index`` (the per-sample key of test
predictions), plus any extras a source adds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from medbench.data.samplers import EpochSampler
from medbench.data.sources import ImageSource, ItemDataset, PooledSource
from medbench.data.splits import check_fold_classes, checked_cv, cross_validation_fold
from medbench.data.targets import ClassLabels, TargetKind
from medbench.data.transforms import array_pipeline, build_pipeline
from medbench.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
# the largest value of an image's dtype: what Normalize divides by (uint8: 255)
MAX_PIXEL_VALUE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


@dataclass(frozen=True)
class DatasetInfo:
    """What a family and its model need to know about a dataset."""

    name: str
    family: str  # the task family its targets serve: classification, segmentation, ...
    num_classes: int
    in_chans: int
    label_type: str | None = None  # class targets: binary, multiclass, multilabel, ordinal
    label_names: list[str] = field(default_factory=list)
    spatial_dims: int = 2  # 1: signals, 2: images, 3: volumes
    # the leaderboard ranks this dataset's rows by test/<rank_metric> (None: the family's
    # primary), e.g. a class-balanced metric where accuracy rewards the majority class
    rank_metric: str | None = None
    # optional metric groups the family adds for this data (classification: per_class, jkappa)
    extra_metrics: tuple[str, ...] = ()
    # binary labels: the index of the class sensitivity, precision and F1 take as positive
    positive_class: int | None = None


def positive_index(info: DatasetInfo, wanted: str | int | None) -> int:
    """``data.positive_class`` (a label name or index; default 1, MedMNIST's convention) as an
    index of ``info``'s binary labels."""
    if info.label_type != "binary":
        raise ConfigError(f"data.positive_class: {info.name} has {info.label_type} labels; a "
                          f"positive class applies to binary labels only")
    names = list(info.label_names) or ["0", "1"]
    if wanted is None:
        return 1
    if str(wanted) in names:
        return names.index(str(wanted))
    if str(wanted) in ("0", "1"):
        return int(wanted)
    raise ConfigError(f"data.positive_class: '{wanted}' is neither a label of {info.name} "
                      f"({', '.join(repr(n) for n in names)}) nor an index 0 or 1")


class SplitDataModule(pl.LightningDataModule):
    """Loads three splits, validates them, and serves augmented loaders of dict items.

    Subclasses set ``self.info`` and implement :meth:`load_splits` (and :attr:`target_kind`
    when their targets are not class labels).
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
        resize: int | list[int] | None = None,
        seed: int = 0,
        cv: dict[str, Any] | None = None,
        positive_class: str | int | None = None,
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
        self.cv = checked_cv(cv or {})
        self.positive_class = positive_class
        self.splits: dict[str, tuple[ImageSource, Any]] = {}

    # -- to implement ---------------------------------------------------------------------
    def load_splits(self) -> dict[str, tuple[ImageSource, Any]]:
        """Return ``{split: (images, targets)}`` for train, val and test."""
        raise NotImplementedError

    def patient_groups(self, split: str) -> np.ndarray | None:
        """Patient id of each sample of ``split``, or None when the data has none."""
        return None

    @property
    def target_kind(self) -> TargetKind:
        """How this source's targets are handled (default: class labels of ``info``)."""
        return ClassLabels(self.info.label_type, self.info.num_classes)

    # -- shapes ---------------------------------------------------------------------------
    @property
    def model_in_chans(self) -> int:
        """Channels the model receives: the image's, once per view (``augment.views``)."""
        return self.info.in_chans * max(1, len(self.augment.get("views") or []))

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Spatial shape of the inputs the model receives (after any resize)."""
        if isinstance(self.resize, (list, tuple)):
            return tuple(int(side) for side in self.resize)
        if self.resize:
            return (int(self.resize),) * self.info.spatial_dims
        self.setup()
        return tuple(int(s) for s in self.splits["train"][0][0].shape[:-1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, *spatial) of one model input."""
        return (self.model_in_chans, *self.spatial_shape)

    @property
    def image_size(self) -> int:
        """The smallest spatial side of the inputs (models' minimum-size check)."""
        return min(self.spatial_shape)

    # -- shared ---------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        splits = self.load_splits()
        kind = self.target_kind
        for split in SPLITS:
            source, targets = splits[split]
            splits[split] = (source, kind.validate(targets, f"{self.info.name} {split}"))
            self._check_channels(split, source)
        if self.cv.get("folds"):
            splits = self._cross_validation_splits(splits)
        self.splits = splits
        if self.info.label_type == "binary" or self.positive_class is not None:
            self.info = replace(self.info, positive_class=positive_index(self.info,
                                                                         self.positive_class))

    def _cross_validation_splits(self, splits: dict) -> dict:
        """Train and val pooled and re-split: fold ``cv.fold`` validates, the rest trains; the
        test split stays as it is, so every fold is tested on the same images."""
        pooled = ("train", "val")
        targets = np.concatenate([splits[s][1] for s in pooled])
        strata = self.target_kind.strata(targets)
        if strata is None:
            strata = np.zeros(len(targets), dtype=np.int64)
        groups = [self.patient_groups(s) for s in pooled]
        groups = None if any(g is None for g in groups) else np.concatenate(groups)
        held = cross_validation_fold(strata, groups, self.cv["folds"], self.cv["fold"],
                                     self.cv.get("seed", 0))
        if isinstance(self.target_kind, ClassLabels):
            names = list(self.info.label_names) or [str(i) for i in range(self.info.num_classes)]
            check_fold_classes(targets, held, groups, names, self.info.label_type == "multilabel",
                               self.info.name, self.cv["folds"], self.cv["fold"])
        picks = np.concatenate([np.stack([np.full(len(splits[s][1]), i),
                                          np.arange(len(splits[s][1]))], 1)
                                for i, s in enumerate(pooled)])
        sources = [splits[s][0] for s in pooled]
        return {"train": (PooledSource(sources, picks[~held]), targets[~held]),
                "val": (PooledSource(sources, picks[held]), targets[held]),
                "test": splits["test"]}

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
        counts = self.target_kind.counts(self.splits[split][1])
        if counts is None:
            raise ConfigError(f"{self.info.name}: its {self.target_kind.name} targets have no "
                              "class counts (class weighting and weighted sampling need them)")
        return counts

    def class_weights(self) -> torch.Tensor:
        """Inverse-frequency weights normalised to mean 1 (sklearn's 'balanced')."""
        counts = self.class_counts().astype(np.float64)
        if (counts == 0).any():
            raise DataError(f"{self.info.name}: a class has no training sample: counts {counts}")
        weights = counts.sum() / (len(counts) * counts)
        return torch.tensor(weights, dtype=torch.float32)

    def summary(self) -> dict[str, Any]:
        """Fingerprint logged with each run: the description, sizes and targets per split."""
        self.setup()
        out: dict[str, Any] = {k: v for k, v in asdict(self.info).items()
                               if k != "label_names" and v is not None}
        if self.info.positive_class is not None:  # its name too: the summary prints it
            out["positive_label"] = (list(self.info.label_names)
                                     or ["0", "1"])[self.info.positive_class]
        out["shape"] = list(self.input_shape)
        for split in SPLITS:
            targets = self.splits[split][1]
            out[f"n_{split}"] = len(targets)
            for key, value in self.target_kind.summary(targets).items():
                out[f"{key}_{split}"] = value
        source, targets = self.splits["test"]  # folds and seeds share it: the row's test set
        out["fingerprint_test"] = self.target_kind.fingerprint(source.sample_ids(), targets)
        return out

    def max_pixel_value(self) -> float:
        """What Normalize divides by: the image dtype's largest value (float images: 1)."""
        self.setup()
        return MAX_PIXEL_VALUE.get(np.asarray(self.splits["train"][0][0]).dtype, 1.0)

    def _dataset(self, split: str, augmented: bool) -> ItemDataset:
        self.setup()
        source, targets = self.splits[split]
        return ItemDataset(source, targets, self.target_kind, self.build_transform(augmented),
                           self.seed)

    def build_transform(self, augmented: bool, targets: bool = True):
        """The item pipeline of the ``augment`` steps (train or eval; ``targets=False``: images
        alone, no masks or boxes): albumentations for 2D images; other spatial dims get the one
        registered for them (``transforms.register_pipeline``; 3D: MONAI), else
        :class:`ArrayPipeline` (normalise and tensor, no augmentation steps)."""
        steps = self.augment.get("train" if augmented else "eval", [])
        if self.info.spatial_dims != 2:  # albumentations transforms 2D images only
            pipeline = array_pipeline(self.info.spatial_dims)  # 3D: MONAI (volume_transforms)
            return pipeline(steps, self.normalize, self.resize, self.augment.get("views"),
                            self.max_pixel_value(), f"{self.info.spatial_dims}D data")
        return build_pipeline(steps, self.normalize, self.resize, self.augment.get("views"),
                              compose_options=self.target_kind.compose_options() if targets
                              else None, max_pixel_value=self.max_pixel_value())

    def read_image(self, path: Path) -> np.ndarray:
        """An image file outside the splits (``medbench predict``) as (H, W, C), read as this
        source reads its own files (:class:`~medbench.data.files.FileSource`: 1 or 3
        channels, 8- or 16-bit); a file of another channel count is one line naming it."""
        from medbench.data.files import FileSource, check_stored_channels

        check_stored_channels(path, self.info.in_chans)
        return FileSource([path], self.info.in_chans)[0]

    def _loader_options(self, batch_size: int) -> dict[str, Any]:
        return dict(batch_size=batch_size, num_workers=self.num_workers,
                    persistent_workers=self.num_workers > 0,
                    collate_fn=self.target_kind.collate)

    def eval_dataloader(self, split: str) -> DataLoader:
        """Any split in order, with the evaluation pipeline (no augmentation)."""
        return DataLoader(self._dataset(split, augmented=False), shuffle=False,
                          **self._loader_options(self.eval_batch_size))

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train", augmented=True)
        options = self._loader_options(self.batch_size)
        weights = None
        if self.sampler == "weighted":
            if self.info.label_type == "multilabel":
                raise ConfigError("data.sampler=weighted is not defined for multi-label data")
            weights = self.class_weights()[torch.as_tensor(dataset.targets)].double()
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
