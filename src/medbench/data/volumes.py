"""NIfTI volumes with class labels: a CSV manifest ``path,label[,patient_id][,split]`` of
``.nii`` / ``.nii.gz`` files (nibabel), served as (C, D, H, W) items (``spatial_dims=3``).

:func:`read_volume` is the one NIfTI reader (also for other 3D sources, such as volumes with
label maps): voxels as stored, axes (i, j, k[, c]) of the file, and the voxel spacing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medbench.data import volume_transforms  # noqa: F401  (registers the 3D pipeline)
from medbench.data.files import CSVManifestDataModule
from medbench.data.registry import register_datamodule
from medbench.data.sources import ImageSource, file_ids
from medbench.errors import DataError

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _load(path: Path):
    import nibabel as nib

    if not path.is_file():
        raise DataError(f"volume file not found: {path}")
    try:
        return nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, OSError, ValueError, EOFError) as err:
        raise DataError(f"cannot read volume {path}: {' '.join(str(err).split())}") from None


def read_volume(path: str | Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """A NIfTI file's voxels (as stored: (i, j, k) or (i, j, k, c)) and the spacing of its
    three spatial axes (the header's zooms, usually mm). One-line ``DataError`` otherwise."""
    path = Path(path)
    image = _load(path)
    try:
        array = np.asanyarray(image.dataobj)
    except (OSError, ValueError, EOFError) as err:  # truncated or corrupt data block
        raise DataError(f"cannot read volume {path}: {' '.join(str(err).split())}") from None
    spacing = tuple(float(z) for z in image.header.get_zooms()[:3])
    return array, spacing


def volume_shape(path: str | Path) -> tuple[int, ...]:
    """The shape a NIfTI header declares (the voxels are not read)."""
    return tuple(int(side) for side in _load(Path(path)).shape)


def _checked(path: Path, shape: tuple[int, ...], in_chans: int) -> tuple[int, ...]:
    """(D, H, W) of a volume of ``shape``, or a one-line error naming the file."""
    if len(shape) not in (3, 4):
        raise DataError(f"volume {path} has shape {shape}: expected 3 spatial axes "
                        "(i, j, k), or (i, j, k, channels)")
    chans = shape[3] if len(shape) == 4 else 1
    if chans != in_chans:
        raise DataError(f"volume {path} has {chans} channel(s) (shape {shape}), "
                        f"data.in_chans={in_chans}")
    return shape[:3]


class VolumeSource(ImageSource):
    """NIfTI volumes read on access as (D, H, W, C) arrays (the file's axis order)."""

    def __init__(self, paths: list[Path], in_chans: int = 1, root: Path | None = None) -> None:
        self.paths, self.in_chans, self.root = paths, in_chans, root

    def sample_ids(self) -> list[str]:
        return file_ids(self.paths, self.root)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        path = self.paths[index]
        array, _ = read_volume(path)
        _checked(path, array.shape, self.in_chans)
        return array if array.ndim == 4 else array[..., None]


@register_datamodule("nifti_manifest")
class NiftiManifestDataModule(CSVManifestDataModule):
    """NIfTI volumes listed in a CSV with columns ``path,label[,patient_id][,split]`` (paths
    relative to ``root``, default the manifest's folder). Splits, label types and patient
    grouping as for 2D manifests; all volumes share one shape unless ``data.resize`` is set.
    Voxels are scaled by their dtype's largest value (uint8: 255, uint16: 65535, others: 1)
    before ``data.normalize``: set its mean and std for CT or MR intensities."""

    spatial_dims = 3

    def read_records(self) -> list[dict[str, str]]:
        rows = super().read_records()
        for row in rows:
            if not (row.get("label") or "").strip():
                raise DataError(f"{row['where']}: no label for {row['path']} "
                                "(expected a class name in the label column)")
            if not row["path"].endswith(NIFTI_SUFFIXES):
                raise DataError(f"{row['where']}: {row['path']} is not a NIfTI file "
                                f"(expected {' or '.join(NIFTI_SUFFIXES)})")
        return rows

    def file_source(self, paths: list[Path]) -> VolumeSource:
        return VolumeSource(paths, self.in_chans, self.root)

    def check_shapes(self, paths: np.ndarray) -> None:
        """Every header has 3 spatial axes, ``in_chans`` channels and the first one's shape."""
        first = None
        for path in paths:
            shape = _checked(path, volume_shape(path), self.in_chans)
            if first is None:
                first = (path, shape)
            elif shape != first[1]:
                raise DataError(f"volumes differ in shape ({first[0]} is "
                                f"{'x'.join(map(str, first[1]))}, {path} is "
                                f"{'x'.join(map(str, shape))}): set data.resize=[D, H, W]")
