"""Target kinds: what one item's target is, and how shared data code handles it.

A data source declares its target kind; a family declares the kind it trains on (``train``
checks they agree). The kind validates a split's targets, gives the strata that stratified
splits and folds use, counts classes, fingerprints a split, feeds the targets through the
image's augmentation (albumentations targets: one random draw for image, mask and boxes) and
collates a batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import default_collate

from medbench.data.label_checks import checked_label_array
from medbench.errors import DataError

LABEL_TYPES = ("binary", "multiclass", "multilabel", "ordinal")


class TargetKind:
    """Base: targets that need nothing from the augmentation (a label per item)."""

    name: ClassVar[str]

    def validate(self, targets: Any, where: str) -> Any:
        """The targets of one split, checked (``where`` names the dataset and split)."""
        return targets

    def strata(self, targets: Any) -> np.ndarray | None:
        """One label per item for stratified splits and folds (None: unstratified)."""
        return None

    def counts(self, targets: Any) -> np.ndarray | None:
        """Items per class (class weights, weighted sampling); None when undefined."""
        return None

    def summary(self, targets: Any) -> dict[str, Any]:
        """Fingerprint of one split's targets, logged with the run (``data.*`` tags)."""
        counts = self.counts(targets)
        return {} if counts is None else {"class_counts": counts.tolist()}

    def fingerprint(self, ids: Sequence[str], targets: Any) -> str:
        """16 hex digits of a split's content: its items' ids (file paths relative to the
        data's root, array indices) and targets, in order; equal wherever the data are equal
        (the leaderboard keys rows by the test split's, tag ``data.fingerprint_test``)."""
        digest = hashlib.sha256()
        for item in ids:
            digest.update(str(item).encode() + b"\0")
        _feed(digest, targets)
        return digest.hexdigest()[:16]

    def compose_options(self) -> dict[str, Any]:
        """Keyword arguments of ``albumentations.Compose`` (e.g. ``bbox_params``)."""
        return {}

    def augment_inputs(self, target: Any) -> dict[str, Any]:
        """Extra inputs of the augmentation call, transformed with the image in one draw."""
        return {}

    def augmented(self, target: Any, output: dict[str, Any]) -> Any:
        """The item's target after the augmentation, as a tensor (or dict of tensors)."""
        return torch.as_tensor(target)

    def collate(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        """A batch of items (dicts) as the model's step receives it."""
        return default_collate(batch)


class ClassLabels(TargetKind):
    """Class labels: an integer per item, or a 0/1 vector (multi-label)."""

    name = "class_labels"

    def __init__(self, label_type: str, num_classes: int) -> None:
        if label_type not in LABEL_TYPES:
            raise DataError(f"label type '{label_type}' is not one of {LABEL_TYPES}")
        self.label_type, self.num_classes = label_type, num_classes

    def validate(self, targets: Any, where: str) -> np.ndarray:
        """Whole indices in range (multi-label: 0/1 rows); NaN, fractions and extra columns
        are one-line errors (``data/label_checks.py``)."""
        return checked_label_array(targets, self.label_type, self.num_classes, where)

    def strata(self, targets: np.ndarray) -> np.ndarray:
        return targets if targets.ndim == 1 else targets.argmax(axis=1)

    def counts(self, targets: np.ndarray) -> np.ndarray:
        if self.label_type == "multilabel":
            return targets.sum(axis=0).astype(np.int64)
        return np.bincount(targets, minlength=self.num_classes)


class Masks(TargetKind):
    """Dense label maps of class indices, augmented with the image in its random draw.

    A target is a (*S) array, or ``{"mask": (*S), "fov": (*S)[, "spacing": (dims,)]}`` where
    the field of view (or any region to score, 0 outside) follows the same geometric draw;
    items then carry ``{"mask": long, "fov": bool[, "spacing": float64]}`` tensors (the voxel
    spacing of a volume, for surface distances).
    """

    name = "masks"

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def compose_options(self) -> dict[str, Any]:
        return {"additional_targets": {"fov": "mask"}}

    def augment_inputs(self, target: Any) -> dict[str, Any]:
        if isinstance(target, dict):
            return {"mask": target["mask"], "fov": target["fov"]}
        return {"mask": target}

    def augmented(self, target: Any, output: dict[str, Any]) -> Any:
        mask = torch.as_tensor(np.asarray(output["mask"]), dtype=torch.long)
        if "fov" not in output:
            return mask
        out = {"mask": mask, "fov": torch.as_tensor(np.asarray(output["fov"]) > 0)}
        if isinstance(target, dict) and "spacing" in target:
            out["spacing"] = torch.as_tensor(np.asarray(target["spacing"]), dtype=torch.float64)
        return out

    def counts(self, targets: Any) -> np.ndarray:
        """Pixels per class (inside the field of view when there is one)."""
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for target in targets:
            mask = target["mask"][target["fov"] > 0] if isinstance(target, dict) else target
            counts += np.bincount(np.asarray(mask).ravel(), minlength=self.num_classes)
        return counts

    def summary(self, targets: Any) -> dict[str, Any]:
        return {"pixel_counts": self.counts(targets).tolist()}


class Boxes(TargetKind):
    """Boxes per item: ``{"boxes": (N, 4) x_min, y_min, x_max, y_max in pixels, "labels": (N,)}``;
    boxes follow the image's geometric augmentation (albumentations ``bbox_params``) and a batch
    keeps one target dict per item (detectors take lists)."""

    name = "boxes"

    def __init__(self, num_classes: int, min_visibility: float = 0.0) -> None:
        self.num_classes, self.min_visibility = num_classes, min_visibility

    def compose_options(self) -> dict[str, Any]:
        import albumentations as A

        return {"bbox_params": A.BboxParams(format="pascal_voc", label_fields=["box_labels"],
                                            min_visibility=self.min_visibility)}

    def augment_inputs(self, target: dict[str, np.ndarray]) -> dict[str, Any]:
        return {"bboxes": np.asarray(target["boxes"], dtype=np.float32).reshape(-1, 4),
                "box_labels": np.asarray(target["labels"], dtype=np.int64)}

    def augmented(self, target: Any, output: dict[str, Any]) -> dict[str, torch.Tensor]:
        boxes = np.asarray(output["bboxes"], dtype=np.float32).reshape(-1, 4)
        return {"boxes": torch.as_tensor(boxes),
                "labels": torch.as_tensor(np.asarray(output["box_labels"], dtype=np.int64))}

    def counts(self, targets: Any) -> np.ndarray:
        """Boxes per class."""
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for target in targets:
            counts += np.bincount(np.asarray(target["labels"], dtype=np.int64),
                                  minlength=self.num_classes)
        return counts

    def collate(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        return {"image": _stack_or_list([item["image"] for item in batch]),
                "target": [item["target"] for item in batch],
                "index": torch.as_tensor([item["index"] for item in batch])}


def _feed(digest: Any, value: Any) -> None:
    """Adds ``value`` (arrays, dicts, sequences, scalars) to ``digest``, type and shape too."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        array = np.ascontiguousarray(np.asarray(value))
        digest.update(f"{array.dtype.str}{array.shape}".encode() + array.tobytes())
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            digest.update(f"{key}:".encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"[{len(value)}]".encode())
        for item in value:
            _feed(digest, item)
    elif value is None or isinstance(value, (str, int, float, bool, np.generic)):
        digest.update(repr(value).encode())
    else:  # an object without a stable content: its type (never its address)
        digest.update(type(value).__name__.encode())


def _stack_or_list(images: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    """One tensor when the images share a shape, else the list (detectors accept both)."""
    same = all(image.shape == images[0].shape for image in images)
    return torch.stack(list(images)) if same else list(images)


class OneBox(TargetKind):
    """One object per item (localization): ``{"box": (4,) x_min, y_min, x_max, y_max px,
    "label": class index, 0 = no object, "size": (2,) the image's width, height px}``.

    The box follows the image's geometric augmentation; an item's target becomes
    ``{"box": (4,) centre x, centre y, width, height normalised to the augmented image,
    "label", "size"}`` (float32, int64, float32). An object an augmentation moves out of the
    image leaves the item with no object (label 0, box zeros)."""

    name = "one_box"

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes  # including class 0, no object

    def validate(self, targets: Any, where: str) -> list[dict[str, np.ndarray]]:
        labels = np.asarray([t["label"] for t in targets], dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise DataError(f"{where} labels span [{labels.min()}, {labels.max()}], expected "
                            f"0..{self.num_classes - 1} (0: no object)")
        return list(targets)

    def strata(self, targets: Any) -> np.ndarray:
        return np.asarray([t["label"] for t in targets], dtype=np.int64)

    def counts(self, targets: Any) -> np.ndarray:
        return np.bincount(self.strata(targets), minlength=self.num_classes)

    def compose_options(self) -> dict[str, Any]:
        import albumentations as A

        return {"bbox_params": A.BboxParams(format="pascal_voc", label_fields=["box_labels"])}

    def augment_inputs(self, target: dict[str, Any]) -> dict[str, Any]:
        present = int(target["label"]) > 0
        boxes = np.asarray(target["box"], dtype=np.float32).reshape(-1, 4)[:int(present)]
        return {"bboxes": boxes, "box_labels": np.asarray([target["label"]] * int(present),
                                                          dtype=np.int64)}

    def augmented(self, target: Any, output: dict[str, Any]) -> dict[str, torch.Tensor]:
        image = output["image"]  # (C, H, W) tensor, or (H, W, C) before ToTensorV2
        height, width = image.shape[-2:] if torch.is_tensor(image) else image.shape[:2]
        boxes = np.asarray(output["bboxes"], dtype=np.float32).reshape(-1, 4)
        box, label = np.zeros(4, np.float32), 0
        if len(boxes):
            x0, y0, x1, y1 = boxes[0]
            box = np.asarray([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height,
                              (x1 - x0) / width, (y1 - y0) / height], np.float32)
            label = int(target["label"])
        return {"box": torch.as_tensor(box), "label": torch.as_tensor(label, dtype=torch.long),
                "size": torch.as_tensor(np.asarray(target["size"], np.float32))}
