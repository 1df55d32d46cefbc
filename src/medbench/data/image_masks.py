"""Images with label masks (and optional field-of-view masks) paired by file name.

A config names, per split, a glob of images and path templates of their masks; a regex on the
image's file name gives the ``id`` (and any other named group) the templates are filled with.
Splits load eagerly (small datasets such as DRIVE). Training serves random patches, evaluation
whole images (which may differ in size: evaluate with batch size 1). ``spatial_dims: 3`` reads
NIfTI volumes (image, label map and FOV ``.nii``/``.nii.gz``; their voxel spacing reaches the
surface distances) and serves 3D patches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from medbench.data import mask_checks as checks
from medbench.data.base import SPLITS, DatasetInfo, SplitDataModule
from medbench.data.files import check_stored_channels
from medbench.data.mask_files import natural, read_pixels
from medbench.data.patches import ListSource, PatchDataset
from medbench.data.registry import register_datamodule
from medbench.data.sources import ImageSource, file_ids
from medbench.data.targets import Masks
from medbench.errors import ConfigError, DataError


@register_datamodule("image_masks")
class ImageMaskDataModule(SplitDataModule):
    """Image files and their label (and field-of-view) masks, paired by an id in the file name.

    ``splits``: ``{split: {images: <glob under root>, masks: <template>, fov: <template> | None}}``
    for train and test, and optionally val (else ``val_fraction`` of the train images, at
    least one, is held out, seeded by ``split_seed``). Templates are paths under ``root`` with
    ``{id}`` (or any named group of ``id_pattern``, matched from the start of the image's file
    name; default: the id is the file's stem). ``mask_values`` maps stored mask values to class
    indices (None: they are class indices). ``max_images`` keeps the first N images of a split.
    ``channels`` keeps chosen channels of the read image (e.g. ``[1]``: the green channel of an
    RGB fundus image). A split's ``observer`` template names a second reader's masks of its
    images (``observer_values`` maps their stored values, None: like ``mask_values``): a human
    reference, scored like a prediction by the segmentation family's ``observer`` runner.
    """

    def __init__(self, root: str, splits: Mapping[str, Mapping[str, str | None]],
                 classes: Sequence[str], name: str | None = None, id_pattern: str | None = None,
                 mask_values: Mapping[Any, int] | None = None, in_chans: int = 1,
                 val_fraction: float = 0.2, split_seed: int = 0,
                 patch_size: int | Sequence[int] = (64, 64), patches_per_image: int = 32,
                 foreground_fraction: float = 0.5, max_images: Mapping[str, int] | None = None,
                 channels: Sequence[int] | None = None,
                 observer_values: Mapping[Any, int] | None = None, spatial_dims: int = 2,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.sampler is not None:
            raise ConfigError("data.sampler: weighted sampling is not defined for masks; use null")
        self.root = Path(root)
        self.split_specs = _checked_splits(splits)
        if len(classes) < 2:
            raise ConfigError(f"data.classes: expected at least 2 class names, got {classes}")
        if (in_chans not in (1, 3)) if spatial_dims == 2 else in_chans < 1:
            expected = "1 (grayscale) or 3 (RGB)" if spatial_dims == 2 else "at least 1"
            raise ConfigError(f"data.in_chans: expected {expected}, got {in_chans}")
        self.id_pattern = re.compile(id_pattern) if id_pattern else None
        if self.id_pattern is not None and "id" not in self.id_pattern.groupindex:
            raise ConfigError(f"data.id_pattern '{id_pattern}' has no named group (?P<id>...)")
        self.mask_values = None if mask_values is None else {
            int(k): int(v) for k, v in mask_values.items()}
        if any(not 0 <= v < len(classes) for v in (self.mask_values or {}).values()):
            raise ConfigError(f"data.mask_values {self.mask_values}: class indices must be in "
                              f"0..{len(classes) - 1} ({len(classes)} classes)")
        if spatial_dims not in (2, 3):
            raise ConfigError(f"data.spatial_dims: expected 2 (images) or 3 (volumes), got "
                              f"{spatial_dims}")
        self.patch_size = ((patch_size,) * spatial_dims if isinstance(patch_size, int)
                           else tuple(patch_size))
        if len(self.patch_size) != spatial_dims or min(self.patch_size) < 1:
            axes = "[height, width]" if spatial_dims == 2 else "[depth, height, width]"
            raise ConfigError(f"data.patch_size: expected {axes}, got {patch_size}")
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ConfigError(f"data.foreground_fraction: expected 0..1, got {foreground_fraction}")
        self.in_chans, self.val_fraction, self.split_seed = in_chans, val_fraction, split_seed
        self.patches_per_image, self.foreground_fraction = patches_per_image, foreground_fraction
        self.max_images = dict(max_images or {})
        self.channels = None if channels is None else [int(c) for c in channels]
        if self.channels is not None and not all(0 <= c < in_chans for c in self.channels):
            raise ConfigError(f"data.channels {self.channels}: expected indices in "
                              f"0..{in_chans - 1} of the {in_chans}-channel images")
        self.observer_values = None if observer_values is None else {
            int(k): int(v) for k, v in observer_values.items()}
        self.files: dict[str, list[Path]] = {}  # each loaded split's image files, in order
        self.observers: dict[str, list[np.ndarray]] = {}  # second reader's masks, by split
        self.info = DatasetInfo(name or self.root.name, "segmentation", len(classes),
                                len(self.channels) if self.channels else in_chans, None,
                                list(classes), spatial_dims=spatial_dims)

    @property
    def target_kind(self) -> Masks:
        return Masks(self.info.num_classes)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The training patch (after ``resize`` when set): what the model receives in training."""
        return super().spatial_shape if self.resize else tuple(self.patch_size)

    def _file_id(self, path: Path, split: str) -> dict[str, str]:
        if self.id_pattern is None:
            return {"id": path.stem}
        match = self.id_pattern.match(path.name)
        if match is None:
            raise DataError(f"{split} image {path}: its file name does not match "
                            f"id_pattern '{self.id_pattern.pattern}'")
        return match.groupdict()

    def _pairs(self, split: str) -> list[tuple[Path, Path, Path | None]]:
        """(image, mask, fov) paths of a split, sorted by image, each checked to exist."""
        spec = self.split_specs[split]
        images = sorted((p for p in self.root.glob(spec["images"]) if p.is_file()), key=natural)
        if not images:
            raise DataError(f"{split} images: no file matches '{spec['images']}' under "
                            f"{self.root}")
        pairs, seen = [], {}
        for image in images:
            groups = self._file_id(image, split)
            if groups["id"] in seen:
                raise DataError(f"{split} images {seen[groups['id']]} and {image} share the id "
                                f"'{groups['id']}': expected one image per id")
            seen[groups["id"]] = image
            mask, fov = (self._companion(split, image, groups, w) for w in ("masks", "fov"))
            pairs.append((image, mask, fov))
        return pairs

    def _companion(self, split: str, image: Path, groups: dict[str, str],
                   what: str) -> Path | None:
        """The mask (``what="masks"``) or fov file of ``image``; None without a template."""
        template = self.split_specs[split].get(what)
        if template is None:
            return None
        try:
            path = self.root / template.format(**groups)
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(f"data.splits.{split}.{what} '{template}': cannot fill it from "
                              f"id_pattern's groups {groups} ({err})") from None
        if not path.is_file():
            noun = {"masks": "mask", "fov": "field-of-view file"}.get(what, f"{what} mask")
            raise DataError(f"{split} image {image} has no {noun}: expected {path}")
        return path

    def _image(self, path: Path) -> tuple[np.ndarray, tuple[float, ...] | None]:
        """An image (*spatial, C) with ``data.channels`` kept, and a volume's spacing."""
        dims = self.info.spatial_dims
        image, spacing = read_pixels(path, "image", "L" if self.in_chans == 1 else "RGB")
        image = image[..., None] if image.ndim == dims else image
        checks.check_image(image, path, dims, self.in_chans)
        if self.channels is not None:
            image = np.ascontiguousarray(image[..., self.channels])
        return image, spacing

    def read_image(self, path: Path) -> np.ndarray:
        """A 2D image file outside the splits, read as the splits' images (their channels
        checked first, then ``data.channels`` kept)."""
        check_stored_channels(path, self.in_chans)
        return self._image(path)[0]

    def _load(self, image_path: Path, mask_path: Path,
              fov_path: Path | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        dims = self.info.spatial_dims
        image, spacing = self._image(image_path)
        raw = read_pixels(mask_path, "mask")[0]
        checks.check_single_channel(raw, mask_path, dims)
        fov = np.ones(raw.shape, np.uint8)
        if fov_path is not None:
            fov = read_pixels(fov_path, "field-of-view file")[0]
            fov = (fov.max(axis=-1) if fov.ndim == dims + 1 else fov) > 0
        for path, array in ((mask_path, raw), (fov_path, fov)):
            checks.check_same_size(path, array.shape, image_path, image.shape[:dims])
        target = {"mask": checks.mask_classes(raw, mask_path, self.info.num_classes,
                                              self.mask_values),
                  "fov": fov.astype(np.uint8)}
        if spacing is not None:
            target["spacing"] = np.asarray(spacing[:dims], dtype=np.float64)
        return image, target

    def load_splits(self) -> dict[str, tuple[ImageSource, list[dict[str, np.ndarray]]]]:
        if not self.root.is_dir():
            raise DataError(f"data.root: folder not found: {self.root}")
        pairs = {split: self._pairs(split) for split in self.split_specs}
        if "val" not in pairs:
            train = pairs["train"]
            if len(train) < 2:
                raise DataError(f"{self.info.name}: {len(train)} train image(s), at least 2 are "
                                f"needed to hold out a val split (or name a val split)")
            n_val = min(len(train) - 1, max(1, round(self.val_fraction * len(train))))
            held = set(np.random.default_rng(self.split_seed).permutation(len(train))[:n_val])
            pairs["val"] = [p for i, p in enumerate(train) if i in held]
            pairs["train"] = [p for i, p in enumerate(train) if i not in held]
        out = {}
        for split in SPLITS:
            kept = pairs[split][:self.max_images.get(split) or None]
            self.files[split] = [image for image, _, _ in kept]
            images, targets = zip(*(self._load(*pair) for pair in kept), strict=True)
            out[split] = (ListSource(list(images), file_ids(self.files[split], self.root)),
                          list(targets))
            if self.split_specs.get(split, {}).get("observer"):
                self.observers[split] = [self._observer(split, image, target["mask"].shape)
                                         for image, target in zip(self.files[split], targets,
                                                                  strict=True)]
        return out

    def _observer(self, split: str, image: Path, shape: tuple[int, ...]) -> np.ndarray:
        """The second reader's mask of ``image``, as class indices."""
        path = self._companion(split, image, self._file_id(image, split), "observer")
        raw = read_pixels(path, "observer mask")[0]
        checks.check_same_size(path, raw.shape, image, shape)
        values = self.mask_values if self.observer_values is None else self.observer_values
        return checks.mask_classes(raw, path, self.info.num_classes, values)

    def _dataset(self, split: str, augmented: bool) -> Dataset:
        """Training: random patches (:class:`PatchDataset`); otherwise whole images."""
        if split != "train" or not augmented:
            return super()._dataset(split, augmented)
        self.setup()
        source, targets = self.splits[split]
        return PatchDataset(source, targets, self.target_kind, self.build_transform(True),
                            self.patch_size, self.patches_per_image, self.foreground_fraction,
                            self.seed)


def _checked_splits(splits: Mapping[str, Mapping[str, str | None]]) -> dict[str, dict]:
    """``data.splits`` checked: train and test (val optional), each with images and masks."""
    unknown = sorted(set(splits) - set(SPLITS))
    missing = [s for s in ("train", "test") if s not in splits]
    if unknown or missing:
        raise ConfigError(f"data.splits: expected train, test and optionally val; unknown "
                          f"{unknown}, missing {missing}")
    out = {split: dict(spec or {}) for split, spec in splits.items()}
    for split, spec in out.items():
        lacking = [k for k in ("images", "masks") if not spec.get(k)]
        extra = sorted(set(spec) - {"images", "masks", "fov", "observer"})
        if lacking or extra:
            raise ConfigError(f"data.splits.{split}: expected keys images, masks[, fov, "
                              "observer]; "
                              f"missing {lacking}, unknown {extra}")
    return out
