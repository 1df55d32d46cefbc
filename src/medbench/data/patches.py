"""Training patches of whole images and their masks: random and foreground-weighted centres,
each drawn from (seed, epoch, item) so a run repeats exactly."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from medbench.data.sources import ImageSource
from medbench.data.targets import TargetKind


class ListSource(ImageSource):
    """Images held in a list of (H, W, C) arrays (sizes may differ between items)."""

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.images[index]


def crop(array: np.ndarray, top: int, left: int, size: Sequence[int]) -> np.ndarray:
    """The ``size`` window at (top, left) of ``array``, zero where it leaves the array."""
    height, width = size
    out = np.zeros((height, width, *array.shape[2:]), dtype=array.dtype)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, array.shape[0]), min(left + width, array.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = array[y0:y1, x0:x1]
    return out


class PatchDataset(Dataset):
    """Training patches: ``patches_per_image`` per image, item ``i * patches_per_image + p``.

    A key ``epoch * len + item`` (as :class:`ItemDataset`) draws the patch centre from
    (seed, epoch, item, 1): with probability ``foreground_fraction`` a foreground pixel inside
    the field of view, else any pixel inside it; the augmentation is seeded as ItemDataset's.
    """

    def __init__(self, source: ImageSource, targets: Any, kind: TargetKind, transform: Any,
                 patch_size: Sequence[int], patches_per_image: int,
                 foreground_fraction: float, seed: int = 0) -> None:
        self.source, self.targets, self.kind, self.transform = source, targets, kind, transform
        self.patch_size, self.per_image = tuple(patch_size), patches_per_image
        self.foreground_fraction, self.seed = foreground_fraction, seed
        self.inside = [np.flatnonzero(t["fov"] > 0) for t in targets]
        self.foreground = [np.flatnonzero((t["fov"] > 0) & (t["mask"] > 0)) for t in targets]

    def __len__(self) -> int:
        return len(self.targets) * self.per_image

    def centre(self, key: int) -> tuple[int, int]:
        """(row, column) of the patch centre of draw ``key`` in its image."""
        epoch, item = divmod(int(key), len(self))
        image = item // self.per_image
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, item, 1]))
        pool = self.inside[image]
        if rng.random() < self.foreground_fraction and len(self.foreground[image]):
            pool = self.foreground[image]
        shape = self.targets[image]["mask"].shape
        flat = pool[rng.integers(len(pool))] if len(pool) else rng.integers(shape[0] * shape[1])
        return divmod(int(flat), shape[1])

    def __getitem__(self, key: int) -> dict[str, Any]:
        epoch, item = divmod(int(key), len(self))
        image = item // self.per_image
        row, column = self.centre(key)
        top, left = row - self.patch_size[0] // 2, column - self.patch_size[1] // 2
        full = self.targets[image]
        target = {k: crop(full[k], top, left, self.patch_size) for k in ("mask", "fov")}
        patch = crop(self.source[image], top, left, self.patch_size)
        state = np.random.SeedSequence([self.seed, epoch, item])
        self.transform.set_random_state(np.random.default_rng(state),
                                        random.Random(int(state.generate_state(1)[0])))
        output = self.transform(image=patch, **self.kind.augment_inputs(target))
        return {"image": output["image"], "target": self.kind.augmented(target, output),
                "index": image}
