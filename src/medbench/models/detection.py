"""Object detectors from torchvision: Faster R-CNN (two-stage), RetinaNet and FCOS (one-stage)
on small FPN backbones (ResNet-18/34/50, MobileNetV3), random init: nothing is downloaded
(``weights=None``, ``weights_backbone=None``); ``model.pretrained_path`` loads a local file.

A detector follows torchvision's API: in training ``model(images, targets)`` returns a dict of
losses; in evaluation ``model(images)`` returns per image ``{"boxes", "labels", "scores"}`` in
the input images' pixel coordinates. ``num_classes`` includes the background (index 0; the
detection family shifts the data's class indices by one). The detector resizes every image
(aspect ratio kept) so its short side is ``min_size`` (long side at most ``max_size``); the
anchors (``anchor_sizes`` per feature map, ``aspect_ratios``) are in those resized pixels.
Normalisation is the data's (``data.normalize``): the detector's own is set to the identity.
Batch norm is trained (torchvision freezes it only for pretrained backbones).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone, resnet_fpn_backbone
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from medbench.errors import ConfigError
from medbench.models.registry import register_model

RESNETS = ("resnet18", "resnet34", "resnet50")
MOBILENETS = ("mobilenet_v3_small", "mobilenet_v3_large")


def fpn_backbone(name: str, in_chans: int, returned_layers: Sequence[int] | None,
                 one_stage: bool) -> nn.Module:
    """A randomly initialised FPN backbone with trainable batch norm. One-stage heads get
    P6/P7 levels on top (as torchvision's RetinaNet and FCOS), Faster R-CNN a max-pool level."""
    layers = list(returned_layers) if returned_layers else None
    if name in RESNETS:
        extra = LastLevelP6P7(256, 256) if one_stage else None
        backbone = resnet_fpn_backbone(backbone_name=name, weights=None, trainable_layers=5,
                                       norm_layer=nn.BatchNorm2d, returned_layers=layers,
                                       extra_blocks=extra)
    elif name in MOBILENETS:
        extra = LastLevelP6P7(256, 256) if one_stage else None
        backbone = mobilenet_backbone(backbone_name=name, weights=None, fpn=True,
                                      norm_layer=nn.BatchNorm2d, trainable_layers=6,
                                      returned_layers=layers, extra_blocks=extra)
    else:
        raise ConfigError(f"model.kwargs.backbone: '{name}' is not one of "
                          f"{', '.join(RESNETS + MOBILENETS)}")
    if in_chans != 3:  # the first convolution takes the data's channels
        parent, key, conv = _first_conv(backbone.body)
        setattr(parent, key, nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size,
                                       conv.stride, conv.padding, bias=conv.bias is not None))
    return backbone


def _first_conv(module: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    for name, child in module.named_modules():
        if isinstance(child, nn.Conv2d):
            parent = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
            return parent, name.rpartition(".")[2], child
    raise ConfigError("the backbone has no convolution")  # not reached for known backbones


def _anchors(backbone: nn.Module, in_chans: int, sizes: Sequence[Sequence[int]],
             aspect_ratios: Sequence[float]) -> AnchorGenerator:
    """Anchors per feature map, their count checked against the backbone's maps."""
    backbone.eval()
    with torch.no_grad():
        levels = len(backbone(torch.zeros(1, in_chans, 64, 64)))
    backbone.train()
    if len(sizes) != levels:
        raise ConfigError(f"model.kwargs.anchor_sizes has {len(sizes)} level(s) but the "
                          f"backbone gives {levels} feature maps: give one list of sizes per "
                          "map, e.g. [[16], [32], [64], [128]] for four")
    return AnchorGenerator(tuple(tuple(int(s) for s in level) for level in sizes),
                           (tuple(float(r) for r in aspect_ratios),) * levels)


def _build(cls: type, in_chans: int, num_classes: int, backbone: str,
           returned_layers: Sequence[int] | None, anchor_sizes: Sequence[Sequence[int]],
           aspect_ratios: Sequence[float], min_size: int, max_size: int,
           options: dict[str, Any], anchor_key: str = "anchor_generator") -> nn.Module:
    net = fpn_backbone(backbone, in_chans, returned_layers, one_stage=cls is not FasterRCNN)
    extra: dict[str, Any] = {}
    if anchor_sizes:
        extra[anchor_key] = _anchors(net, in_chans, anchor_sizes, aspect_ratios)
    try:
        return cls(net, num_classes=num_classes, min_size=int(min_size), max_size=int(max_size),
                   image_mean=[0.0] * in_chans, image_std=[1.0] * in_chans, **extra, **options)
    except TypeError as err:
        raise ConfigError(f"model.kwargs: {err}") from None


@register_model(architecture="faster_rcnn", source="torchvision", family="detection",
                min_input_size=32)
def faster_rcnn(in_chans: int, num_classes: int, backbone: str = "resnet18",
                returned_layers: Sequence[int] | None = (2, 3, 4),
                anchor_sizes: Sequence[Sequence[int]] | None = ((16,), (32,), (64,), (128,)),
                aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), min_size: int = 416,
                max_size: int = 555, **options: Any) -> nn.Module:
    """Faster R-CNN (Ren et al. 2015) with an FPN (Lin et al. 2017); ``options`` go to
    torchvision's ``FasterRCNN`` (e.g. ``rpn_post_nms_top_n_train``, ``box_score_thresh``)."""
    return _build(FasterRCNN, in_chans, num_classes, backbone, returned_layers, anchor_sizes,
                  aspect_ratios, min_size, max_size, options, "rpn_anchor_generator")


@register_model(architecture="retinanet", source="torchvision", family="detection",
                min_input_size=32)
def retinanet(in_chans: int, num_classes: int, backbone: str = "resnet18",
              returned_layers: Sequence[int] | None = (2, 3, 4),
              anchor_sizes: Sequence[Sequence[int]] | None = ((16,), (32,), (64,), (128,),
                                                               (256,)),
              aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), min_size: int = 416,
              max_size: int = 555, **options: Any) -> nn.Module:
    """RetinaNet (Lin et al. 2017, focal loss) on P3-P7; ``options`` go to torchvision's
    ``RetinaNet`` (e.g. ``score_thresh``, ``detections_per_img``)."""
    return _build(RetinaNet, in_chans, num_classes, backbone, returned_layers, anchor_sizes,
                  aspect_ratios, min_size, max_size, options)


@register_model(architecture="fcos", source="torchvision", family="detection",
                min_input_size=32)
def fcos(in_chans: int, num_classes: int, backbone: str = "resnet18",
         returned_layers: Sequence[int] | None = (2, 3, 4),
         anchor_sizes: Sequence[Sequence[int]] | None = ((8,), (16,), (32,), (64,), (128,)),
         min_size: int = 416, max_size: int = 555, **options: Any) -> nn.Module:
    """FCOS (Tian et al. 2019), anchor-free, on P3-P7: one location per pixel of each map
    (``anchor_sizes``: one square "anchor" per map, its stride, as torchvision's default);
    ``options`` go to torchvision's ``FCOS`` (e.g. ``center_sampling_radius``)."""
    return _build(FCOS, in_chans, num_classes, backbone, returned_layers, anchor_sizes, (1.0,),
                  min_size, max_size, options)
