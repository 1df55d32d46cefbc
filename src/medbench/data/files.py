"""User data: a CSV manifest (path,label[,patient_id][,split]) or an image-folder tree."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from medbench.data.base import SPLITS, DatasetInfo, SplitDataModule
from medbench.data.registry import register_datamodule
from medbench.data.sources import ImageSource
from medbench.data.splits import assign_splits
from medbench.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


class FileSource(ImageSource):
    """Images read from files on access, converted to 1 (L) or 3 (RGB) channels."""

    def __init__(self, paths: list[Path], in_chans: int) -> None:
        self.paths, self.mode = paths, "L" if in_chans == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert(self.mode))
        except (OSError, UnidentifiedImageError) as err:
            raise DataError(f"cannot read image {path}: {err}") from None
        return array[..., None] if array.ndim == 2 else array


class FileListDataModule(SplitDataModule):
    """Shared logic for file-based sources: label encoding and split assignment. Subclasses
    reading other files (NIfTI volumes) override :meth:`file_source` and :meth:`check_shapes`
    and set ``spatial_dims``."""

    spatial_dims: ClassVar[int] = 2

    def __init__(self, name: str, label_type: str = "auto", in_chans: int = 1,
                 val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        # the split's own seed, not the training seed: every seed of a method, and every
        # method, is tested on the same images (the leaderboard's paired tests need that)
        self.split_seed = split_seed
        self._patients: dict[str, np.ndarray] = {}
        self.name, self.in_chans = name, in_chans
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.records = self.read_records()
        self.class_names = sorted({c for r in self.records for c in r["label"].split("|")},
                                  key=_natural)
        if label_type == "auto":
            label_type = "binary" if len(self.class_names) == 2 else "multiclass"
        self.info = DatasetInfo(name, "classification", len(self.class_names), in_chans,
                                label_type, self.class_names, spatial_dims=self.spatial_dims)

    def read_records(self) -> list[dict[str, str]]:
        """Rows with keys path, label and optionally patient_id, split."""
        raise NotImplementedError

    def patient_groups(self, split: str) -> np.ndarray | None:
        return self._patients.get(split)

    def file_source(self, paths: list[Path]) -> ImageSource:
        """The images of one split, read on access."""
        return FileSource(paths, self.in_chans)

    def check_shapes(self, paths: np.ndarray) -> None:
        """Batches need one size (checked when ``data.resize`` is unset): headers only."""
        _check_same_size(paths)

    def _encode(self, label: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.class_names)}
        if self.info.label_type == "multilabel":
            row = np.zeros(len(self.class_names), dtype=np.int64)
            row[[index[c] for c in label.split("|")]] = 1
            return row
        return np.int64(index[label])

    def load_splits(self):
        labels = np.stack([self._encode(r["label"]) for r in self.records])
        patients = [r.get("patient_id") or None for r in self.records]
        groups = np.array(patients, dtype=object) if all(patients) else None
        if all(r.get("split") for r in self.records):
            split_of = np.array([r["split"] for r in self.records], dtype=object)
            bad = sorted(set(split_of) - {"train", "val", "test"})
            if bad:
                raise DataError(f"{self.name}: split values {bad} not in train/val/test")
        else:
            split_of = assign_splits(labels, groups, self.val_fraction, self.test_fraction,
                                     self.split_seed)
        paths = np.array([Path(r["path"]) for r in self.records], dtype=object)
        if not self.resize:
            self.check_shapes(paths)
        if groups is not None:
            self._patients = {split: groups[split_of == split] for split in SPLITS}
        return {
            split: (self.file_source(list(paths[split_of == split])), labels[split_of == split])
            for split in ("train", "val", "test")
        }


def _check_same_size(paths: np.ndarray) -> None:
    """Batches need one image size: reads only the headers, and names two files that differ."""
    first = None
    for path in paths:
        try:
            with Image.open(path) as image:
                size = image.size
        except (OSError, UnidentifiedImageError) as err:
            raise DataError(f"cannot read image {path}: {err}") from None
        if first is None:
            first = (path, size)
        elif size != first[1]:
            raise DataError(
                f"images differ in size ({first[0]} is {first[1][0]}x{first[1][1]}, {path} is "
                f"{size[0]}x{size[1]}): set data.resize=<side> to resize them"
            )


def _natural(name: str):
    return (0, int(name)) if name.isdigit() else (1, name)


def _inside(root: Path, relative: str, where: str) -> Path:
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DataError(f"{where}: path '{relative}' escapes the data root {root}")
    if not path.is_file():
        raise DataError(f"{where}: image file not found: {path}")
    return path


@register_datamodule("csv_manifest")
class CSVManifestDataModule(FileListDataModule):
    """Images listed in a CSV with columns ``path,label[,patient_id][,split]``.

    Paths are relative to ``root`` (default: the manifest's folder) and may not leave it.
    Multi-label rows list their classes separated by ``|``.
    """

    def __init__(self, manifest: str, root: str | None = None, **kwargs) -> None:
        self.manifest = Path(manifest)
        self.root = Path(root) if root else self.manifest.parent
        super().__init__(name=kwargs.pop("name", self.manifest.stem), **kwargs)

    def read_records(self) -> list[dict[str, str]]:
        if not self.manifest.is_file():
            raise DataError(f"data.manifest: file not found: {self.manifest}")
        with self.manifest.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"path", "label"} - set(reader.fieldnames or [])
            if missing:
                raise DataError(
                    f"{self.manifest}: missing column(s) {sorted(missing)}; expected "
                    f"path,label[,patient_id][,split]"
                )
            rows = list(reader)
        if not rows:
            raise DataError(f"{self.manifest}: no rows")
        for line, row in enumerate(rows, start=2):
            row["path"] = str(_inside(self.root, row["path"], f"{self.manifest}:{line}"))
        return rows


@register_datamodule("image_folder")
class ImageFolderDataModule(FileListDataModule):
    """``root/<class>/*.png``, or ``root/{train,val,test}/<class>/*.png`` with fixed splits."""

    def __init__(self, root: str, **kwargs) -> None:
        self.root = Path(root)
        super().__init__(name=kwargs.pop("name", self.root.name), **kwargs)

    def read_records(self) -> list[dict[str, str]]:
        if not self.root.is_dir():
            raise DataError(f"data.root: folder not found: {self.root}")
        fixed = all((self.root / s).is_dir() for s in ("train", "val", "test"))
        tops = [(self.root / s, s) for s in ("train", "val", "test")] if fixed else [
            (self.root, "")]
        rows = [
            {"path": str(f), "label": class_dir.name, "split": split}
            for top, split in tops
            for class_dir in sorted(p for p in top.iterdir() if p.is_dir())
            for f in sorted(class_dir.iterdir())
            if f.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not rows:
            raise DataError(f"{self.root}: no {sorted(IMAGE_SUFFIXES)} images in class subfolders")
        return rows

