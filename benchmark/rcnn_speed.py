"""Seconds per BCCD test image, R-CNN against Faster R-CNN, side by side in one process.

    OMP_NUM_THREADS=1 python benchmark/rcnn_speed.py --images 24

Alternating image by image (so background load falls on both alike), on BCCD's real test
images, batch 1, CPU:
- Faster R-CNN: the `bccd_fasterrcnn` preset at min_size 192 / max_size 256 (the run measured
  in results/bccd_rcnn.md), eval mode, one forward pass (resize, backbone, RPN, heads, NMS).
- R-CNN: the `bccd_rcnn` preset's inference: selective search computed afresh (no cache),
  warping of every proposal, the CNN, the per-class SVMs, box regression and NMS.
Both networks are random init and R-CNN's SVM and regression weights random of the trained
shapes: the time of these stages does not depend on the weights, except the detectors'
post-processing, which receives every box above Faster R-CNN's 0.01 score floor (an upper
bound for it) and R-CNN's whole proposal set in either case.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from medbench.config import compose_config
from medbench.family import family_of
from medbench.provenance import describe_machine, machine_tags
from medbench.tasks.detection.rcnn import features, penultimate
from medbench.tasks.detection.rcnn_heads import RcnnHeads
from medbench.tasks.detection.rcnn_regions import search_image, warp
from medbench.tasks.detection.selective_search import selective_search
from medbench.train import build_datamodule, build_model


def _model(overrides: list[str]):
    cfg = compose_config(overrides)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    return cfg, datamodule, build_model(cfg, family_of(cfg), datamodule).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24, help="test images timed")
    args = parser.parse_args()
    torch.manual_seed(0)
    limit = f"data.max_images={{train: 1, val: 1, test: {args.images}}}"
    _, datamodule, faster = _model(["experiment=bccd_fasterrcnn", limit,
                                    "model.kwargs.min_size=192", "model.kwargs.max_size=256"])
    cfg, _, cnn = _model(["experiment=bccd_rcnn", limit])
    run = cfg.runner
    k, dim = datamodule.info.num_classes, penultimate(cnn).in_features
    rng = np.random.default_rng(0)
    heads = RcnnHeads(rng.standard_normal((k, dim)).astype(np.float32),
                      np.zeros(k, np.float32),
                      0.01 * rng.standard_normal((k, 4, dim)).astype(np.float32),
                      np.zeros((k, 4), np.float32), 1.0)
    options = {key: list(v) if not isinstance(v, int | float | str) else v
               for key, v in run.proposals.items()}
    times: dict[str, list[float]] = {"faster": [], "search": [], "rest": []}
    with torch.no_grad():
        for batch in datamodule.eval_dataloader("test"):
            for image in batch["image"]:
                start = time.perf_counter()
                faster([image])
                times["faster"].append(time.perf_counter() - start)
                start = time.perf_counter()
                boxes = torch.as_tensor(selective_search(search_image(image), **options))
                times["search"].append(time.perf_counter() - start)
                start = time.perf_counter()
                feats = features(cnn, warp(image, boxes, run.warp.size, run.warp.context),
                                 run.feature_batch)
                heads.detect(feats, boxes, tuple(image.shape[-2:]), run.nms_iou,
                             run.detections_per_image)
                times["rest"].append(time.perf_counter() - start)
    rcnn = [s + r for s, r in zip(times["search"], times["rest"], strict=True)]
    machine = describe_machine(machine_tags("cpu"))
    print(f"machine: {machine}; {len(rcnn)} BCCD "
          "test images, batch 1, alternated")
    print("| detector | s / image (median) | mean |\n|---|---|---|")
    for name, values in (("Faster R-CNN (ResNet-18 FPN, 192/256 px)", times["faster"]),
                         ("R-CNN: selective search", times["search"]),
                         ("R-CNN: warp + CNN + SVMs + regression + NMS", times["rest"]),
                         ("R-CNN: total", rcnn)):
        print(f"| {name} | {statistics.median(values):.3f} | {statistics.mean(values):.3f} |")
    print(f"R-CNN / Faster R-CNN (medians): "
          f"{statistics.median(rcnn) / statistics.median(times['faster']):.1f}x")


if __name__ == "__main__":
    main()
