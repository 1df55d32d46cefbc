"""User data: a CSV manifest (path,label[,patient_id][,split]) or an image-folder tree."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from medbench.data import label_checks as checks
from medbench.data.base import SPLITS, DatasetInfo, SplitDataModule
from medbench.data.duplicates import check_no_copies, checked_mode
from medbench.data.manifest_csv import read_manifest
from medbench.data.registry import register_datamodule
from medbench.data.sources import ImageSource, file_ids
from medbench.data.splits import assign_splits
from medbench.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
# 16-bit greyscale as Pillow opens it (PNG: I;16; some TIFFs: I): kept 16-bit, never saturated
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class FileSource(ImageSource):
    """Images read from files on access, converted to 1 (L) or 3 (RGB) channels: uint8, or
    uint16 for 16-bit greyscale files (``bits=16``: every image as uint16, 8-bit ones x257)."""

    def __init__(self, paths: list[Path], in_chans: int, root: Path | None = None,
                 bits: int | None = None) -> None:
        self.paths, self.mode, self.root = paths, "L" if in_chans == 1 else "RGB", root
        self.bits = bits

    def sample_ids(self) -> list[str]:
        return file_ids(self.paths, self.root)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                array = _pixels(image, self.mode, path)
        except (OSError, UnidentifiedImageError) as err:
            raise DataError(f"cannot read image {path}: {err}") from None
        if self.bits == 16 and array.dtype == np.uint8:
            array = array.astype(np.uint16) * 257
        return array[..., None] if array.ndim == 2 else array


def _pixels(image: Image.Image, mode: str, path: Path) -> np.ndarray:
    """uint8 L / RGB, or uint16 for 16-bit greyscale (Pillow's convert would saturate it)."""
    if image.mode == "F":
        raise DataError(f"image {path} holds floating-point pixels (mode F): save it as 8- or "
                        "16-bit")
    if image.mode not in SIXTEEN_BIT:
        return np.asarray(image.convert(mode))
    array = np.asarray(image)
    if array.dtype != np.uint16:
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise DataError(f"image {path} ({image.mode}) has values [{array.min()}, "
                            f"{array.max()}]: expected 8- or 16-bit pixels")
        array = array.astype(np.uint16)
    return np.repeat(array[..., None], 3, axis=-1) if mode == "RGB" else array


def check_stored_channels(path: Path, expected: int) -> None:
    """A file holds ``expected`` colour channels (1: greyscale, 3: colour; alpha not counted,
    palette images fit either) before any conversion, else a one-line :class:`DataError`:
    a file another run would read (``medbench predict``) is not silently made grey or RGB."""
    try:
        with Image.open(path) as image:
            mode, bands = image.mode, image.getbands()
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None
    stored = len([b for b in bands if b not in ("A", "X")])
    if mode not in ("P", "PA") and stored != expected:
        raise DataError(f"image {path} has {stored} channel(s) (mode {mode}); the run's images "
                        f"have {expected} ({'greyscale' if expected == 1 else 'RGB'}): convert "
                        "it first")


class FileListDataModule(SplitDataModule):
    """Shared logic for file-based sources: label encoding and split assignment. Subclasses
    reading other files (NIfTI volumes) override :meth:`file_source` and :meth:`check_shapes`
    and set ``spatial_dims``."""

    spatial_dims: ClassVar[int] = 2
    root: Path | None = None  # where sample ids are taken relative to (subclasses set it)

    def __init__(self, name: str, label_type: str = "auto", in_chans: int = 1,
                 val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0,
                 classes: list[str] | None = None, duplicates: str = "error",
                 **kwargs) -> None:
        super().__init__(**kwargs)
        # copies of one image under two names: across splits an error (warn: a warning; off:
        # not looked for), within a split a warning (data/duplicates.py)
        self.duplicates = checked_mode(duplicates)
        # the split's own seed, not the training seed: every seed of a method, and every
        # method, is tested on the same images (the leaderboard's paired tests need that)
        self.split_seed = split_seed
        self._patients: dict[str, np.ndarray] = {}
        self.name, self.in_chans = name, in_chans
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self._bits: int | None = None
        self.records = self.read_records()
        # label indices: data.classes' order, else numbers numerically and names alphabetically
        self.class_names, label_type = checks.class_names_of(self.records, name, label_type,
                                                             classes)
        self.info = DatasetInfo(name, "classification", len(self.class_names), in_chans,
                                label_type, self.class_names, spatial_dims=self.spatial_dims)

    def read_records(self) -> list[dict[str, str]]:
        """Rows with keys path, label and optionally patient_id, split."""
        raise NotImplementedError

    def patient_groups(self, split: str) -> np.ndarray | None:
        return self._patients.get(split)

    def file_source(self, paths: list[Path]) -> ImageSource:
        """The images of one split, read on access."""
        if self._bits is None:
            self._bits = _check_headers(self._paths, same_size=False)
        return FileSource(paths, self.in_chans, self.root, bits=self._bits)

    def check_shapes(self, paths: np.ndarray) -> None:
        """Batches need one size (checked when ``data.resize`` is unset): headers only."""
        self._bits = _check_headers(paths, same_size=True)

    def _encode(self, label: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.class_names)}
        if self.info.label_type == "multilabel":
            row = np.zeros(len(self.class_names), dtype=np.int64)
            row[[index[c] for c in label.split("|")]] = 1
            return row
        return np.int64(index[label])

    def load_splits(self):
        labels = np.stack([self._encode(r["label"]) for r in self.records])
        groups = checks.patient_column(self.records)
        split_of = checks.split_column(self.records, self.name)
        checks.check_listed_once(self.records, split_of)
        drawn = split_of is None
        if drawn:
            split_of = assign_splits(labels, groups, self.val_fraction, self.test_fraction,
                                     self.split_seed)
        elif groups is not None:
            checks.check_patients_apart(self.records, split_of, groups)
        checks.check_every_class_in_every_split(labels, split_of, self.class_names,
                                                self.info.label_type, self.name, drawn)
        paths = np.array([Path(r["path"]) for r in self.records], dtype=object)
        self._paths = paths
        if not self.resize:
            self.check_shapes(paths)
        if groups is not None:
            self._patients = {split: groups[split_of == split] for split in SPLITS}
        splits = {
            split: (self.file_source(list(paths[split_of == split])), labels[split_of == split])
            for split in ("train", "val", "test")
        }
        # last: the headers are read (an unreadable image is named as such, not as a copy)
        check_no_copies(self.records, split_of, self.name, self.duplicates, drawn)
        return splits


def _check_headers(paths: np.ndarray, same_size: bool) -> int:
    """Reads only the headers: names two files of different sizes (``same_size``), and gives
    the bit depth all images are served at (16 when any is 16-bit greyscale; the 8-bit ones are
    then scaled by 257, with a warning, so one max pixel value fits them all)."""
    first, modes = None, {}
    for path in paths:
        try:
            with Image.open(path) as image:
                size, mode = image.size, image.mode
        except (OSError, UnidentifiedImageError) as err:
            raise DataError(f"cannot read image {path}: {err}") from None
        if mode == "F":
            raise DataError(f"image {path} holds floating-point pixels (mode F): save it as "
                            "8- or 16-bit")
        modes.setdefault(mode in SIXTEEN_BIT, path)
        if first is None:
            first = (path, size)
        elif same_size and size != first[1]:
            raise DataError(
                f"images differ in size ({first[0]} is {first[1][0]}x{first[1][1]}, {path} is "
                f"{size[0]}x{size[1]}): set data.resize=<side> to resize them"
            )
    if len(modes) == 2:
        warnings.warn(f"images of 8 and 16 bits ({modes[False]} and {modes[True]}): 8-bit "
                      "images scaled by 257 to 16 bits", checks.LabelWarning, stacklevel=3)
    return 16 if True in modes else 8


def _inside(root: Path, relative: str, where: str) -> Path:
    if not relative.strip():
        raise DataError(f"{where}: empty path")
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
        rows = read_manifest(self.manifest)
        for row in rows:
            row["path"] = str(_inside(self.root, row["path"], row["where"]))
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
        present = [s for s in SPLITS if (self.root / s).is_dir()]
        if present and len(present) < len(SPLITS):
            raise DataError(f"{self.root}: split folder(s) {present} without "
                            f"{[s for s in SPLITS if s not in present]}: expected all of "
                            "train, val, test (fixed splits) or none (class folders)")
        tops = [(self.root / s, s) for s in SPLITS] if present else [(self.root, "")]
        rows, skipped, loose = [], [], []
        for top, split in tops:
            for entry in sorted(top.iterdir()):
                if entry.is_file() and entry.suffix.lower() in IMAGE_SUFFIXES:
                    loose.append(entry)
                if not entry.is_dir():
                    continue
                if entry.name.startswith((".", "__")):  # .ipynb_checkpoints, __MACOSX
                    skipped.append(entry)
                    continue
                rows += [{"path": str(f), "label": entry.name, "split": split, "where": str(f)}
                         for f in sorted(entry.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        if skipped or loose:
            warnings.warn(f"{self.root}: skipped hidden folder(s) {[str(p) for p in skipped]} "
                          f"and {len(loose)} image(s) outside class folders (first: "
                          f"{loose[0] if loose else None})", checks.LabelWarning, stacklevel=2)
        if not rows:
            raise DataError(f"{self.root}: no {sorted(IMAGE_SUFFIXES)} images in class subfolders")
        return rows
