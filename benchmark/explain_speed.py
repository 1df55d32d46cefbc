"""Seconds per explained image, per saliency method, on real BreastMNIST test images.

    python benchmark/explain_speed.py --reps 3   # -> results/perf/explain_speed.md

For each model (random init, seed 0: a map's cost does not depend on the weights' values) a
batch of test images is explained at the layer `medbench explain` picks (the last module with
a spatial feature map), each method timed alone (the map), then with what `medbench explain`
adds per image: the randomisation check (its cascade stages, a map each) and the faithfulness
score (two forward passes). Medians of `--reps` repetitions.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from medbench.config import REPO_ROOT, compose_config
from medbench.explain.saliency import saliency_maps, target_layer_name
from medbench.explain.sanity import cascading_randomisation, confidence_change
from medbench.explain.targets import targets_for
from medbench.family import family_of
from medbench.provenance import describe_machine, machine_tags
from medbench.train import build_datamodule, build_model

OUTPUT = REPO_ROOT / "results" / "perf" / "explain_speed.md"
METHODS = ("gradcam", "gradcam_pp", "scorecam", "ablationcam")
# (model, input side, images per batch)
MODELS = (("lenet5", 28, 8), ("resnet18_28", 28, 2), ("resnet18", 224, 1))


def timed(function, reps: int) -> tuple[float, object]:
    """The median seconds of ``reps`` calls, and what the last returned."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def measure(model: str, side: int, count: int, reps: int, stages: int) -> dict[str, tuple]:
    overrides = ["data=breastmnist", f"model={model}", "seed=0"]
    if side != 28:
        overrides.append(f"data.resize={side}")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config([*overrides, f"paths.results_dir={tmp}"])
    torch.manual_seed(0)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    family = family_of(cfg)
    net = build_model(cfg, family, datamodule).eval()
    images = next(iter(datamodule.test_dataloader()))["image"][:count]
    layer = target_layer_name(net, images[:1])
    targets = targets_for(family.name)
    with torch.no_grad():
        predicted = net(images).argmax(1)
    map_targets = targets.map_targets(predicted)
    saliency_maps(net, "gradcam", layer, images, map_targets)  # warm-up: allocator, hooks
    out = {}
    for method in METHODS:
        def maps_of(model, m=method):
            return saliency_maps(model, m, layer, images, map_targets)
        alone, saliency = timed(lambda: maps_of(net), reps)

        def explained(m=method, s=saliency):
            cascading_randomisation(net, lambda model: maps_of(model, m), s, stages)
            confidence_change(net, images, s, targets.faithfulness_targets(predicted))
        out[method] = (alone / count, (alone + timed(explained, reps)[0]) / count)
    out["layer"] = (layer,)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--stages", type=int, default=3, help="explain.sanity_stages")
    parser.add_argument("--skip-224", action="store_true", help="the 28 px models only")
    args = parser.parse_args()
    rows = []
    for model, side, count in MODELS:
        if args.skip_224 and side != 28:
            continue
        figures = measure(model, side, count, args.reps, args.stages)
        for method in METHODS:
            alone, explained = figures[method]
            rows.append(f"| {model} | {side} | `{figures['layer'][0]}` | {method} | {count} | "
                        f"{alone:.4f} | {explained:.4f} |")
        print(rows[-len(METHODS):], flush=True)
    lines = [
        "# Saliency cost: seconds per explained image", "",
        f"Machine: {describe_machine(machine_tags())} (OMP_NUM_THREADS="
        f"{torch.get_num_threads()}), grad-cam (pytorch_grad_cam). Real BreastMNIST test "
        "images (224 px: resized), random init, CPU.",
        f"Command: `python benchmark/explain_speed.py --reps {args.reps} --stages "
        f"{args.stages}{' --skip-224' if args.skip_224 else ''}`.", "",
        "| model | px | target layer | method | images per batch | s/image (map) | s/image "
        f"(map + sanity check, {args.stages} cascade stages, + faithfulness) |",
        "|---|---|---|---|---|---|---|", *rows, "",
        "Score-CAM and Ablation-CAM run one forward pass per channel of the target layer (64 "
        "per batch; 512 channels for the ResNets' `layer4`, 16 for LeNet-5's last map); "
        "Grad-CAM and Grad-CAM++ one forward and one backward pass per batch. "
        "The sanity check recomputes the maps once per cascade stage on a re-initialised copy.",
    ]
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
