"""Files of a segmentation test: the per-image metrics, overlays and probability maps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from medbench.tasks.segmentation.ranking import PER_SAMPLE_FILE  # noqa: E402


def write_per_image(predictions: dict[str, Any], folder: Path) -> Path:
    """One row per test image: its index and every per-image metric."""
    frame = pd.DataFrame({k: np.asarray(v) for k, v in predictions.items()})
    path = folder / PER_SAMPLE_FILE
    frame.to_csv(path, index=False, float_format="%.6g")
    return path


def write_examples(examples: list[dict[str, np.ndarray]], names: list[str],
                   folder: Path) -> list[Path]:
    """Per kept test image (a volume: its middle slice along the first axis): the image, the
    reference and the prediction overlaid (true positives white, false positives red, false
    negatives blue; outside the FOV dimmed), the foreground probability map and, where kept,
    the pixels' predictive entropy (nats; its scale is the image's own)."""
    folder = folder / "overlays"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for example in examples:
        if example["mask"].ndim == 3:
            middle = example["mask"].shape[0] // 2
            example = {**example, "image": example["image"][:, middle],
                       "probs": example["probs"][:, middle], "mask": example["mask"][middle],
                       "fov": example["fov"][middle],
                       **({"entropy": example["entropy"][middle]} if "entropy" in example
                          else {})}
        image = np.moveaxis(example["image"], 0, -1)
        image = (image - image.min()) / max(float(np.ptp(image)), 1e-8)
        probs, mask, fov = example["probs"], example["mask"], example["fov"].astype(bool)
        predicted = probs[1:] >= example["thresholds"][:, None, None]
        reference = np.stack([mask == c for c in range(1, probs.shape[0])])
        overlay = np.zeros((*mask.shape, 3))
        overlay[(predicted & reference).any(0)] = (1, 1, 1)
        overlay[(predicted & ~reference).any(0)] = (1, 0.15, 0.15)
        overlay[(~predicted & reference).any(0)] = (0.2, 0.4, 1)
        overlay[~fov] *= 0.3
        panels = [(image.squeeze(), "image", "gray", 1.0),
                  (overlay, "TP white, FP red, FN blue", None, 1.0),
                  (probs[1:].max(0), f"p({', '.join(names[1:])})", "magma", 1.0)]
        if "entropy" in example:
            entropy = np.where(fov, example["entropy"], 0.0)
            panels.append((entropy, f"predictive entropy (max {entropy.max():.2f} nats)",
                           "viridis", max(float(entropy.max()), 1e-8)))
        fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.4))
        for ax, (data, title, cmap, top) in zip(axes, panels, strict=True):
            ax.imshow(data, cmap=cmap, vmin=0, vmax=top)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.tight_layout()
        path = folder / f"test_{example['index']:03d}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
