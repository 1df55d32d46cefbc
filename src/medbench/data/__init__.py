"""Data sources: each module registers its datamodule; import them here, once."""

from medbench.data import files, image_masks, medmnist  # noqa: F401
from medbench.data.base import DatasetInfo, SplitDataModule
from medbench.data.registry import DATAMODULES, register_datamodule

__all__ = ["DATAMODULES", "DatasetInfo", "SplitDataModule", "register_datamodule"]
