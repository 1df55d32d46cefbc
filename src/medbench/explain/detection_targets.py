"""Saliency targets of the detection family (imported by ``targets_for``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget
from torch import nn
from torchvision.ops import box_iou

from medbench.data.base import DatasetInfo
from medbench.errors import ConfigError
from medbench.explain.targets import SaliencyTargets, register_targets


def fpn_levels(x: Any) -> torch.Tensor:
    """A dict of FPN levels (N, C, h, w) as one feature map: each level resized (bilinear) to
    the finest level's size and the levels' channels concatenated (N, levels x C, h0, w0). The
    package's ``fasterrcnn_reshape_transform`` resizes to the coarsest level ('pool', stride
    64: 2x2 positions on a 96 px image) and takes absolute values, gradients too (Grad-CAM's
    channel weights then never negative): neither is kept. A tensor passes unchanged."""
    if torch.is_tensor(x):
        return x
    levels = list(x.values())
    size = max((v.shape[-2:] for v in levels), key=lambda s: s[0] * s[1])
    return torch.cat([torch.nn.functional.interpolate(v, size, mode="bilinear",
                                                      align_corners=False)
                      if v.shape[-2:] != size else v for v in levels], 1)


class BoxScoreTarget(FasterRCNNBoxScoreTarget):
    """The package's box-score target (per explained box, IoU + score of the output box that
    best overlaps it, if over ``iou_threshold`` and of its class; summed), kept in the graph
    when nothing matches (the package's 0 has no gradient, and a batch of such items would
    fail the backward pass): a map of no match is all zero."""

    def __call__(self, model_outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        score = super().__call__(model_outputs)
        return score + 0 * model_outputs["scores"].sum()


class MatchedBoxScore:
    """The mean, over the explained boxes, of the score of the output box of their class that
    best overlaps them at IoU >= ``iou`` (0 when none: the box lost); 0 with no box."""

    def __init__(self, labels: torch.Tensor, boxes: torch.Tensor, iou: float = 0.5) -> None:
        self.labels, self.boxes, self.iou = labels, boxes, iou

    def __call__(self, output: dict[str, torch.Tensor]) -> torch.Tensor:
        boxes = output["boxes"]
        if len(self.boxes) == 0 or len(boxes) == 0:
            return torch.zeros((), device=boxes.device)
        overlaps = box_iou(self.boxes.to(boxes), boxes)
        same = self.labels.to(boxes.device)[:, None] == output["labels"][None, :]
        overlaps = torch.where(same, overlaps, torch.zeros_like(overlaps))
        best, index = overlaps.max(1)
        return torch.where(best >= self.iou, output["scores"][index],
                           torch.zeros_like(best)).mean()


@register_targets("detection")
class DetectionTargets(SaliencyTargets):
    """Per image, with torchvision's Faster R-CNN, RetinaNet or FCOS (outputs: a list of
    ``{"boxes", "scores", "labels"}``, labels 1..K, the data's 0..K-1 shifted):

    - predicted: its detections scoring at least the run's threshold (the one its selected
      checkpoint chose on validation, highest F1; 0.5 when the checkpoint holds none); an
      image with none: its single best detection (whatever its score), so that its map
      explains something; one with no detection at all: no box;
    - confidence: the mean score of its predicted detections (0 when none passed the
      threshold); ``detections``: how many passed;
    - worst: the lowest F1 at IoU 0.5 (same class, greedy: the family's matcher) against the
      reference boxes at the threshold (``true_score``; an image with no reference box and no
      detection: 1, never the worst);
    - maps: of the package's ``FasterRCNNBoxScoreTarget`` over the predicted boxes (for each,
      IoU + score of the output box of its class overlapping it most, over IoU 0.5; summed);
    - faithfulness: the mean score the image times its map keeps for the predicted boxes
      (:class:`MatchedBoxScore`: 0 for a box lost), minus the image's own.

    Target layer: the ``backbone`` (the package's Faster R-CNN tutorial), whose output is the
    FPN's dict of levels, made one map by :func:`fpn_levels` (a tensor layer named in
    ``explain.target_layer``, e.g. ``backbone.body.layer3``, is taken as it is). Maps are of
    the image as given (the detector resizes it inside; the maps of its features are resized
    back), overlays of the image's size with the predicted boxes drawn.

    Methods: Grad-CAM and Grad-CAM++ only. Score-CAM and Ablation-CAM score one perturbed
    input per channel of the target layer (4 FPN levels x 256 = 1024 detector passes per
    image): refused.

    Randomisation check: the randomised networks' maps are of the trained network's boxes.
    Where a randomised detector outputs no box of the right class over IoU 0.5 of one (often
    so for FCOS; seldom for Faster R-CNN, whose near-uniform scores over 100 boxes still
    match some), its map is all zero (``constant_maps`` per stage) and rank-correlates 0 with
    the trained one: then the correlation says only that the map depends on the weights, not
    how alike the maps look. An item whose trained map is constant (no detection at all)
    correlates 1 with a constant randomised map. RetinaNet and FCOS take the same targets
    (their background index dropped); checked on short runs only."""

    methods = ("gradcam", "gradcam_pp")
    methods_note = ("the gradient-free methods score one perturbed input per channel of the "
                    "target layer, i.e. 1024 detector passes per image on an FPN")
    iou = 0.5

    def __init__(self) -> None:
        self.threshold = 0.5

    def use_checkpoint(self, path: str | Path | None) -> None:
        if path is None:
            return
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # load_pretrained reports an unloadable file
            return
        value = (state.get("state_dict") or {}).get("score_threshold") \
            if isinstance(state, dict) else None
        if torch.is_tensor(value) and value.numel() == 1:
            self.threshold = float(value)

    def check_network(self, net: nn.Module) -> None:
        from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet

        if not isinstance(net, (FasterRCNN, RetinaNet, FCOS)):
            raise ConfigError(f"explain: saliency maps of detection runs need a torchvision "
                              f"Faster R-CNN, RetinaNet or FCOS, not {type(net).__name__}")

    def outputs(self, net: nn.Module, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [{k: p[k].detach().cpu() for k in ("boxes", "scores", "labels")}
                for p in net(images)]

    def default_layer(self, net: nn.Module) -> str | None:
        return "backbone"

    def reshape_transform(self, net: nn.Module) -> Callable | None:
        return fpn_levels

    def kept(self, output: dict[str, torch.Tensor]) -> torch.Tensor:
        """Which detections pass the threshold (the background index never does)."""
        return (output["scores"] >= self.threshold) & (output["labels"] > 0)

    def scores(self, outputs: list[dict[str, torch.Tensor]], targets: list[dict[str, Any]],
               info: DatasetInfo) -> dict[str, torch.Tensor]:
        from medbench.metrics.detection import match_image, per_image

        confidence, f1, count = [], [], []
        for output, target in zip(outputs, targets, strict=True):
            kept = self.kept(output)
            match = match_image(output["boxes"][kept], output["scores"][kept],
                                output["labels"][kept] - 1, target["boxes"],
                                target["labels"], self.iou)
            value = float(per_image([match], self.threshold)["f1"][0])
            f1.append(1.0 if value != value else value)  # NaN: nothing to find, none found
            confidence.append(float(output["scores"][kept].mean()) if kept.any() else 0.0)
            count.append(int(kept.sum()))
        return {"confidence": torch.tensor(confidence), "true_score": torch.tensor(f1),
                "detections": torch.tensor(count)}

    def predicted(self, outputs: list[dict[str, torch.Tensor]],
                  targets: Any) -> list[dict[str, torch.Tensor]]:
        out = []
        for output in outputs:
            kept = self.kept(output)
            if not kept.any():
                kept = torch.zeros_like(kept)
                foreground = (output["labels"] > 0).nonzero().flatten()
                if len(foreground):
                    kept[foreground[output["scores"][foreground].argmax()]] = True
            out.append({"boxes": output["boxes"][kept].cpu(),
                        "labels": output["labels"][kept].cpu()})
        return out

    def map_targets(self, predicted: list[dict[str, torch.Tensor]]) -> list[Callable]:
        return [BoxScoreTarget(p["labels"], p["boxes"], self.iou) for p in predicted]

    def faithfulness_targets(self, predicted: list[dict[str, torch.Tensor]]) -> list[Callable]:
        return [MatchedBoxScore(p["labels"], p["boxes"], self.iou) for p in predicted]

    def annotate(self, picture: np.ndarray, predicted: list[dict[str, torch.Tensor]],
                 item: int) -> np.ndarray:
        from PIL import Image, ImageDraw

        image = Image.fromarray(picture)
        draw = ImageDraw.Draw(image)
        for box in predicted[item]["boxes"].tolist():
            draw.rectangle(box, outline=(255, 255, 255), width=2)
        return np.asarray(image)
