"""MedMNIST v2 official protocol, 3 seeds, against the published ResNet-18 (28) rows.

    python benchmark/medmnist_protocol.py run breastmnist_resnet18 --seeds 0 1 2
    python benchmark/medmnist_protocol.py report

`run` trains through `medbench train` (100 epochs, Adam 1e-3, batch 128, lr x0.1 at 50% and
75%, best val AUC) into the MLflow experiment `medmnist_v2_protocol`; `report` reads every
FINISHED run of that experiment back from MLflow and writes results/medmnist_v2_protocol.md.
Validation rule (issue 2): each published figure lies within mean +- 2 std of our 3 seeds and
the mean AUC is within 0.02 of the published AUC.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys

import torch
from mlflow.tracking import MlflowClient

from medbench.config import REPO_ROOT, compose_config
from medbench.train import train

EXPERIMENT = "medmnist_v2_protocol"
OUTPUT = REPO_ROOT / "results" / "medmnist_v2_protocol.md"


def run(experiment: str, seeds: list[int], extra: list[str]) -> None:
    for seed in seeds:
        cfg = compose_config([f"experiment={experiment}", f"seed={seed}", f"name={EXPERIMENT}",
                              "trainer.enable_progress_bar=false", *extra])
        metrics = train(cfg)
        print(f"{experiment} seed {seed}: test/auc {metrics['test/auc']:.4f} "
              f"test/acc {metrics['test/acc']:.4f}", flush=True)


def _fmt(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.3f} +- {std:.3f}"


def report(uri: str) -> str:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'",
                              max_results=1000) if exp else []
    groups: dict[tuple[str, str], list] = {}
    for r in runs:
        key = (r.data.tags.get("choice.experiment", "?"), r.data.params.get("trainer.max_epochs"))
        groups.setdefault(key, []).append(r)
    lines = [
        "# MedMNIST v2 protocol: medbench vs the published ResNet-18 (28)", "",
        "Protocol: 100 epochs, Adam lr 1e-3, batch 128, lr x0.1 at 50% and 75% of training,",
        "no augmentation, checkpoint with the best validation AUC tested; seeds 0, 1, 2.",
        f"Machine: {platform.machine()} {platform.processor() or ''}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, CPU.",
        "Command: `python benchmark/medmnist_protocol.py run <experiment> --seeds 0 1 2` then "
        "`python benchmark/medmnist_protocol.py report`.", "",
        "| experiment | epochs | seeds | test AUC (mean +- std) | published AUC | "
        "test ACC (mean +- std) | published ACC | AUC in 2 std | ACC in 2 std | "
        "mean AUC within 0.02 | per-seed AUC / ACC |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
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
        seeds = ", ".join(f"s{r.data.tags.get('seed')}: {a:.3f} / {c:.3f}"
                          for r, a, c in zip(group, auc, acc, strict=True))
        lines.append(f"| {name} | {epochs} | {len(group)} | {_fmt(auc)} | {pub_auc:.3f} | "
                     f"{_fmt(acc)} | {pub_acc:.3f} | {within(auc, pub_auc)} | "
                     f"{within(acc, pub_acc)} | {close} | {seeds} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("experiment")
    p_run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p_run.add_argument("overrides", nargs="*")
    p_rep = sub.add_parser("report")
    p_rep.add_argument("--uri", default=f"sqlite:///{REPO_ROOT / 'results' / 'mlflow.db'}")
    args = parser.parse_args()
    if args.command == "run":
        run(args.experiment, args.seeds, args.overrides)
    else:
        text = report(args.uri)
        OUTPUT.write_text(text)
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
