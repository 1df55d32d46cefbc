"""Segmentation speed on DRIVE, side by side in one run: medbench against plain PyTorch.

    python benchmark/segmentation_speed.py --reps 3   # -> results/perf/segmentation_speed.md

U-Net (ResNet-18 encoder, random init, the `drive_unet` preset) on the real DRIVE images:
1. Training throughput in patches/s: `medbench train` (Lightning loop, seeded patch sampler,
   augmentation, MLflow) against a plain loop, paired step by step inside the same run: after
   each of medbench's training steps one plain step (forward, MONAI DiceCE loss, backward,
   Adam) of a copy of the network on the same batch, so background load cancels out of the
   ratio (medbench's own time is the training window less the plain steps).
2. Whole-image inference of one 565x584 test image: medbench's `SegmentationModule.whole`
   (MONAI `sliding_window_inference`, Gaussian blending) against a plain loop over the same
   64x64 windows (same overlap and window batch, uniform averaging), alternated.
3. Metric time over the 20 test images: in-FOV pixel metrics (histograms, thresholds, AUC),
   and HD95 plus ASD (MONAI), from fixed probability maps.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).parent))
from overhead import EpochTimer, _stats  # noqa: E402  (the classification benchmark's timer)

from medbench.config import REPO_ROOT, compose_config  # noqa: E402
from medbench.provenance import describe_machine, machine_tags  # noqa: E402
from medbench.train import build_datamodule, train_run  # noqa: E402

OUTPUT = REPO_ROOT / "results" / "perf" / "segmentation_speed.md"


class PairedPlainStep(EpochTimer):
    """After each medbench training step, one plain step of a network copy on that batch."""

    def __init__(self) -> None:
        super().__init__()
        self.plain_seconds, self._net = 0.0, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._net is None:
            self._net = copy.deepcopy(pl_module.net)
            self._optimizer = torch.optim.Adam(self._net.parameters(), lr=1e-3)
            self._loss = copy.deepcopy(pl_module.criterion)
        start = time.perf_counter()
        images = batch["image"].contiguous(memory_format=torch.channels_last)
        loss = self._loss(self._net(images), batch["target"]["mask"][:, None])
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._optimizer.step()
        self.plain_seconds += time.perf_counter() - start
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


PATCHES_PER_IMAGE = [32]  # the preset's; --patches-per-image changes it


def _overrides(results: Path, epochs: int) -> list[str]:
    return ["experiment=drive_unet", f"trainer.max_epochs={epochs}", "name=speed",
            f"data.patches_per_image={PATCHES_PER_IMAGE[0]}",
            "trainer.enable_progress_bar=false", f"paths.results_dir={results}",
            "data.max_images={train: 16, test: 2}", "+trainer.limit_val_batches=1"]


def training(epochs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        paired = PairedPlainStep()
        train_run(compose_config(_overrides(Path(tmp), epochs)), callbacks=[paired])
    window = sum(paired.train_seconds)
    ours = window - paired.plain_seconds
    return {"ratio": ours / paired.plain_seconds, "ours_pps": paired.images / ours,
            "plain_pps": paired.images / paired.plain_seconds}


def plain_sliding_window(net: torch.nn.Module, image: torch.Tensor, window: tuple[int, int],
                         overlap: float, batch: int) -> torch.Tensor:
    """The same windows as MONAI's, logits averaged uniformly: the plain PyTorch floor."""
    _, _, height, width = image.shape
    steps = [max(1, int(w * (1 - overlap))) for w in window]
    tops = sorted({min(t, height - window[0]) for t in range(0, height, steps[0])})
    lefts = sorted({min(x, width - window[1]) for x in range(0, width, steps[1])})
    corners = [(t, x) for t in tops for x in lefts]
    total = count = None
    for i in range(0, len(corners), batch):
        chunk = corners[i:i + batch]
        tiles = torch.cat([image[..., t:t + window[0], x:x + window[1]] for t, x in chunk])
        logits = net(tiles)
        if total is None:
            total = image.new_zeros((1, logits.shape[1], height, width))
            count = image.new_zeros((1, 1, height, width))
        for (t, x), tile in zip(chunk, logits, strict=True):
            total[..., t:t + window[0], x:x + window[1]] += tile
            count[..., t:t + window[0], x:x + window[1]] += 1
    return total / count


def inference(reps: int) -> dict[str, list[float]]:
    from monai.inferers import sliding_window_inference

    from medbench.family import get_family
    from medbench.models import create_model

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(_overrides(Path(tmp), 1))
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    image = next(iter(datamodule.test_dataloader()))["image"][:1]
    net = create_model("unet", 3, 2).eval()
    module = get_family("segmentation").build_module(cfg, net, datamodule).eval()
    times: dict[str, list[float]] = {"medbench": [], "plain": [], "constant": []}
    with torch.no_grad():
        for _ in range(reps):
            start = time.perf_counter()
            module.whole(image)
            times["medbench"].append(time.perf_counter() - start)
            start = time.perf_counter()
            sliding_window_inference(image, module.window, module.window_batch, net,
                                     overlap=module.overlap, mode="constant")
            times["constant"].append(time.perf_counter() - start)
            start = time.perf_counter()
            plain_sliding_window(net, image, module.window, module.overlap, module.window_batch)
            times["plain"].append(time.perf_counter() - start)
    times["shape"] = list(image.shape[2:])
    return times


def metric_time() -> dict[str, float]:
    from medbench.metrics.segmentation import FovPixelMetrics
    from medbench.tasks.segmentation.module import surface_distances

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config([*_overrides(Path(tmp), 1), "data.max_images=null"])
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    batches = list(datamodule.test_dataloader())
    generator = torch.Generator().manual_seed(0)
    scored, start, distances = FovPixelMetrics(2), time.perf_counter(), 0.0
    for batch in batches:
        mask, fov = batch["target"]["mask"], batch["target"]["fov"]
        p = (0.6 * mask + 0.4 * torch.rand(mask.shape, generator=generator)).clamp(0, 1)
        probs = torch.stack([1 - p, p], 1)
        scored.update(probs, mask, fov)
        begin = time.perf_counter()
        surface_distances(probs, mask, fov, torch.tensor([0.5]))
        distances += time.perf_counter() - begin
    scored.results()
    images = sum(len(b["index"]) for b in batches)
    return {"images": images, "pixel_s": time.perf_counter() - start - distances,
            "distance_s": distances}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1,
                        help="training epochs per repetition (16 images x the patches below)")
    parser.add_argument("--patches-per-image", type=int, default=PATCHES_PER_IMAGE[0])
    args = parser.parse_args()
    PATCHES_PER_IMAGE[0] = args.patches_per_image
    pl.seed_everything(0, verbose=False)
    train = [training(args.epochs) for _ in range(args.reps)]
    infer = inference(args.reps)
    metrics = metric_time()
    ratio = [a / b for a, b in zip(infer["medbench"], infer["plain"], strict=True)]
    lines = [
        "# Segmentation speed on DRIVE: medbench vs plain PyTorch", "",
        f"Machine: {describe_machine(machine_tags())}, Lightning {pl.__version__}. U-Net "
        "(ResNet-18 encoder, random init), 64x64 patches, batch 32 (`drive_unet`).",
        f"Command: `python benchmark/segmentation_speed.py --reps {args.reps} --epochs "
        f"{args.epochs} --patches-per-image {args.patches_per_image}`.", "",
        "| measure | medbench | plain PyTorch | ratio medbench / plain |", "|---|---|---|---|",
        f"| training, patches/s (paired step by step, {args.reps} runs) | "
        f"{_stats([t['ours_pps'] for t in train], 1)} | "
        f"{_stats([t['plain_pps'] for t in train], 1)} | "
        f"{_stats([t['ratio'] for t in train])} |",
        f"| whole-image inference of one {infer['shape'][1]}x{infer['shape'][0]} image, s "
        f"({args.reps} alternated) | {_stats(infer['medbench'])} | {_stats(infer['plain'])} "
        f"| {_stats(ratio)} |",
        f"| the same, MONAI with uniform (constant) blending, s | {_stats(infer['constant'])} "
        f"| {_stats(infer['plain'])} | "
        f"{_stats([a / b for a, b in zip(infer['constant'], infer['plain'], strict=True)])} |",
        "",
        f"Metric time over the {metrics['images']} test images (fixed probability maps): "
        f"in-FOV pixel metrics {metrics['pixel_s']:.2f} s, HD95 + ASD "
        f"{metrics['distance_s']:.2f} s.", "",
        "The training ratio counts medbench's whole training window (patch sampling and "
        "augmentation in the loader, the Lightning step, logging) against the plain step "
        "alone on the same batch. Inference: medbench blends windows with Gaussian weights "
        "(MONAI), the plain loop averages them uniformly.",
    ]
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
