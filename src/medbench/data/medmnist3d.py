"""MedMNIST v2 / MedMNIST+ 3D datasets: all six 3D flags at 28^3 and 64^3.

The official ``<flag>[_64].npz`` files hold (N, S, S, S) uint8 volumes; items are (1, S, S, S)
float tensors (``DatasetInfo.spatial_dims=3``), so the 3D pipeline of
``data/volume_transforms.py`` (MONAI) augments them.
"""

from __future__ import annotations

from typing import ClassVar

from medbench.data import volume_transforms  # noqa: F401  (registers the 3D pipeline)
from medbench.data.medmnist import MedMNISTDataModule
from medbench.data.registry import register_datamodule

SIZES_3D = (28, 64)


@register_datamodule("medmnist3d")
class MedMNIST3DDataModule(MedMNISTDataModule):
    """Official splits of a MedMNIST 3D flag (organ, nodule, adrenal, fracture, vessel,
    synapse) from ``<root>/medmnist/<flag>[_64].npz``; as the 2D source otherwise."""

    spatial_dims: ClassVar[int] = 3
    sizes: ClassVar[tuple[int, ...]] = SIZES_3D
