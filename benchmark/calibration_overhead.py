"""What calibration and selective prediction add to a classification test pass.

    python benchmark/calibration_overhead.py --reps 7   # -> results/perf/calibration_overhead.md

A ResNet-18 (28) trained one short epoch (8 steps of 128) on the real PneumoniaMNIST (624 test,
524 validation images) is tested by Lightning's test loop, repetitions alternating:
(a) the metric collection without the four added metrics (ECE, Brier, AURC, accuracy at 90%
    coverage): the test pass as before them;
(b) the full collection (every run since): (b) - (a) is the metrics' cost;
(c) (b) with ``runner.calibration=temperature``: a forward pass over the validation split and
    the LBFGS fit before testing.
Apart, on the test outputs of (b): the four metrics alone (update per batch and compute),
against the metrics from before; the new files (reliability diagram, selective-prediction
CSV and plot) against the files written before (per-sample CSV, confusion matrix, ROC).
Load from other processes moves single passes; medians of alternating repetitions are given.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from torchmetrics import MetricCollection

from medbench.config import REPO_ROOT, compose_config
from medbench.family import get_family
from medbench.metrics.calibration import BRIER, ECE
from medbench.metrics.classification import scalar_metrics
from medbench.metrics.selective import AURC, SELECTIVE_ACC_AT_90
from medbench.provenance import describe_machine, machine_tags
from medbench.tasks.classification import artifacts
from medbench.tasks.classification.calibration_plots import write_trust_outputs
from medbench.train import build_datamodule, build_model, train_run

OUTPUT = REPO_ROOT / "results" / "perf" / "calibration_overhead.md"
ADDED = (ECE, BRIER, AURC, SELECTIVE_ACC_AT_90)


def trained(results: Path, data: str, model: str = "resnet18_28") -> tuple[object, Path]:
    cfg = compose_config([f"paths.results_dir={results}", "trainer.enable_progress_bar=false",
                          f"data={data}", f"model={model}", "trainer.max_epochs=1",
                          "+trainer.limit_train_batches=8",
                          "name=calibration_overhead"])
    run_id, _ = train_run(cfg)
    [checkpoint] = (results / "runs" / run_id / "checkpoints").iterdir()
    return cfg, checkpoint


def test_pass(cfg, checkpoint: Path, added: bool, calibration: str | None,
              uncertainty: str | None = None, passes: int = 20
              ) -> tuple[float, dict[str, torch.Tensor]]:
    """Seconds of one ``trainer.test`` (data loading, forward, metrics), and its outputs;
    ``uncertainty``/``passes`` as ``runner.uncertainty``/``runner.uncertainty_passes``."""
    family = get_family("classification")
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    module = family.build_module(cfg, build_model(cfg, family, datamodule), datamodule)
    module.calibration = calibration
    module.uncertainty, module.uncertainty_passes = uncertainty, passes
    if not added:
        kept = {k: m for k, m in module.test_metrics.items(keep_base=True) if k not in ADDED}
        module.test_metrics = MetricCollection(kept, prefix="test/")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    start = time.perf_counter()
    trainer.test(module, datamodule=datamodule, verbose=False)
    return time.perf_counter() - start, module.test_predictions


def file_seconds(predictions: dict[str, torch.Tensor], folder: Path) -> tuple[float, float]:
    """Seconds writing the files from before, and the new ones, on the same outputs."""
    probs, labels = predictions["probs"], predictions["label"]
    start = time.perf_counter()
    artifacts.write_predictions(predictions, folder / "predictions_test.csv")
    confusion = torch.zeros(2, 2).numpy()
    artifacts.plot_confusion_matrix(confusion, ["0", "1"], folder / "confusion_matrix.png")
    artifacts.plot_roc(labels.numpy(), probs.numpy(), ["0", "1"], folder / "roc.png")
    before = time.perf_counter() - start
    start = time.perf_counter()
    write_trust_outputs(probs, labels, "binary", folder)
    return before, time.perf_counter() - start


def metric_seconds(predictions: dict[str, torch.Tensor], batch: int) -> tuple[float, float]:
    """Seconds updating (per test batch) and computing the metrics from before, and the four
    added ones, on the same outputs: the metrics' cost without the test pass's noise."""
    scores, target = predictions["probs"][:, 1], (predictions["label"] == 1).long()
    collection = scalar_metrics("binary", 2)
    took = []
    for names in ([k for k in collection if k not in ADDED], list(ADDED)):
        metrics = [collection[k] for k in names]
        start = time.perf_counter()
        for p, t in zip(scores.split(batch), target.split(batch), strict=True):
            for metric in metrics:
                metric.update(p, t)
        for metric in metrics:
            metric.compute()
        took.append(time.perf_counter() - start)
    return took[0], took[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--data", default="pneumoniamnist")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg, checkpoint = trained(Path(tmp), args.data)
        test_pass(cfg, checkpoint, True, None)  # warm-up: imports, first allocations
        seconds: dict[str, list[float]] = {"a": [], "b": [], "c": []}
        files: list[tuple[float, float]] = []
        metrics: list[tuple[float, float]] = []
        for _ in range(args.reps):
            seconds["a"].append(test_pass(cfg, checkpoint, False, None)[0])
            took, predictions = test_pass(cfg, checkpoint, True, None)
            seconds["b"].append(took)
            seconds["c"].append(test_pass(cfg, checkpoint, True, "temperature")[0])
            files.append(file_seconds(predictions, Path(tmp)))
            metrics.append(metric_seconds(predictions, cfg.data.eval_batch_size
                                          or cfg.data.batch_size))
    a, b, c = (statistics.median(seconds[k]) for k in "abc")
    before = statistics.median(f[0] for f in files)
    new = statistics.median(f[1] for f in files)
    old_metrics = statistics.median(m[0] for m in metrics)
    new_metrics = statistics.median(m[1] for m in metrics)
    paired = [100 * (y - x) / x for x, y in zip(seconds["a"], seconds["b"], strict=True)]

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"

    lines = [
        "# Calibration and selective prediction: overhead on a test pass", "",
        f"Machine: {describe_machine(machine_tags())}, Lightning {pl.__version__}. ResNet-18 "
        f"(28), 8 training steps on the real {args.data}, tested from its checkpoint.",
        f"Command: `python benchmark/calibration_overhead.py --reps {args.reps} --data "
        f"{args.data}`; repetitions alternate (a), (b), (c).", "",
        "| | seconds per test pass | vs (a) |", "|---|---|---|",
        f"| (a) without ECE, Brier, AURC, ACC at 90% | {spread(seconds['a'])} | |",
        f"| (b) with them (every run) | {spread(seconds['b'])} | {100 * (b - a) / a:+.1f}% "
        f"(paired per repetition: median {statistics.median(paired):+.1f}%, min "
        f"{min(paired):+.1f}%, max {max(paired):+.1f}%) |",
        f"| (c) (b) + temperature scaling (validation pass + LBFGS) | {spread(seconds['c'])} | "
        f"{100 * (c - a) / a:+.1f}% |",
        f"| metrics before, alone (update per batch + compute) | {old_metrics:.4f} | |",
        f"| the four added metrics, alone | {new_metrics:.4f} | "
        f"{100 * new_metrics / a:+.2f}% of a test pass |",
        f"| files before (per-sample CSV, confusion matrix, ROC) | {before:.3f} | |",
        f"| new files (reliability diagram, selective CSV + plot) | {new:.3f} | "
        f"{100 * new / a:+.1f}% of a test pass |",
    ]
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
