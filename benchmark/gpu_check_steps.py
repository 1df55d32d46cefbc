"""The measuring steps of ``benchmark/gpu_check.py`` (amp, loader) and what its steps share.
Torch and medbench are imported inside the functions: the report imports this module without
them."""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))  # medbench importable without `pip install -e .`
NVIDIA_SMI = os.environ.get("NVIDIA_SMI", "nvidia-smi")
PRECISIONS = ("fp32", "bf16", "fp16")


class NoGpu(RuntimeError):
    """CUDA was asked for and torch sees no device."""


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def plan(tiny: bool) -> dict[str, Any]:
    """Sizes of each step: the GPU's, or tiny ones for the CPU smoke mode."""
    if tiny:
        return {"resnet50": (32, 2), "unet": (64, 2), "warmup": 1, "steps": 2,
                "loader": {"resize": 32, "batch": 8, "batches": 3, "warmup": 1},
                "workers": [0, 2], "ddp_batches": 2}
    return {"resnet50": (224, 128), "unet": (512, 16), "warmup": 5, "steps": 20,
            "loader": {"resize": 224, "batch": 128, "batches": 60, "warmup": 10},
            "workers": [0, 8], "ddp_batches": 4}


def data_root() -> Path | None:
    """The first folder holding medmnist/breastmnist.npz: $MEDBENCH_DATA_DIR, the checkout's
    sibling shared/data, its own shared/data, results/cache/gpu_data (a carried copy)."""
    for place in (os.environ.get("MEDBENCH_DATA_DIR"), REPO.parent / "shared" / "data",
                  REPO / "shared" / "data", REPO / "results" / "cache" / "gpu_data"):
        if place and (Path(place) / "medmnist" / "breastmnist.npz").is_file():
            return Path(place)
    return None


def require_data_root() -> Path:
    """:func:`data_root`, exported as $MEDBENCH_DATA_DIR; an error naming the places read."""
    root = data_root()
    if root is None:
        raise FileNotFoundError("no medmnist/breastmnist.npz under $MEDBENCH_DATA_DIR, "
                                "../shared/data, shared/data or results/cache/gpu_data")
    os.environ["MEDBENCH_DATA_DIR"] = str(root)
    return root


def nvidia_smi(query: str, *extra: str) -> list[list[str]]:
    """Rows of a read-only ``nvidia-smi --query-gpu`` (csv, no header)."""
    cmd = [NVIDIA_SMI, f"--query-gpu={query}", "--format=csv,noheader,nounits", *extra]
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout
    return [[cell.strip() for cell in line.split(",")] for line in text.splitlines() if line]


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device, dtype=dtype)


def time_training(net: Any, images: Any, target: Any, device: str, precision: str,
                  warmup: int, steps: int) -> dict[str, float]:
    """Images/s of ``steps`` Adam training steps after ``warmup`` ones (synchronised)."""
    import torch

    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16")
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        with autocast(device, precision):
            loss = loss_fn(net(images), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = time.perf_counter() - start
    return {"images_per_s": round(steps * len(images) / seconds, 1),
            "step_ms": round(1000 * seconds / steps, 2)}


def amp_step(args: argparse.Namespace) -> dict[str, Any]:
    """ResNet-50 and U-Net training throughput in fp32 (the plain loop), bf16 and fp16."""
    import torch

    from medbench.models import create_model

    sizes, device = plan(args.tiny), args.device
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # this process's choice, not a GPU setting
    rows = []
    for name, classes in (("resnet50", 1000), ("unet", 2)):
        size, batch = sizes[name]
        for precision in PRECISIONS:
            row: dict[str, Any] = {"model": name, "size": size, "batch": batch,
                                   "precision": precision}
            rows.append(row)
            if precision == "fp16" and device == "cpu":
                row["skipped"] = "fp16 autocast + GradScaler is a CUDA path: not run on CPU"
                continue
            if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
                row["skipped"] = "this GPU has no bf16"
                continue
            try:
                torch.manual_seed(0)
                net = create_model(name, in_chans=3, num_classes=classes).to(
                    device, memory_format=torch.channels_last)
                images = torch.randn(batch, 3, size, size, device=device).contiguous(
                    memory_format=torch.channels_last)
                shape = (batch,) if name == "resnet50" else (batch, size, size)
                target = torch.randint(0, classes, shape, device=device)
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                row.update(time_training(net, images, target, device, precision,
                                         sizes["warmup"], args.steps or sizes["steps"]))
                if device == "cuda":
                    row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            except Exception as err:  # an OOM or a kernel error: this row only
                row["error"] = one_line(err)
            finally:
                net = images = target = None
                if device == "cuda":
                    torch.cuda.empty_cache()
        base = next((r for r in rows[-3:] if r["precision"] == "fp32" and "images_per_s" in r),
                    None)
        for row in rows[-3:]:
            if base and "images_per_s" in row:
                row["vs_fp32"] = round(row["images_per_s"] / base["images_per_s"], 2)
    return {"rows": rows, "warmup": sizes["warmup"], "steps": args.steps or sizes["steps"],
            "optimizer": "Adam", "memory_format": "channels_last",
            "cudnn_benchmark": device == "cuda"}


class UtilSampler:
    """Samples GPU utilisation (%) every ``interval`` s in a thread: ``torch.cuda.utilization``
    (needs pynvml), else ``nvidia-smi``; on CPU this process's CPU use (the same code path)."""

    def __init__(self, device: str, interval: float = 0.2) -> None:
        self.interval, self.samples, self.error = interval, [], ""
        self._stop = threading.Event()
        self.source, self.read = self._probe(device)
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _probe(device: str) -> tuple[str, Callable[[], float]]:
        if device == "cpu":
            last = [time.process_time(), time.perf_counter()]

            def cpu() -> float:
                now = [time.process_time(), time.perf_counter()]
                busy = (now[0] - last[0]) / max(now[1] - last[1], 1e-9)
                last[:] = now
                return 100 * busy

            return "process CPU % (no GPU)", cpu
        import torch

        try:
            torch.cuda.utilization()
            return "torch.cuda.utilization (pynvml)", lambda: float(torch.cuda.utilization())
        except Exception:  # no pynvml: poll nvidia-smi for the visible GPU
            index = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0]
            return "nvidia-smi", lambda: float(nvidia_smi("utilization.gpu", "-i", index)[0][0])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.read())
            except Exception as err:  # MIG, a driver hiccup: reported when nothing was read
                self.error = one_line(err)
            self._stop.wait(self.interval)

    def __enter__(self) -> UtilSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"util_source": self.source, "util_samples": 0, "util_error": self.error}
        return {"util_source": self.source, "util_samples": len(self.samples),
                "util_mean": round(statistics.fmean(self.samples), 1),
                "util_median": round(statistics.median(self.samples), 1)}


def endless(loader: Any) -> Iterator[dict[str, Any]]:
    """The loader's batches, epoch after epoch."""
    while True:
        yield from loader


def train_batches(net: Any, optimizer: Any, stream: Iterator[dict[str, Any]], count: int,
                  device: str, precision: str) -> tuple[int, float]:
    """``count`` training steps on ``stream``'s batches: images seen, seconds waited for them."""
    import torch

    images, waited = 0, 0.0
    for _ in range(count):
        before = time.perf_counter()
        batch = next(stream)
        waited += time.perf_counter() - before
        x = batch["image"].to(device, non_blocking=True).contiguous(
            memory_format=torch.channels_last)
        with autocast(device, precision):
            loss = torch.nn.functional.cross_entropy(net(x), batch["target"].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        images += len(x)
    return images, waited


def loader_step(args: argparse.Namespace) -> dict[str, Any]:
    """ResNet-18 trained on batches of medbench's real train DataLoader (PneumoniaMNIST, else
    BreastMNIST, resized, ``augment=basic``) for each worker count, utilisation sampled."""
    import torch
    from omegaconf import OmegaConf

    from medbench.config import compose_config
    from medbench.data import DATAMODULES
    from medbench.models import create_model

    root, sizes, device = require_data_root(), plan(args.tiny), args.device
    flag = ("pneumoniamnist" if (root / "medmnist" / "pneumoniamnist.npz").is_file()
            else "breastmnist")
    opts, precision = sizes["loader"], "bf16" if device == "cuda" else "fp32"
    rows = []
    for workers in args.workers or sizes["workers"]:
        row: dict[str, Any] = {"num_workers": workers}
        rows.append(row)
        try:
            cfg = compose_config([f"data={flag}", f"data.resize={opts['resize']}",
                                  "augment=basic", f"data.num_workers={workers}",
                                  f"data.batch_size={opts['batch']}"])
            options = OmegaConf.to_container(cfg.data, resolve=True)
            builder = DATAMODULES.get(options.pop("source")).builder
            options.pop("family", None)
            datamodule = builder(**options, augment=OmegaConf.to_container(cfg.augment), seed=0)
            loader = datamodule.train_dataloader()
            info = datamodule.info
            torch.manual_seed(0)
            net = create_model("resnet18", in_chans=info.in_chans,
                               num_classes=info.num_classes).to(
                device, memory_format=torch.channels_last)
            optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

            stream = endless(loader)
            train_batches(net, optimizer, stream, opts["warmup"], device, precision)
            sync(device)  # workers started, kernels picked: time from here
            with UtilSampler(device) as sampler:
                start = time.perf_counter()
                images, waited = train_batches(net, optimizer, stream, opts["batches"], device,
                                               precision)
                sync(device)
                seconds = time.perf_counter() - start
            row.update(images_per_s=round(images / seconds, 1),
                       loader_wait_fraction=round(waited / seconds, 3), **sampler.summary())
            stream = loader = None  # its workers end before the next count's start
        except Exception as err:
            row["error"] = one_line(err)
    return {"rows": rows, "dataset": flag, "resize": opts["resize"], "batch": opts["batch"],
            "batches": opts["batches"], "precision": precision, "model": "resnet18",
            "augment": "basic"}
