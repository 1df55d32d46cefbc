"""Boxes at the data boundary, in one place (as ``label_checks`` for class labels): a box of
zero area, with a non-finite corner, or reaching outside its image is dropped with a
:class:`BoxWarning` naming the file, the box and its class, or refused in one line under
``data.strict``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from medbench.data.box_formats import BoxRecord
from medbench.errors import DataError

__all__ = ["BoxWarning", "box_problem", "check_boxes"]


class BoxWarning(UserWarning):
    """A box was dropped while loading (zero area, or outside its image)."""


def box_problem(box: np.ndarray, width: int, height: int) -> str | None:
    """Why a box cannot be used (None: it can): zero area, or a side outside the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not np.isfinite(box).all():
        return "has a non-finite coordinate"
    if x1 <= x0 or y1 <= y0:
        return "has zero area"
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        return f"reaches outside the {width}x{height} image"
    return None


def check_boxes(record: BoxRecord, classes: Sequence[str], strict: bool = False) -> BoxRecord:
    """The record without its unusable boxes, one warning for each (``strict``: an error)."""
    keep = np.ones(len(record.boxes), bool)
    for i, box in enumerate(record.boxes):
        problem = box_problem(box, record.width, record.height)
        if problem is None:
            continue
        corners = ", ".join(f"{v:g}" for v in box)
        message = (f"{record.source}: box {i} ({classes[record.labels[i]]}) [{corners}] "
                   f"{problem}")
        if strict:
            raise DataError(f"{message} (data.strict=true rejects it; false drops it)")
        warnings.warn(f"{message}: dropped", BoxWarning, stacklevel=2)
        keep[i] = False
    record.boxes, record.labels = record.boxes[keep], record.labels[keep]
    return record
