"""How long `medbench leaderboard` takes over 10,000 tracked runs.

    python benchmark/leaderboard_speed.py write --runs 10000   # fill a store via MLflow
    python benchmark/leaderboard_speed.py time --reps 3   # -> results/perf/leaderboard_speed.md

`write` logs runs the way `medbench train` does, through the real MLflow API into a fresh
SQLite store (results/cache/leaderboard_speed/): ~150 params (a flattened config), ~35 tags,
the test metrics, 20 epochs of val/train history, model cost and timings, and a
predictions_test.csv artifact (156 or 624 test images). Runs are spread over 40 surveyed
methods x 2 datasets (125 seeds/folds each). `time` builds every table and writes every file,
each repetition in a fresh process, and reports the median and the phases.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from medbench.provenance import cpu_model

REPO = Path(__file__).resolve().parents[1]
STORE = REPO / "results" / "cache" / "leaderboard_speed"
OUTPUT = REPO / "results" / "perf" / "leaderboard_speed.md"
DATASETS = {"breastmnist": 156, "pneumoniamnist": 624}


def write(n_runs: int) -> None:
    import pandas as pd
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from medbench.catalog import catalog

    STORE.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(f"sqlite:///{STORE}/mlflow.db")
    experiment = client.create_experiment(f"speed-{time.time_ns()}",
                                          (STORE / "artifacts").as_uri())
    methods = [e.id for e in catalog()][:40]
    rng = np.random.default_rng(0)
    files = STORE / "files"
    files.mkdir(exist_ok=True)
    labels = {d: rng.integers(0, 2, n) for d, n in DATASETS.items()}
    start = time.perf_counter()
    for i in range(n_runs):
        method, dataset = methods[i % 40], list(DATASETS)[(i // 40) % 2]
        tags = {"medbench.kind": "run", "medbench.config_hash": f"{method[:8]}{dataset[:4]}",
                "survey.id": method, "dataset": dataset, "model": f"net{i % 40}",
                "seed": str(i // 80), "label_type": "binary", "choice.experiment": method,
                **{f"data.tag{j}": str(j) for j in range(27)}}
        run = client.create_run(experiment, tags=tags)
        run_id = run.info.run_id
        signal = 1.0 + (i % 40) / 20
        y = labels[dataset]
        p = 1 / (1 + np.exp(-(signal * (y - 0.5) + rng.normal(size=len(y)))))
        metrics = [Metric(f"val/{k}", rng.random(), 0, epoch) for epoch in range(20)
                   for k in ("auc", "acc", "loss")]
        metrics += [Metric("train/loss", rng.random(), 0, epoch) for epoch in range(20)]
        metrics += [Metric(f"test/{k}", rng.random(), 0, 0) for k in (
            "auc", "acc", "f1", "kappa", "loss", "precision", "sensitivity", "specificity")]
        metrics += [Metric("model/params", 1e6, 0, 0), Metric("model/macs", 4e8, 0, 0),
                    Metric("time/fit_s", 100.0, 0, 0),
                    Metric("time/test_ms_per_image", 2.0, 0, 0)]
        params = [Param(f"config.group{j // 10}.key{j}", str(j)) for j in range(150)]
        for chunk in range(0, len(params), 100):
            client.log_batch(run_id, params=params[chunk:chunk + 100])
        client.log_batch(run_id, metrics=metrics)
        path = files / "predictions_test.csv"
        pd.DataFrame({"index": np.arange(len(y)), "label": y, "prob_0": 1 - p,
                      "prob_1": p}).to_csv(path, index=False, float_format="%.6g")
        client.log_artifact(run_id, str(path))
        client.set_terminated(run_id)
        if (i + 1) % 500 == 0:
            print(f"{i + 1} runs written, {time.perf_counter() - start:.0f} s", flush=True)


def build_once() -> dict[str, float]:
    """One cold build (a fresh process), timed by phase."""
    code = (
        "import time, json; t0 = time.perf_counter()\n"
        "from medbench.leaderboard import build, collect, writers\n"
        "t1 = time.perf_counter(); uri = sys.argv[1]\n"
        "runs = collect.collect_runs(uri); t2 = time.perf_counter()\n"
        "tables = build.build_tables(uri); t3 = time.perf_counter()\n"
        "writers.write_all(tables, __import__('pathlib').Path(sys.argv[2]), uri)\n"
        "t4 = time.perf_counter()\n"
        "print(json.dumps({'runs': len(runs), 'import': t1 - t0, 'collect': t2 - t1,\n"
        "                  'build': t3 - t2, 'write': t4 - t3, 'total': t4 - t2}))\n"
    )
    out = subprocess.run([sys.executable, "-c", "import sys\n" + code,
                          f"sqlite:///{STORE}/mlflow.db", str(STORE / "boards")],
                         capture_output=True, text=True, check=True).stdout
    import json

    return json.loads(out.strip().splitlines()[-1])


def command_once() -> float:
    """Wall seconds of the `medbench leaderboard` command itself, imports included."""
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("medbench")), "leaderboard", "--uri",
                    f"sqlite:///{STORE}/mlflow.db", "--out", str(STORE / "boards")],
                   capture_output=True, check=True)
    return time.perf_counter() - start


def report(reps: int) -> str:
    results = [build_once() for _ in range(reps)]
    command = statistics.median(command_once() for _ in range(reps))
    median = {k: statistics.median(r[k] for r in results) for k in results[0]}
    spread = {k: (min(r[k] for r in results), max(r[k] for r in results)) for k in results[0]}
    rows = [f"| {phase} | {median[phase]:.2f} | {spread[phase][0]:.2f} to "
            f"{spread[phase][1]:.2f} |" for phase in ("collect", "build", "write", "total")]
    return "\n".join([
        "# Leaderboard build time over 10,000 tracked runs", "",
        f"Command: `python benchmark/leaderboard_speed.py write --runs {int(median['runs'])}` "
        f"then `python benchmark/leaderboard_speed.py time --reps {reps}`.",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}; store: SQLite through MLflow's API.", "",
        f"{int(median['runs'])} finished runs (each: ~150 params, ~35 tags, 80 history "
        f"points, 12 summary metrics, a predictions CSV), 40 methods x 2 datasets. Each "
        f"repetition is a fresh process: nothing is cached between builds. 'collect' reads "
        f"the runs alone; 'build' is `build_tables` end to end (its own collect, aggregation, "
        f"bootstrap CIs, the paired tests: DeLong / bootstrap on at most 25 runs' predictions "
        f"per row); 'total' = build + write (the Markdown and CSV files and the HTML page), "
        f"without Python's imports (median {median['import']:.1f} s).", "",
        "| phase | median s | range s |", "|---|---|---|", *rows, "",
        f"Target: under 5 s. Total median: {median['total']:.2f} s "
        f"({'met' if median['total'] < 5 else 'NOT met'}). The `medbench leaderboard` "
        f"command end to end, Python's imports (MLflow alone takes about 3 s) and Hydra's "
        f"config included: median {command:.1f} s over {reps} runs.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("write").add_argument("--runs", type=int, default=10_000)
    sub.add_parser("time").add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    if args.command == "write":
        write(args.runs)
    else:
        text = report(args.reps)
        OUTPUT.parent.mkdir(parents=True, exist_ok=True)
        OUTPUT.write_text(text)
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
