"""Patches centred on annotated points, for classifying objects where they are (survey 4.7.1:
nucleus types at their centres, Sirinukunwattana et al. 2016).

The points come from a box source (:class:`~medbench.data.boxes.BoxDataModule`, read and
checked as it reads boxes): each box's centre is a point labelled with its class. Every image
is read once, scaled by ``scale`` (PIL's bilinear resize) and held in memory; an item is the
``patch`` x ``patch`` crop centred on its point (reflected at the image's border), its label
the class index. The items keep the annotations' order; their ids are
``<image id>@<x>,<y>`` (the point in the scaled image's pixels).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from medbench.data.base import SPLITS, DatasetInfo
from medbench.data.boxes import BoxDataModule
from medbench.data.registry import register_datamodule
from medbench.data.sources import ImageSource
from medbench.data.targets import ClassLabels
from medbench.errors import ConfigError


class PointPatches(ImageSource):
    """Crops of held images: ``points`` rows are (image index, x, y) in pixels."""

    def __init__(self, images: list[np.ndarray], points: np.ndarray, patch: int,
                 ids: list[str]) -> None:
        half = patch // 2
        self.images = [np.pad(i, ((half, half), (half, half), (0, 0)), mode="reflect")
                       for i in images]
        self.points, self.patch, self.ids = points, patch, ids

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> np.ndarray:
        image, x, y = (int(v) for v in self.points[index])
        return self.images[image][y:y + self.patch, x:x + self.patch]  # padded by patch // 2

    def sample_ids(self) -> list[str]:
        return list(self.ids)


@register_datamodule("point_patches")
class PointPatchDataModule(BoxDataModule):
    """A box source's objects as (patch, class) items for the classification family: the
    options of the ``boxes`` source plus ``patch`` (the side in px, odd: a centre pixel) and
    ``scale`` (of the images before cropping)."""

    def __init__(self, patch: int, scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(patch, int) or patch < 3 or patch % 2 == 0:
            raise ConfigError(f"data.patch: expected an odd number of pixels >= 3, got "
                              f"{patch!r}")
        if not isinstance(scale, (int, float)) or not 0 < scale <= 1:
            raise ConfigError(f"data.scale: expected a number in (0, 1], got {scale!r}")
        self.patch, self.scale = patch, float(scale)
        self.info = DatasetInfo(self.info.name, "classification", len(self.classes),
                                self.in_chans, "multiclass", list(self.classes))

    @property
    def target_kind(self) -> ClassLabels:
        return ClassLabels("multiclass", len(self.classes))

    def load_splits(self) -> dict[str, tuple[PointPatches, np.ndarray]]:
        sources = super().load_splits()  # reads and checks every split's boxes (self.records)
        out = {}
        for split in SPLITS:
            files = sources[split][0]
            names = files.sample_ids()
            images, points, labels, ids = [], [], [], []
            for i, record in enumerate(self.records[split]):
                image = Image.fromarray(files[i].squeeze(-1) if self.in_chans == 1 else files[i])
                size = (round(record.width * self.scale), round(record.height * self.scale))
                scaled = np.asarray(image.resize(size, Image.Resampling.BILINEAR))
                images.append(scaled.reshape(*scaled.shape[:2], self.in_chans))
                for box, label in zip(record.boxes, record.labels, strict=True):
                    x = min(int((box[0] + box[2]) / 2 * self.scale), size[0] - 1)
                    y = min(int((box[1] + box[3]) / 2 * self.scale), size[1] - 1)
                    points.append((i, x, y))
                    labels.append(int(label))
                    ids.append(f"{names[i]}@{x},{y}")
            out[split] = (PointPatches(images, np.asarray(points, np.int64), self.patch, ids),
                          np.asarray(labels, np.int64))
        return out
