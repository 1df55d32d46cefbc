"""Reading the files of image/mask pairs: 2D images through Pillow (tif, png, gif palette
indices as stored), 3D volumes through nibabel (``.nii``, ``.nii.gz``, with their spacing)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from medbench.errors import DataError

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_volume(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def read_pixels(path: Path, what: str,
                mode: str | None = None) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """A file's pixels and, for a volume, its voxel spacing. 2D images are converted to
    ``mode`` ('L', 'RGB') or kept as stored (palette indices); volumes are kept as stored."""
    if is_volume(path):
        from medbench.data.volumes import read_volume  # the one NIfTI reader

        try:
            return read_volume(path)
        except DataError as err:
            raise DataError(f"cannot read {what} {path}: {str(err).split(': ', 1)[-1]}") from None
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode) if mode else image), None
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataError(f"cannot read {what} {path}: {' '.join(str(err).split())}") from None


def describe(shape: tuple[int, ...]) -> str:
    """A spatial shape as users read it: 2D as width x height, 3D as its axes."""
    if len(shape) == 2:
        return f"{shape[1]}x{shape[0]} (width x height)"
    return "x".join(map(str, shape)) + " (voxels)"


def natural(path: Path) -> list[Any]:
    """Sort key: digits as numbers, so case_9 comes before case_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]
