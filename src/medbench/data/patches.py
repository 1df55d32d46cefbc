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
    """Images held in a list of (*spatial, C) arrays (sizes may differ between items)."""

    def __init__(self, images: list[np.ndarray], ids: list[str] | None = None) -> None:
        self.images, self.ids = images, ids

    def sample_ids(self) -> list[str]:
        return self.ids if self.ids is not None else super().sample_ids()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.images[index]


def crop(array: np.ndarray, corner: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """The ``size`` window at ``corner`` (its first index on each spatial axis) of ``array``,
    zero where it leaves the array; axes after the spatial ones are kept whole."""
    out = np.zeros((*size, *array.shape[len(size):]), dtype=array.dtype)
    source, target = [], []
    for start, side, length in zip(corner, size, array.shape, strict=False):
        lo, hi = max(start, 0), min(start + side, length)
        if hi <= lo:
            return out
        source.append(slice(lo, hi))
        target.append(slice(lo - start, hi - start))
    out[tuple(target)] = array[tuple(source)]
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

    def centre(self, key: int) -> tuple[int, ...]:
        """The patch centre of draw ``key`` in its image: (row, column), or (slice, row,
        column) in a volume."""
        epoch, item = divmod(int(key), len(self))
        image = item // self.per_image
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch, item, 1]))
        pool = self.inside[image]
        if rng.random() < self.foreground_fraction and len(self.foreground[image]):
            pool = self.foreground[image]
        shape = self.targets[image]["mask"].shape
        flat = pool[rng.integers(len(pool))] if len(pool) else rng.integers(np.prod(shape))
        return tuple(int(i) for i in np.unravel_index(int(flat), shape))

    def __getitem__(self, key: int) -> dict[str, Any]:
        epoch, item = divmod(int(key), len(self))
        image = item // self.per_image
        corner = [c - side // 2 for c, side in zip(self.centre(key), self.patch_size,
                                                    strict=True)]
        full = self.targets[image]
        target = {k: crop(full[k], corner, self.patch_size) for k in ("mask", "fov")}
        if "spacing" in full:
            target["spacing"] = full["spacing"]
        patch = crop(self.source[image], corner, self.patch_size)
        state = np.random.SeedSequence([self.seed, epoch, item])
        self.transform.set_random_state(np.random.default_rng(state),
                                        random.Random(int(state.generate_state(1)[0])))
        output = self.transform(image=patch, **self.kind.augment_inputs(target))
        return {"image": output["image"], "target": self.kind.augmented(target, output),
                "index": image}
