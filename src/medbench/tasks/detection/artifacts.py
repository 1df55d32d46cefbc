"""Files of a detection test: the per-image counts, and test images with their boxes drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

from medbench.tasks.detection.ranking import PER_SAMPLE_FILE

TRUE_COLOUR, PREDICTED_COLOUR = "lime", "red"


def write_per_image(predictions: dict[str, Any], folder: Path) -> Path:
    """One row per test image: its index, counts at IoU 0.5, F1 and AP@0.5."""
    frame = pd.DataFrame({k: np.asarray(v) for k, v in predictions.items()})
    path = folder / PER_SAMPLE_FILE
    frame.to_csv(path, index=False, float_format="%.6g")
    return path


def write_examples(examples: list[dict[str, Any]], names: list[str], folder: Path) -> list[Path]:
    """Per kept test image: true boxes (green, class name) and the detections kept at the
    validation threshold (red, class name and score), drawn by torchvision."""
    folder = folder / "detections"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for example in examples:
        image = example["image"].astype(np.float64)
        image = (image - image.min()) / max(float(np.ptp(image)), 1e-8)
        pixels = torch.as_tensor((image * 255).round().astype(np.uint8))
        if pixels.shape[0] == 1:
            pixels = pixels.expand(3, -1, -1)
        drawn = draw_bounding_boxes(
            pixels, torch.as_tensor(example["true_boxes"]).reshape(-1, 4),
            [names[int(c)] for c in example["true_labels"]], colors=TRUE_COLOUR, width=2)
        labels = [f"{names[int(c)]} {s:.2f}"
                  for c, s in zip(example["labels"], example["scores"], strict=True)]
        drawn = draw_bounding_boxes(drawn, torch.as_tensor(example["boxes"]).reshape(-1, 4),
                                    labels, colors=PREDICTED_COLOUR, width=1)
        path = folder / f"test_{example['index']:03d}.png"
        Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(path)
        written.append(path)
    return written
