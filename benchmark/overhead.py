"""Framework overhead: `medbench train` against a plain PyTorch loop, side by side in one run.

    python benchmark/overhead.py --reps 3     # -> results/perf/overhead.md

For ResNet-18 (28) on the real BreastMNIST at 28 px and resized to 64 px, batch 128, the
machine's default threads, the same training steps are timed
(a) inside `medbench train` (``train_run``: Lightning loop, datamodule, torchmetrics, MLflow),
    as the sum of its epochs' training steps (a timing callback; validation and checkpoints,
    which the plain loop does not do, are reported apart), and
(b) by a plain loop on pre-loaded tensors (forward, loss, backward, Adam step): the floor.
Repetitions alternate (a) and (b); a third run pairs them step by step (after each of
medbench's steps, one plain step of a copy of the network on the same batch), so that load
from other processes, which swings separate runs by more than the overhead sought, cancels
out of the ratio. The report gives median and spread, the ratios (a)/(b), the
whole `train_run` wall time (with validation, test, artifacts), the datamodule's own images/s
with augmentation on (`augment=basic`), and the time spent in MLflow calls.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.nn import functional as F

from medbench.config import REPO_ROOT, compose_config
from medbench.models import create_model
from medbench.provenance import describe_machine, machine_tags
from medbench.tracking import Tracker
from medbench.tracking.mlflow_run import RunLogger
from medbench.train import build_datamodule, train_run

OUTPUT = REPO_ROOT / "results" / "perf" / "overhead.md"
MLFLOW_SECONDS: dict[str, float] = defaultdict(float)


def _timed(owner: type, name: str) -> None:
    """Counts the seconds spent in ``owner.name`` (MLflow calls) into MLFLOW_SECONDS."""
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            MLFLOW_SECONDS[f"{owner.__name__}.{name}"] += time.perf_counter() - start

    setattr(owner, name, wrapper)


for _owner, _names in ((RunLogger, ("log_metrics",)),
                       (Tracker, ("log_params", "log_artifact", "set_tags", "log_metrics"))):
    for _name in _names:
        _timed(_owner, _name)


class EpochTimer(pl.Callback):
    """Per epoch: the training steps (from the epoch's start to its last training batch: data
    loading, steps, per-step hooks and logging) and the rest of the epoch (validation,
    checkpoints, epoch-end logging), which Lightning runs before ``on_train_epoch_end``."""

    def __init__(self) -> None:
        self.train_seconds: list[float] = []
        self.epoch_seconds: list[float] = []
        self.images = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += len(batch["index"])
        self._last_batch = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.train_seconds.append(self._last_batch - self._start)
        self.epoch_seconds.append(time.perf_counter() - self._start)


class PairedFloor(EpochTimer):
    """The floor measured inside the same run: after each of medbench's training steps, one
    plain step (forward, loss, backward, Adam) of a copy of the network on the same batch.
    Both see the machine in the same state, so background load cancels out of their ratio;
    medbench's own time is the epoch's training window less these plain steps."""

    def __init__(self) -> None:
        super().__init__()
        self.plain_seconds = 0.0
        self._net = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._net is None:
            import copy

            self._net = copy.deepcopy(pl_module.net)
            self._optimizer = torch.optim.Adam(self._net.parameters(), lr=1e-3)
        images, labels = batch["image"], batch["target"]
        start = time.perf_counter()
        loss = F.cross_entropy(
            self._net(images.contiguous(memory_format=torch.channels_last)), labels)
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._optimizer.step()
        self.plain_seconds += time.perf_counter() - start
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


def run_paired(size: int, epochs: int) -> float:
    """(a)/(b) with (b) interleaved step by step inside the same training run."""
    with tempfile.TemporaryDirectory() as tmp:
        paired = PairedFloor()
        train_run(compose_config(overrides(size, epochs, Path(tmp))), callbacks=[paired])
    return (sum(paired.train_seconds) - paired.plain_seconds) / paired.plain_seconds


def overrides(size: int, epochs: int, results: Path) -> list[str]:
    return ["experiment=breastmnist_resnet18", f"trainer.max_epochs={epochs}",
            "trainer.enable_progress_bar=false", f"paths.results_dir={results}",
            "name=overhead", *([f"data.resize={size}"] if size != 28 else [])]


def run_medbench(size: int, epochs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(overrides(size, epochs, Path(tmp)))
        timer = EpochTimer()
        MLFLOW_SECONDS.clear()
        start = time.perf_counter()
        train_run(cfg, callbacks=[timer])
        total = time.perf_counter() - start
    per_epoch = MLFLOW_SECONDS["RunLogger.log_metrics"]
    rest = sum(timer.epoch_seconds) - sum(timer.train_seconds)
    return {"train_s": sum(timer.train_seconds), "images": timer.images, "total_s": total,
            "val_ckpt_epoch_s": rest / epochs,
            "mlflow_epoch_s": per_epoch / epochs,
            "mlflow_once_s": sum(MLFLOW_SECONDS.values()) - per_epoch}


def run_plain(size: int, epochs: int) -> dict[str, float]:
    """The floor: the same steps on tensors already in memory, no framework."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(overrides(size, epochs, Path(tmp)))
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    images, labels = zip(*[(b["image"], b["target"]) for b in datamodule.train_dataloader()],
                         strict=True)
    pl.seed_everything(cfg.seed, verbose=False)
    net = create_model("resnet18_28", 1, 2).to(memory_format=torch.channels_last)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    count = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for x, y in zip(images, labels, strict=True):
            loss = F.cross_entropy(net(x.contiguous(memory_format=torch.channels_last)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            count += len(y)
    return {"train_s": time.perf_counter() - start, "images": count}


def loader_throughput(size: int) -> float:
    """Images/s of the datamodule alone (augment=basic, default workers), one full epoch."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config([*overrides(size, 1, Path(tmp)), "augment=basic"])
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    count, start = 0, time.perf_counter()
    for _ in range(3):
        for _x, y, _i in datamodule.train_dataloader():
            count += len(y)
    return count / (time.perf_counter() - start)


def _stats(values: list[float], digits: int = 2) -> str:
    spread = (f" (min {min(values):.{digits}f}, max {max(values):.{digits}f})"
              if len(values) > 1 else "")
    return f"{statistics.median(values):.{digits}f}{spread}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 64])
    parser.add_argument("--epochs", type=int, nargs="+", default=[3, 1],
                        help="training epochs per size (BreastMNIST: 5 steps of 128 each)")
    args = parser.parse_args()
    lines = [
        "# Framework overhead: `medbench train` vs a plain PyTorch loop", "",
        f"Machine: {describe_machine(machine_tags())}, Lightning {pl.__version__}. "
        "Model ResNet-18 (28) on the "
        "real BreastMNIST (546 training images, batch 128: 5 steps per epoch), Adam.",
        f"Command: `python benchmark/overhead.py --reps {args.reps} --sizes "
        f"{' '.join(map(str, args.sizes))} --epochs {' '.join(map(str, args.epochs))}`; "
        "repetitions alternate (a) and (b).", "",
        "| input | epochs | (a) medbench train: training s | (b) plain loop s | ratio (a)/(b) "
        "| ratio, (b) paired step by step in the same run | (a) img/s | (b) img/s "
        "| datamodule alone img/s (augment=basic) | whole `train_run` s "
        "(val, test, artifacts) | validation + checkpoints per epoch s | MLflow per epoch s "
        "(% of an epoch) | MLflow once per run s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, epochs in zip(args.sizes, args.epochs, strict=True):
        ours, floor, paired = [], [], []
        for _ in range(args.reps):
            ours.append(run_medbench(size, epochs))
            floor.append(run_plain(size, epochs))
            paired.append(run_paired(size, epochs))
        a = [r["train_s"] for r in ours]
        b = [r["train_s"] for r in floor]
        ratio = [x / y for x, y in zip(a, b, strict=True)]
        loader = loader_throughput(size)
        per_epoch = [r["mlflow_epoch_s"] for r in ours]
        share = 100 * statistics.median(per_epoch) / (statistics.median(a) / epochs)
        lines.append(
            f"| {size} px | {epochs} | {_stats(a)} | {_stats(b)} | {_stats(ratio)} | "
            f"{_stats(paired)} | "
            f"{ours[0]['images'] / statistics.median(a):.1f} | "
            f"{floor[0]['images'] / statistics.median(b):.1f} | {loader:.0f} | "
            f"{_stats([r['total_s'] for r in ours])} | "
            f"{_stats([r['val_ckpt_epoch_s'] for r in ours])} | {_stats(per_epoch, 3)} "
            f"({share:.2f}%) | "
            f"{_stats([r['mlflow_once_s'] for r in ours])} |")
        print(lines[-1], flush=True)
    lines += ["", "MLflow per epoch: RunLogger.log_metrics (Lightning's metrics; the training "
              "loss is logged per epoch, not per step, so no call is made per step). Once per "
              "run: the tracker's params, tags and artifact uploads (config, plots, predictions, "
              "checkpoint)."]
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
