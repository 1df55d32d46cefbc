"""Target kinds and dict items: masks and boxes go through the image's own random draw, boxes
collate as one dict per item, and an item's augmentation repeats from (seed, epoch, index)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from medbench.data.samplers import EpochSampler
from medbench.data.sources import ArraySource, ItemDataset
from medbench.data.targets import Boxes, ClassLabels, Masks
from medbench.data.transforms import build_pipeline
from medbench.errors import DataError

NORMALIZE = {"mean": [0.0], "std": [1.0]}
FLIP_AND_CROP = [{"name": "HorizontalFlip", "p": 0.5}, {"name": "RandomCrop", "height": 24,
                                                       "width": 24}]


def _images(n: int = 6, size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (n, size, size, 1), dtype=np.uint8)


def test_a_mask_follows_the_image_through_one_draw():
    images = _images()
    masks = images[..., 0] > 127  # the mask is the image thresholded: it must stay so
    kind = Masks(2)
    dataset = ItemDataset(ArraySource(images), list(masks.astype(np.uint8)), kind,
                          build_pipeline(FLIP_AND_CROP, NORMALIZE, max_pixel_value=255.0))
    flipped = 0
    for key in range(3 * len(images)):  # three epochs of draws
        item = dataset[key]
        image, mask = item["image"][0], item["target"]
        assert image.shape == mask.shape == (24, 24) and mask.dtype == torch.long
        assert torch.equal(mask, (image * 255 > 127.5).long())
        index = item["index"]
        flipped += not torch.equal(mask, torch.as_tensor(masks[index][:24, :24]).long())
    assert flipped > 0  # the draw did transform both


def test_boxes_follow_a_flip_and_collate_as_a_list():
    images = _images(2, 32)
    targets = [{"boxes": np.array([[2, 4, 10, 12]], dtype=np.float32), "labels": np.array([1])},
               {"boxes": np.array([[0, 0, 8, 8], [16, 16, 30, 31]], dtype=np.float32),
                "labels": np.array([0, 2])}]
    kind = Boxes(3)
    pipeline = build_pipeline([{"name": "HorizontalFlip", "p": 1.0}], NORMALIZE,
                              compose_options=kind.compose_options())
    dataset = ItemDataset(ArraySource(images), targets, kind, pipeline)
    first = dataset[0]
    assert first["target"]["boxes"].tolist() == [[22.0, 4.0, 30.0, 12.0]]  # x mirrored on 32
    assert torch.allclose(first["image"][0], torch.as_tensor(images[0][:, ::-1, 0] / 255.0).float())
    batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=kind.collate)))
    assert batch["image"].shape == (2, 1, 32, 32) and batch["index"].tolist() == [0, 1]
    assert [len(t["boxes"]) for t in batch["target"]] == [1, 2]
    assert batch["target"][1]["labels"].tolist() == [0, 2]


def test_augmentation_repeats_from_seed_epoch_and_index():
    images = _images()
    labels = ClassLabels("binary", 2).validate(np.arange(6) % 2, "test")
    steps = [{"name": "Rotate", "limit": 40, "p": 1.0}, {"name": "HorizontalFlip", "p": 0.5}]

    def epoch_images(seed: int, epoch: int, workers: int) -> list[torch.Tensor]:
        dataset = ItemDataset(ArraySource(images), labels, ClassLabels("binary", 2),
                              build_pipeline(steps, NORMALIZE), seed=seed)
        sampler = EpochSampler(len(dataset), seed)
        sampler.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=workers)
        items = [(i, x) for b in loader for i, x in zip(b["index"], b["image"], strict=True)]
        return [x for _, x in sorted(items, key=lambda p: int(p[0]))]

    first = epoch_images(0, 1, 0)
    assert all(torch.equal(a, b) for a, b in zip(first, epoch_images(0, 1, 2), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, epoch_images(0, 2, 0), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, epoch_images(1, 1, 0), strict=True))


def test_class_labels_are_checked_with_the_dataset_named():
    kind = ClassLabels("multiclass", 3)
    with pytest.raises(DataError, match=r"mine train labels span \[0, 3\].*expected 0..2"):
        kind.validate(np.array([0, 1, 3]), "mine train")
    multi = ClassLabels("multilabel", 2)
    assert multi.counts(multi.validate(np.array([[1, 0], [1, 1]]), "x")).tolist() == [2, 1]
    assert multi.strata(np.array([[0, 1], [1, 0]])).tolist() == [1, 0]
