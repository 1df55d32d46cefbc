"""Box annotation files into one format: Pascal VOC XML (one file per image) and COCO JSON
(one file per split).

Every reader returns :class:`BoxRecord` s: the image file, its annotated size and its boxes as
``(N, 4)`` float32 ``x_min, y_min, x_max, y_max`` in pixels with ``(N,)`` int64 class indices
(the position of the object's name in ``classes``). Coordinates are kept as the file stores
them (VOC's are 1-based pixel indices; no shift is applied, as in albumentations'
``pascal_voc`` format). Boxes are checked afterwards (:func:`medbench.data.box_checks.check_boxes`).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medbench.errors import DataError

UNKNOWN_CLASSES = ("error", "drop")


@dataclass
class BoxRecord:
    """One image's annotation: ``source`` names the annotation (file, or file and image id)."""

    image: Path
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32 x_min, y_min, x_max, y_max
    labels: np.ndarray  # (N,) int64 indices into the classes
    source: str


def _class_index(name: str, classes: Sequence[str], unknown: str, where: str) -> int | None:
    if name in classes:
        return list(classes).index(name)
    if unknown == "drop":
        return None
    raise DataError(f"{where}: object class '{name}' is not in data.classes {list(classes)} "
                    "(list it, or set data.unknown_classes=drop)")


def _number(node: ET.Element, key: str, where: str) -> float:
    child = node.find(key)
    try:
        return float(child.text)  # type: ignore[union-attr, arg-type]
    except (AttributeError, TypeError, ValueError):
        raise DataError(f"{where}: <{key}> is missing or not a number") from None


def read_voc(path: Path, image: Path, classes: Sequence[str],
             unknown: str = "error") -> BoxRecord:
    """A Pascal VOC XML file: ``<size>`` and each ``<object>``'s ``<name>`` and ``<bndbox>``."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        raise DataError(f"cannot read annotation {path}: {err}") from None
    size = root.find("size")
    if size is None:
        raise DataError(f"{path}: no <size> element (expected Pascal VOC XML)")
    width, height = int(_number(size, "width", str(path))), int(_number(size, "height", str(path)))
    boxes, labels = [], []
    for i, obj in enumerate(root.iter("object")):
        where = f"{path.name} object {i}"
        name = (obj.findtext("name") or "").strip()
        label = _class_index(name, classes, unknown, where)
        box = obj.find("bndbox")
        if box is None:
            raise DataError(f"{where} ({name}) has no <bndbox>")
        if label is None:
            continue
        boxes.append([_number(box, k, where) for k in ("xmin", "ymin", "xmax", "ymax")])
        labels.append(label)
    return BoxRecord(image, width, height, np.asarray(boxes, np.float32).reshape(-1, 4),
                     np.asarray(labels, np.int64), path.name)


def read_coco(path: Path, image_template: str, root: Path, classes: Sequence[str],
              unknown: str = "error") -> list[BoxRecord]:
    """A COCO detection JSON: ``images`` (id, file_name, width, height), ``categories`` (id,
    name) and ``annotations`` (image_id, category_id, bbox ``[x, y, w, h]``); crowd regions
    (``iscrowd: 1``) are skipped. Images keep the file's order; images without annotations
    are kept (no boxes)."""
    try:
        data = json.loads(path.read_text())
        images = {int(im["id"]): im for im in data["images"]}
        categories = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        annotations = data.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"cannot read COCO file {path}: {type(err).__name__} {err} (expected "
                        "images, categories and annotations)") from None
    per_image: dict[int, tuple[list, list]] = {i: ([], []) for i in images}
    for n, ann in enumerate(annotations):
        where = f"{path.name} annotation {ann.get('id', n)}"
        if ann.get("iscrowd"):
            continue
        try:
            image_id, category = int(ann["image_id"]), int(ann["category_id"])
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: expected image_id, category_id and bbox [x, y, w, h]"
                            ) from None
        if image_id not in images or category not in categories:
            raise DataError(f"{where}: image_id {image_id} or category_id {category} is not "
                            f"listed in {path.name}")
        label = _class_index(categories[category], classes, unknown, where)
        if label is not None:
            per_image[image_id][0].append([x, y, x + w, y + h])
            per_image[image_id][1].append(label)
    records = []
    for image_id, meta in images.items():
        boxes, labels = per_image[image_id]
        file = root / image_template.format(file_name=meta["file_name"], id=image_id)
        records.append(BoxRecord(file, int(meta["width"]), int(meta["height"]),
                                 np.asarray(boxes, np.float32).reshape(-1, 4),
                                 np.asarray(labels, np.int64),
                                 f"{path.name} image {image_id} ({meta['file_name']})"))
    return records
