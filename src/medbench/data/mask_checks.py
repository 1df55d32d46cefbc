"""Masks at the data boundary, in one place (as ``label_checks`` for class labels): an image
of the expected axes and channels, a single-channel label mask (or field of view, or second
reader's mask) of its image's size, and stored values the config maps to classes. Each
failure is one :class:`DataError` line naming the file and what was expected."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from medbench.data.mask_files import describe
from medbench.errors import DataError


def check_image(image: np.ndarray, path: Path, dims: int, in_chans: int) -> None:
    """``image``: ``dims`` spatial axes and ``in_chans`` channels last."""
    if image.ndim != dims + 1 or image.shape[-1] != in_chans:
        raise DataError(f"image {path} has shape {image.shape}: expected {dims} spatial axes "
                        f"and {in_chans} channel(s) (data.spatial_dims, data.in_chans)")


def check_single_channel(mask: np.ndarray, path: Path, dims: int) -> None:
    if mask.ndim != dims:
        raise DataError(f"mask {path} has shape {mask.shape}, expected a single-channel label "
                        f"{'image' if dims == 2 else 'volume'}")


def check_same_size(path: Path, shape: tuple[int, ...], image: Path,
                    image_shape: tuple[int, ...]) -> None:
    """A mask, field of view or observer's mask of its image's spatial size."""
    if tuple(shape) != tuple(image_shape):
        raise DataError(f"{path} is {describe(shape)} but its image {image} is "
                        f"{describe(image_shape)}: expected the same size")


def mask_classes(raw: np.ndarray, path: Path, num_classes: int,
                 values: Mapping[int, int] | None) -> np.ndarray:
    """Stored mask values as class indices (int64), every value checked: with ``values``
    (``data.mask_values``) those it maps, else the class indices themselves."""
    found = np.unique(raw)
    allowed = list(range(num_classes)) if values is None else sorted(values)
    if not np.isin(found, allowed).all():
        raise DataError(f"mask {path} has values {found.tolist()}; allowed: {allowed} "
                        f"(data.mask_values)")
    if values is None:
        return raw.astype(np.int64)
    classes = np.array([values[k] for k in allowed], dtype=np.int64)
    return classes[np.searchsorted(np.array(allowed), raw)]
