"""Where images come from (arrays, files, pools of splits) and the dataset of dict items."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from medbench.data.targets import TargetKind


class ImageSource:
    """Random access to images as (*spatial, C) arrays; subclasses read arrays or files."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def sample_ids(self) -> list[str]:
        """A stable id per image, written beside each per-sample prediction: its file path
        for files (relative to the data's root), its index for arrays."""
        return [str(i) for i in range(len(self))]


def file_ids(paths: list[Path], root: Path | None) -> list[str]:
    """Sample ids of files: paths relative to ``root`` where they lie under it."""
    base = root.resolve() if root is not None else None
    return [str(Path(p).resolve().relative_to(base)) if base is not None
            and Path(p).resolve().is_relative_to(base) else str(p) for p in paths]


class ArraySource(ImageSource):
    """Images held in one (N, *spatial[, C]) array (``spatial_dims``: 2 for (N, H, W[, C]),
    3 for volumes (N, D, H, W[, C]))."""

    def __init__(self, images: np.ndarray, spatial_dims: int = 2) -> None:
        self.images = images if images.ndim == spatial_dims + 2 else images[..., None]

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

    def sample_ids(self) -> list[str]:
        ids = [source.sample_ids() for source in self.sources]
        return [ids[source][int(item)] for source, item in self.picks]


class ItemDataset(Dataset):
    """Items as dicts: the image and its target through one augmentation draw, and the index.

    A key ``epoch * len + index`` (from :class:`EpochSampler`; a plain index elsewhere) seeds
    the item's augmentation from (seed, epoch, index): albumentations draws from generators of
    its own, unseeded by default, so without this an augmented run differs at every repeat.
    """

    def __init__(self, source: ImageSource, targets: Any, kind: TargetKind, transform,
                 seed: int = 0) -> None:
        self.source, self.targets, self.kind, self.transform = source, targets, kind, transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, key: int) -> dict[str, Any]:
        epoch, index = divmod(int(key), len(self.targets))
        state = np.random.SeedSequence([self.seed, epoch, index])
        self.transform.set_random_state(np.random.default_rng(state),
                                        random.Random(int(state.generate_state(1)[0])))
        target = self.targets[index]
        output = self.transform(image=self.source[index], **self.kind.augment_inputs(target))
        return {"image": output["image"], "target": self.kind.augmented(target, output),
                "index": index}
