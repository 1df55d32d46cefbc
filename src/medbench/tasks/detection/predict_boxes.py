"""`medbench predict` for detection runs: the detector's boxes of new images at the score
threshold the selected checkpoint's validation chose (the test's), in the files' own pixels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from medbench.errors import ConfigError
from medbench.family import Family, PredictContext, Predicted
from medbench.tasks.module import load_module_state

BOX_COLUMNS = ("label", "score", "x1", "y1", "x2", "y2")


def box_predictor(family: Family, context: PredictContext) -> Callable[[dict[str, Any]],
                                                                         Predicted]:
    """A row per kept box (``label``: the class name, ``score``, ``x1, y1, x2, y2`` in the
    file's pixels: the pipeline's resize undone), in the detector's order; a file without
    one gets a row with those fields empty, so every file appears."""
    runner = str(context.cfg.runner.get("name") or "lightning")
    if runner != "lightning":
        raise ConfigError(f"medbench predict: run '{context.run_id}' was fitted by runner "
                          f"'{runner}'; predict takes detection runs of the lightning runner "
                          "(torchvision detectors)")
    module = family.build_module(context.cfg, context.net, context.datamodule)
    load_module_state(module, context.checkpoint, f"run '{context.run_id}' checkpoint")
    module.eval()
    threshold = float(module.score_threshold)
    names = list(context.datamodule.info.label_names)

    def predict(batch: dict[str, Any]) -> Predicted:
        images = [image.to(module.device) for image in batch["image"]]
        rows: list[dict[str, Any]] = []
        for pred, image, size, sample in zip(module.detect(images), images, batch["size"],
                                             batch["sample_id"], strict=True):
            kept = pred["scores"] >= module.score_threshold  # as the test keeps them
            scale = torch.tensor([size[1] / image.shape[-1], size[0] / image.shape[-2]] * 2)
            boxes = pred["boxes"][kept].cpu().double() * scale
            found = [{"sample_id": sample, "label": names[int(label)], "score": float(score),
                      **dict(zip(BOX_COLUMNS[2:], box.tolist(), strict=True))}
                     for label, score, box in zip(pred["labels"][kept].tolist(),
                                                  pred["scores"][kept].tolist(), boxes,
                                                  strict=True)]
            rows += found or [{"sample_id": sample, **dict.fromkeys(BOX_COLUMNS)}]
        for row in rows:
            row["threshold"] = threshold
        return Predicted(rows)

    return predict
