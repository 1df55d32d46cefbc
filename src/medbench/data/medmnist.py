"""MedMNIST (v2 / MedMNIST+) datasets, any flag and size, read from a local data root (2D here;
the 3D flags in ``medmnist3d.py``)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from medbench.data.base import DatasetInfo, SplitDataModule
from medbench.data.label_checks import checked_label_array
from medbench.data.registry import register_datamodule
from medbench.data.sources import ArraySource
from medbench.errors import ConfigError, DataError

SIZES = (28, 64, 128, 224)
_LABEL_TYPES = {  # MedMNIST's task names -> label types
    "binary-class": "binary",
    "multi-class": "multiclass",
    "multi-label, binary-class": "multilabel",
    "ordinal-regression": "ordinal",
}


def default_data_root() -> Path:
    """``$MEDBENCH_DATA_DIR``, else ``~/.medbench/data``."""
    return Path(os.environ.get("MEDBENCH_DATA_DIR") or Path.home() / ".medbench" / "data")


def flags_2d() -> list[str]:
    from medmnist import INFO

    return sorted(flag for flag in INFO if not flag.endswith("3d"))


def flags_3d() -> list[str]:
    from medmnist import INFO

    return sorted(flag for flag in INFO if flag.endswith("3d"))


def medmnist_info(flag: str, spatial_dims: int = 2) -> dict:
    from medmnist import INFO

    known = flags_2d() if spatial_dims == 2 else flags_3d()
    if flag not in known:
        import difflib

        close = difflib.get_close_matches(flag, known, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        if flag in INFO:  # a flag of the other kind: name the source that reads it
            source = "medmnist3d" if spatial_dims == 2 else "medmnist"
            hint = f": it is a {5 - spatial_dims}D dataset, read by data.source={source}"
        raise ConfigError(f"unknown MedMNIST {spatial_dims}D dataset '{flag}'{hint} "
                          f"(known: {known})")
    return INFO[flag]


def npz_name(flag: str, size: int) -> str:
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


@register_datamodule("medmnist")
class MedMNISTDataModule(SplitDataModule):
    """Official MedMNIST splits from ``<root>/medmnist/<flag>[_<size>].npz`` or ``<root>/...``.

    The file is looked up in ``<root>/medmnist/`` then ``<root>/``; when missing it is
    downloaded with the ``medmnist`` package unless ``download`` is false or
    ``MEDBENCH_OFFLINE=1``. Subclasses set ``spatial_dims`` and ``sizes`` (3D volumes).
    """

    spatial_dims: ClassVar[int] = 2
    sizes: ClassVar[tuple[int, ...]] = SIZES

    def __init__(self, flag: str, size: int = 28, root: str | None = None,
                 download: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        if size not in self.sizes:
            raise ConfigError(f"data.size: expected one of {self.sizes}, got {size}")
        meta = medmnist_info(flag, self.spatial_dims)
        self.flag, self.size, self.download = flag, size, download
        self.root = Path(root) if root else default_data_root()
        self.info = DatasetInfo(
            name=flag,
            family="classification",
            label_type=_LABEL_TYPES[meta["task"]],
            num_classes=len(meta["label"]),
            in_chans=int(meta["n_channels"]),
            label_names=[meta["label"][k] for k in sorted(meta["label"], key=int)],
            spatial_dims=self.spatial_dims,
        )

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return super().spatial_shape if self.resize else (self.size,) * self.spatial_dims

    def npz_path(self) -> Path:
        name = npz_name(self.flag, self.size)
        for folder in (self.root / "medmnist", self.root):
            if (folder / name).is_file():
                return folder / name
        offline = os.environ.get("MEDBENCH_OFFLINE", "") not in ("", "0")
        if self.download and not offline:
            return self._download()
        raise DataError(
            f"{name} not found in {self.root / 'medmnist'} or {self.root}: set MEDBENCH_DATA_DIR "
            f"to the folder holding it, or allow data.download=true online (medmnist package)"
        )

    def _download(self) -> Path:
        import medmnist

        folder = self.root / "medmnist"
        folder.mkdir(parents=True, exist_ok=True)
        cls = getattr(medmnist, medmnist_info(self.flag, self.spatial_dims)["python_class"])
        try:
            cls(split="train", download=True, size=self.size, root=str(folder))
        except Exception as err:
            raise DataError(
                f"{npz_name(self.flag, self.size)} not found in {folder} and the download failed "
                f"({type(err).__name__}); fetch it with the medmnist package on a connected machine"
            ) from None
        return folder / npz_name(self.flag, self.size)

    def load_splits(self):
        path = self.npz_path()
        try:
            with np.load(path) as archive:
                arrays = {k: archive[k] for k in archive.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
            raise DataError(f"{path} is not a readable .npz archive ({err})") from None
        splits, dims = {}, self.spatial_dims
        side = ", ".join([str(self.size)] * dims)
        for split in ("train", "val", "test"):
            keys = (f"{split}_images", f"{split}_labels")
            missing = [k for k in keys if k not in arrays]
            if missing:
                raise DataError(f"{path} lacks key(s) {missing}: not a MedMNIST file")
            images, labels = arrays[keys[0]], arrays[keys[1]]
            if images.dtype != np.uint8 or images.shape[1:1 + dims] != (self.size,) * dims:
                raise DataError(
                    f"{path} {keys[0]} has shape {images.shape} dtype {images.dtype}, expected "
                    f"uint8 (N, {side}[, C])"
                )
            if len(images) != len(labels):
                raise DataError(f"{path}: {len(images)} {split} images but {len(labels)} labels")
            labels = checked_label_array(labels, self.info.label_type, self.info.num_classes,
                                         f"{path} {split}")
            splits[split] = (ArraySource(images, dims), labels)
        return splits
