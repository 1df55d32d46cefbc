"""Files of a localization test: the per-image CSV, and test images with the true box
(green) and the predicted one (red) drawn with their classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

from medbench.metrics.localization import cxcywh_to_xyxy
from medbench.tasks.localization.ranking import PER_SAMPLE_FILE

TRUE_COLOUR, PREDICTED_COLOUR = "lime", "red"
BOX_COLUMNS = ("cx", "cy", "w", "h")


def write_per_image(predictions: dict[str, Any], folder: Path) -> Path:
    """One row per test image: index, true and predicted class, the predicted class's
    probability, IoU, centre error (px), hit at IoU 0.5, both boxes (normalised cxcywh) and
    the image's width and height (px)."""
    columns: dict[str, np.ndarray] = {}
    for key, value in predictions.items():
        array = np.asarray(value)
        if key in ("box", "true_box"):
            prefix = "pred" if key == "box" else "true"
            columns.update({f"{prefix}_{c}": array[:, i] for i, c in enumerate(BOX_COLUMNS)})
        elif key == "size":
            columns.update({"width_px": array[:, 0], "height_px": array[:, 1]})
        else:
            columns[key] = array
    path = folder / PER_SAMPLE_FILE
    pd.DataFrame(columns).to_csv(path, index=False, float_format="%.6g")
    return path


def _pixels(image: np.ndarray) -> torch.Tensor:
    image = image.astype(np.float64)
    image = (image - image.min()) / max(float(np.ptp(image)), 1e-8)
    pixels = torch.as_tensor((image * 255).round().astype(np.uint8))
    return pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels[:3]


def write_examples(examples: list[dict[str, Any]], names: list[str], folder: Path) -> list[Path]:
    """A PNG per kept test image (as the model saw it): true box green, predicted red."""
    folder = folder / "localizations"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for example in examples:
        drawn = _pixels(example["image"])
        height, width = drawn.shape[-2:]
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        for key, label, colour, text in (
                ("true_box", example["label"], TRUE_COLOUR, names[example["label"]]),
                ("box", example["pred_label"], PREDICTED_COLOUR,
                 f"{names[example['pred_label']]} {example['score']:.2f}")):
            if label == 0:  # no object: nothing to draw
                continue
            box = cxcywh_to_xyxy(torch.as_tensor(example[key], dtype=torch.float32)) * scale
            drawn = draw_bounding_boxes(drawn, box[None], [text], colors=colour, width=2)
        path = folder / f"test_{example['index']:03d}.png"
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(path)
        written.append(path)
    return written
