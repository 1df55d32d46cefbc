"""Training samplers whose order depends only on (seed, epoch)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """A random permutation (or, given ``weights``, a weighted draw with replacement) seeded by
    ``seed + epoch``. Lightning calls :meth:`set_epoch` before each epoch, so a run resumed at
    epoch k draws the same order as an uninterrupted one; a sampler owning one generator for
    the whole run would start over from its seed.

    It yields draw keys ``epoch * num_samples + index``: :class:`~medbench.data.base.ItemDataset`
    reads the index and seeds the item's augmentation from (seed, epoch, index), so augmented
    runs repeat exactly too, whatever the number of loader workers.
    """

    def __init__(self, num_samples: int, seed: int, weights: torch.Tensor | None = None) -> None:
        self.num_samples, self.seed, self.weights = num_samples, seed, weights
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.multinomial(self.weights, self.num_samples, replacement=True,
                                      generator=generator)
        return iter((order + self.epoch * self.num_samples).tolist())

    def __len__(self) -> int:
        return self.num_samples
