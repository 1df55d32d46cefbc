"""MedMNIST v2 official protocol, 3 seeds, against the published ResNet-18 (28) rows.

    python benchmark/medmnist_protocol.py run breastmnist_resnet18 --seeds 0 1 2
    python benchmark/medmnist_protocol.py report

`run` trains through `medbench train` (100 epochs, Adam 1e-3, batch 128, lr x0.1 at 50% and
75%, best val AUC) into the MLflow experiment `medmnist_v2_protocol`; `report` reads every
FINISHED run of that experiment back from MLflow and writes results/medmnist_v2_protocol.md.
`run --trace` also logs the test metrics after every epoch (trace/test_*), a diagnostic of
checkpoint selection that never feeds it; training is unchanged (the RNG state is kept).
Validation rule (issue 2): each published figure lies within mean +- 2 std of our 3 seeds and
the mean AUC is within 0.02 of the published AUC.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from mlflow.tracking import MlflowClient

from medbench.config import REPO_ROOT, compose_config
from medbench.metrics.classification import scalar_metrics
from medbench.provenance import describe_machine
from medbench.train import train_run

EXPERIMENT = "medmnist_v2_protocol"
OUTPUT = REPO_ROOT / "results" / "medmnist_v2_protocol.md"


class TestTrace(pl.Callback):
    """Test metrics of the live weights after each validation, logged as ``trace/test_*``."""

    def on_fit_start(self, trainer, pl_module) -> None:
        with torch.random.fork_rng():  # a DataLoader iterator draws its base seed
            batches = list(trainer.datamodule.test_dataloader())
        self.images = torch.cat([b["image"] for b in batches])
        self.labels = torch.cat([b["target"] for b in batches]).long()
        self.metrics = scalar_metrics(pl_module.label_type, pl_module.num_classes).clone(
            prefix="trace/test_")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            probs = torch.cat([pl_module.predictions(pl_module(x))
                               for x in self.images.split(256)])
        pl_module.train(was_training)
        values = self.metrics(pl_module.metric_inputs(probs), self.labels)
        pl_module.log_dict({k: v.item() for k, v in values.items()})
        self.metrics.reset()


def run(experiment: str, seeds: list[int], extra: list[str], trace: bool = False) -> None:
    for seed in seeds:
        cfg = compose_config([f"experiment={experiment}", f"seed={seed}", f"name={EXPERIMENT}",
                              "trainer.enable_progress_bar=false", *extra])
        _, metrics = train_run(cfg, callbacks=[TestTrace()] if trace else [])
        print(f"{experiment} seed {seed}: test/auc {metrics['test/auc']:.4f} "
              f"test/acc {metrics['test/acc']:.4f}", flush=True)


def _init(run) -> str:
    """The run's model.init; runs from before the option existed used the library's."""
    return run.data.params.get("model.init", "library")


def _fmt(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.3f} +- {std:.3f}"


def report(uri: str, experiment: str = EXPERIMENT) -> str:
    """The markdown report of every FINISHED run in the MLflow experiment ``experiment``."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'",
                              max_results=1000) if exp else []
    groups: dict[tuple[str, str], list] = {}
    for r in runs:
        key = (f"{r.data.tags.get('choice.experiment', '?')} (init={_init(r)})",
               r.data.params.get("trainer.max_epochs"))
        groups.setdefault(key, []).append(r)
    lines = [
        "# MedMNIST v2 protocol: medbench vs the published ResNet-18 (28)", "",
        "Protocol: 100 epochs, Adam lr 1e-3, batch 128, lr x0.1 at 50% and 75% of training,",
        "no augmentation, checkpoint with the best validation AUC tested; seeds 0, 1, 2.",
        "A row with fewer epochs is a shortened schedule (same lr drops, at 50% and 75% of its",
        "epochs), not the protocol.",
        "The machine column is what each run recorded (its machine.* tags).",
        "Command: `python benchmark/medmnist_protocol.py run <experiment> --seeds 0 1 2` then "
        "`python benchmark/medmnist_protocol.py report`.", "",
        "| experiment | epochs | seeds | test AUC (mean +- std) | published AUC | "
        "test ACC (mean +- std) | published ACC | AUC in 2 std | ACC in 2 std | "
        "mean AUC within 0.02 | per-seed AUC / ACC | machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, epochs), group in sorted(groups.items()):
        group.sort(key=lambda r: int(r.data.tags.get("seed", 0)))
        auc = [r.data.metrics["test/auc"] for r in group]
        acc = [r.data.metrics["test/acc"] for r in group]
        pub_auc = float(group[0].data.params.get("reference.test/auc", "nan"))
        pub_acc = float(group[0].data.params.get("reference.test/acc", "nan"))

        def within(values, published):
            if len(values) < 2:
                return "n/a"
            mean, std = statistics.mean(values), statistics.stdev(values)
            return "yes" if abs(published - mean) <= 2 * std else "no"

        close = "yes" if abs(statistics.mean(auc) - pub_auc) <= 0.02 else "no"
        machines = "; ".join(sorted({describe_machine(r.data.tags) for r in group}))
        seeds = ", ".join(f"s{r.data.tags.get('seed')}: {a:.3f} / {c:.3f}"
                          for r, a, c in zip(group, auc, acc, strict=True))
        lines.append(f"| {name} | {epochs} | {len(group)} | {_fmt(auc)} | {pub_auc:.3f} | "
                     f"{_fmt(acc)} | {pub_acc:.3f} | {within(auc, pub_auc)} | "
                     f"{within(acc, pub_acc)} | {close} | {seeds} | {machines} |")
    return "\n".join(lines + trace_lines(client, runs)) + "\n"


def trace_lines(client: MlflowClient, runs: list) -> list[str]:
    """Per traced run: test ACC at the selected epoch against its spread over all epochs."""
    traced = [r for r in runs if "trace/test_acc" in r.data.metrics]
    if not traced:
        return []
    lines = ["", "Test metrics after every epoch (`run --trace`; diagnostic, not used for "
             "selection): the selected epoch (best val AUC) against every epoch.", "",
             "| run | selected epoch | test ACC there | test ACC over epochs: min / median / max "
             "| epochs with test ACC >= published | test AUC over epochs: min / median / max |",
             "|---|---|---|---|---|---|"]
    for r in sorted(traced, key=lambda r: (_init(r), int(r.data.tags.get("seed", 0)))):
        history = {key: [m.value for m in sorted(client.get_metric_history(r.info.run_id, key),
                                                 key=lambda m: m.step)]
                   for key in ("val/auc", "trace/test_acc", "trace/test_auc")}
        val, acc, auc = history["val/auc"], history["trace/test_acc"], history["trace/test_auc"]
        best = val.index(max(val))
        published = float(r.data.params.get("reference.test/acc", "nan"))
        above = sum(a >= published - 1e-9 for a in acc)
        label = (f"{r.data.tags.get('choice.experiment')} init={_init(r)} "
                 f"s{r.data.tags.get('seed')}")
        lines.append(
            f"| {label} | {best} | {acc[best]:.3f} | {min(acc):.3f} / "
            f"{statistics.median(acc):.3f} / {max(acc):.3f} | {above} of {len(acc)} | "
            f"{min(auc):.3f} / {statistics.median(auc):.3f} / {max(auc):.3f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("experiment")
    p_run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p_run.add_argument("--trace", action="store_true",
                       help="log test metrics after every epoch (diagnostic only)")
    p_run.add_argument("overrides", nargs="*", help="Hydra overrides; put them before the options")
    p_rep = sub.add_parser("report")
    p_rep.add_argument("--uri", default=f"sqlite:///{REPO_ROOT / 'results' / 'mlflow.db'}")
    p_rep.add_argument("--experiment", default=EXPERIMENT, help="MLflow experiment to read")
    p_rep.add_argument("--output", type=Path, default=OUTPUT,
                       help="where the markdown report is written (default: %(default)s)")
    args = parser.parse_args()
    if args.command == "run":
        run(args.experiment, args.seeds, args.overrides, args.trace)
    else:
        text = report(args.uri, args.experiment)
        args.output.write_text(text)
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
