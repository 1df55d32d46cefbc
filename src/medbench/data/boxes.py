"""Images with object boxes (Pascal VOC XML or COCO JSON), for the detection family.

A config names the annotation format, the classes and, per split, an id list (VOC: one image
id per line, as in VOC's ``ImageSets/Main/<split>.txt``) or a COCO JSON file. Images are read
from their files on access. Every box is checked against its image: a box of zero area or one
reaching outside the image is dropped with a :class:`BoxWarning` naming the file and the box
(``strict: true`` rejects it with a one-line :class:`DataError` instead; ``box_checks``), so a
defective annotation never crashes a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from medbench.data.base import SPLITS, DatasetInfo, SplitDataModule
from medbench.data.box_checks import check_boxes
from medbench.data.box_formats import UNKNOWN_CLASSES, BoxRecord, read_coco, read_voc
from medbench.data.files import FileSource
from medbench.data.registry import register_datamodule
from medbench.data.targets import Boxes
from medbench.errors import ConfigError, DataError

FORMATS = ("voc", "coco")
DEFAULT_TEMPLATES = {"voc": ("JPEGImages/{id}.jpg", "Annotations/{id}.xml"),
                     "coco": ("{file_name}", None)}


@register_datamodule("boxes")
class BoxDataModule(SplitDataModule):
    """Object boxes per image from VOC XML or COCO JSON annotations.

    ``splits``: ``{train, val, test}`` -> a file under ``root``: for ``format: voc`` an id list,
    for ``format: coco`` a COCO JSON. ``images`` is the template of an image's path under
    ``root`` (VOC: ``{id}``; COCO: ``{file_name}`` or ``{id}``), ``annotations`` that of a VOC
    XML file (``{id}``). ``classes`` name the object classes in index order (background is not
    one: the detection family adds it); objects of other classes are an error, or dropped with
    ``unknown_classes: drop``. ``max_images``: ``{split: N}`` keeps the first N images of a
    split (quick tests). ``min_visibility``: boxes an augmentation crops to less than this
    share of their area are dropped from that item.
    """

    def __init__(self, root: str, splits: Mapping[str, str], classes: Sequence[str],
                 format: str = "voc", name: str | None = None, images: str | None = None,
                 annotations: str | None = None, in_chans: int = 3, strict: bool = False,
                 unknown_classes: str = "error", max_images: Mapping[str, int] | None = None,
                 min_visibility: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if format not in FORMATS:
            raise ConfigError(f"data.format: expected one of {', '.join(FORMATS)}, got "
                              f"'{format}'")
        if self.sampler is not None:
            raise ConfigError("data.sampler: weighted sampling is not defined for boxes; use "
                              "null")
        missing = [s for s in SPLITS if not (splits or {}).get(s)]
        unknown = sorted(set(splits or {}) - set(SPLITS))
        if missing or unknown:
            raise ConfigError(f"data.splits: expected a file for each of train, val and test; "
                              f"missing {missing}, unknown {unknown}")
        if len(classes) < 1 or len(set(classes)) != len(classes):
            raise ConfigError(f"data.classes: expected distinct object class names, got "
                              f"{list(classes)}")
        if unknown_classes not in UNKNOWN_CLASSES:
            raise ConfigError(f"data.unknown_classes: expected error or drop, got "
                              f"'{unknown_classes}'")
        if in_chans not in (1, 3):
            raise ConfigError(f"data.in_chans: expected 1 (grayscale) or 3 (RGB), got {in_chans}")
        self.root, self.format, self.split_files = Path(root), format, dict(splits)
        defaults = DEFAULT_TEMPLATES[format]
        self.images, self.annotations = images or defaults[0], annotations or defaults[1]
        self.classes, self.strict, self.unknown_classes = list(classes), strict, unknown_classes
        self.max_images, self.min_visibility = dict(max_images or {}), min_visibility
        self.in_chans = in_chans
        self.records: dict[str, list[BoxRecord]] = {}  # each loaded split's images, in order
        self.info = DatasetInfo(name or self.root.name, "detection", len(self.classes),
                                in_chans, None, list(self.classes), spatial_dims=2)

    @property
    def target_kind(self) -> Boxes:
        return Boxes(self.info.num_classes, self.min_visibility)

    def _split_file(self, split: str) -> Path:
        path = self.root / self.split_files[split]
        if not path.is_file():
            raise DataError(f"data.splits.{split}: file not found: {path}")
        return path

    def _voc_records(self, split: str) -> list[BoxRecord]:
        ids = [line.strip() for line in self._split_file(split).read_text().splitlines()]
        records = []
        for image_id in filter(None, ids):
            try:
                annotation = self.root / self.annotations.format(id=image_id)
                image = self.root / self.images.format(id=image_id)
            except (KeyError, IndexError) as err:
                raise ConfigError(f"data.images / data.annotations: only {{id}} can be filled "
                                  f"for VOC ({err})") from None
            if not annotation.is_file():
                raise DataError(f"{split} image '{image_id}' has no annotation: expected "
                                f"{annotation}")
            records.append(read_voc(annotation, image, self.classes, self.unknown_classes))
        return records

    def _records(self, split: str) -> list[BoxRecord]:
        if self.format == "voc":
            records = self._voc_records(split)
        else:
            records = read_coco(self._split_file(split), self.images, self.root, self.classes,
                                self.unknown_classes)
        records = records[:self.max_images.get(split) or None]
        if not records:
            raise DataError(f"{self.info.name} {split} split lists no image "
                            f"({self.split_files[split]})")
        for record in records:
            _check_image(record)
        return [check_boxes(record, self.classes, self.strict) for record in records]

    def load_splits(self) -> dict[str, tuple[FileSource, list[dict[str, np.ndarray]]]]:
        if not self.root.is_dir():
            raise DataError(f"data.root: folder not found: {self.root}")
        out = {}
        for split in SPLITS:
            self.records[split] = self._records(split)
            out[split] = (FileSource([r.image for r in self.records[split]], self.in_chans,
                                       self.root),
                          [{"boxes": r.boxes, "labels": r.labels} for r in self.records[split]])
        return out


def _check_image(record: BoxRecord) -> None:
    """The image exists and has the annotated size (its header only is read)."""
    if not record.image.is_file():
        raise DataError(f"{record.source}: image not found: {record.image}")
    try:
        with Image.open(record.image) as image:
            size = image.size
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read image {record.image}: {err}") from None
    if size != (record.width, record.height):
        raise DataError(f"{record.source} annotates a {record.width}x{record.height} image but "
                        f"{record.image} is {size[0]}x{size[1]} (width x height)")
