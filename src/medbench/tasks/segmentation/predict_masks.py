"""`medbench predict` for segmentation runs: new images of any size predicted whole, as the
test predicts them (the module's sliding windows), binarised at the thresholds the selected
checkpoint's validation chose, written as mask and probability PNGs beside the CSV."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from medbench.errors import ConfigError
from medbench.family import Family, PredictContext, Predicted
from medbench.tasks.module import load_module_state


def class_mask(probs: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """(C, *S) probabilities -> (*S) class indices: a pixel is foreground class c when
    ``p_c >= threshold_c`` (the test's one-vs-rest rule); of several, the most probable."""
    foreground = probs[1:]
    above = torch.stack([foreground[c] >= thresholds[c] for c in range(len(foreground))])
    best = torch.where(above, foreground, -1.0).argmax(0) + 1
    return torch.where(above.any(0), best, 0)


def png(array: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG of a (H, W) uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def mask_predictor(family: Family, context: PredictContext) -> Callable[[dict[str, Any]],
                                                                          Predicted]:
    """Per file: ``<folder>/masks/<stem>.png`` (binary: 0/255; several classes: the class
    index), ``<folder>/probabilities/<stem>.png`` (8-bit, 255 = 1: the foreground's
    probability, 1 - p(background) for several classes) and a row of the mask's share of
    each foreground class and the thresholds used."""
    info = context.datamodule.info
    if info.num_classes > 256:
        raise ConfigError(f"medbench predict: {info.num_classes} classes do not fit an 8-bit "
                          "mask PNG")
    module = family.build_module(context.cfg, context.net, context.datamodule)
    load_module_state(module, context.checkpoint, f"run '{context.run_id}' checkpoint")
    module.eval()
    chosen = module.thresholds.double()  # reported; compared in float32, as in the test
    thresholds = chosen.float()
    names = list(info.label_names) or [str(c) for c in range(info.num_classes)]
    binary = info.num_classes == 2
    scale = 255 if binary else 1

    def predict(batch: dict[str, Any]) -> Predicted:
        rows, files = [], {}
        for image, size, sample, stem in zip(batch["image"], batch["size"],
                                              batch["sample_id"], batch["stem"], strict=True):
            probs = module.predictions(module.whole(image[None].to(module.device)))
            if tuple(probs.shape[2:]) != tuple(size):  # data.resize: back to the file's size
                probs = torch.nn.functional.interpolate(probs, size=tuple(size),
                                                        mode="bilinear", align_corners=False)
            probs = probs[0].cpu()
            mask = class_mask(probs, thresholds)
            paths = {"mask": f"{context.folder}/masks/{stem}.png",
                     "probabilities": f"{context.folder}/probabilities/{stem}.png"}
            files[paths["mask"]] = png((mask.numpy() * scale).astype(np.uint8))
            foreground = probs[1] if binary else 1 - probs[0]
            files[paths["probabilities"]] = png(
                (foreground.clamp(0, 1).numpy() * 255).round().astype(np.uint8))
            row: dict[str, Any] = {"sample_id": sample, **paths}
            row.update({f"fraction_{names[c]}": float((mask == c).float().mean())
                        for c in range(1, info.num_classes)})
            row.update({"threshold": float(chosen[0])} if binary else
                       {f"threshold_{names[c]}": float(chosen[c - 1])
                        for c in range(1, info.num_classes)})
            rows.append(row)
        return Predicted(rows, files)

    return predict
