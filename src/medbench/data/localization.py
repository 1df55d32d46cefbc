"""One object per image, for the localization family: the boxes of a VOC / COCO source
(:class:`medbench.data.boxes.BoxDataModule`, read as it reads them) reduced to one object.

``objects`` names the classes to localize (BCCD: ``[WBC]``); the other classes' boxes are
ignored. Rules, counted per split, logged and kept as ``data.*`` tags:

- several objects in an image (BCCD: 10 train, 1 val, 3 test images with two WBCs):
  ``several: largest`` keeps the largest box (the other is usually cut by the border),
  ``drop`` leaves the image out;
- no object (BCCD: 1 train, 1 val, 4 test images): ``empty: keep`` keeps the image as class 0,
  ``none`` (no box; the class head must say so, box metrics skip it), ``drop`` leaves it out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from medbench.data.base import SPLITS, DatasetInfo
from medbench.data.boxes import BoxDataModule
from medbench.data.files import FileSource
from medbench.data.registry import register_datamodule
from medbench.data.targets import OneBox
from medbench.errors import ConfigError

log = logging.getLogger(__name__)
NO_OBJECT = "none"
SEVERAL = ("largest", "drop")
EMPTY = ("keep", "drop")


@register_datamodule("one_box")
class OneBoxDataModule(BoxDataModule):
    """Images with one object of ``objects`` each: label 1.. (0: none) and its box in px.

    Takes the options of the ``boxes`` source (``classes`` names every class the annotations
    hold) plus ``objects``, ``several`` and ``empty`` (above). Class names are ``none`` then
    ``objects``."""

    def __init__(self, objects: Sequence[str], several: str = "largest", empty: str = "keep",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        unknown = [o for o in objects or [] if o not in self.classes]
        if not objects or unknown:
            raise ConfigError(f"data.objects: expected classes from data.classes "
                              f"{self.classes}, got {list(objects or [])}")
        if several not in SEVERAL:
            raise ConfigError(f"data.several: expected one of {', '.join(SEVERAL)}, got "
                              f"'{several}'")
        if empty not in EMPTY:
            raise ConfigError(f"data.empty: expected one of {', '.join(EMPTY)}, got '{empty}'")
        self.objects, self.several, self.empty = list(objects), several, empty
        self.rule_counts: dict[str, dict[str, int]] = {}
        names = [NO_OBJECT, *self.objects]
        self.info = DatasetInfo(self.info.name, "localization", len(names), self.in_chans,
                                "multiclass", names, spatial_dims=2)

    @property
    def target_kind(self) -> OneBox:
        return OneBox(self.info.num_classes)

    def _one(self, boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, int, str]:
        """(box, label, what happened): ``one``, ``several``, ``empty``."""
        ids = np.asarray([self.classes.index(o) for o in self.objects])
        keep = np.isin(labels, ids)
        boxes, labels = boxes[keep], labels[keep]
        if len(boxes) == 0:
            return np.zeros(4, np.float32), 0, "empty"
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        largest = int(areas.argmax())
        label = self.objects.index(self.classes[labels[largest]]) + 1
        return boxes[largest], label, "one" if len(boxes) == 1 else "several"

    def load_splits(self) -> dict[str, tuple[FileSource, list[dict[str, np.ndarray]]]]:
        super().load_splits()  # reads and checks every split's records (self.records)
        out = {}
        for split in SPLITS:
            records, kept, counts = self.records[split], [], {"one": 0, "several": 0,
                                                              "empty": 0}
            for record in records:
                box, label, what = self._one(record.boxes, record.labels)
                counts[what] += 1
                if (what == "several" and self.several == "drop") or (
                        what == "empty" and self.empty == "drop"):
                    continue
                kept.append((record, {"box": box, "label": np.int64(label),
                                      "size": np.asarray([record.width, record.height],
                                                         np.float32)}))
            counts["kept"] = len(kept)
            self.rule_counts[split] = counts
            log.info("%s %s: %d images with one %s, %d with several (%s), %d with none (%s); "
                     "%d kept", self.info.name, split, counts["one"], "/".join(self.objects),
                     counts["several"], self.several, counts["empty"], self.empty, len(kept))
            self.records[split] = [r for r, _ in kept]
            out[split] = (FileSource([r.image for r, _ in kept], self.in_chans, self.root),
                          [t for _, t in kept])
        return out

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        for split, counts in self.rule_counts.items():
            out.update({f"images_{what}_{split}": n for what, n in counts.items()})
        return out
