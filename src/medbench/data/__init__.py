"""Data sources (each module registers its datamodule) and medbench's own augment steps
(``windows``: each registers its steps): import them here, once."""

from medbench.data import (  # noqa: F401
    boxes,
    ecg,
    ecg_binary,
    files,
    image_masks,
    localization,
    medmnist,
    medmnist3d,
    point_patches,
    volumes,
    windows,
)
from medbench.data.base import DatasetInfo, SplitDataModule
from medbench.data.registry import DATAMODULES, register_datamodule

__all__ = ["DATAMODULES", "DatasetInfo", "SplitDataModule", "register_datamodule"]
