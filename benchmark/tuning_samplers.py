"""Search strategies side by side on BreastMNIST at the same trial budget.

    python benchmark/tuning_samplers.py run --seeds 0 1
    python benchmark/tuning_samplers.py report
    python benchmark/tuning_samplers.py study <name> --title ... --command ... --output <md>

`run` starts one `medbench tune` study per strategy and seed (TPE + median pruning, GP
without pruning, random search without pruning), same space (`search=small_cnn`), same trial
budget and epochs per trial, all in the default stores (results/optuna.db, results/mlflow.db).
`report` reads the studies back from Optuna and writes results/tuning_samplers.md: best val
AUC, the test AUC of the best trial's configuration (its own best-val checkpoint, tested in
that trial), epochs consumed over all trials, and wall time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import optuna
from mlflow.tracking import MlflowClient

from medbench.config import REPO_ROOT
from medbench.provenance import describe_machine, machine_tags
from medbench.tuning.driver import tune

OUTPUT = REPO_ROOT / "results" / "tuning_samplers.md"
STORAGE = f"sqlite:///{REPO_ROOT / 'results' / 'optuna.db'}"
STRATEGIES = {
    "tpe+median": ["study/sampler=tpe", "study/pruner=median"],
    "gp": ["study/sampler=gp", "study/pruner=none"],
    "random": ["study/sampler=random", "study/pruner=none"],
}


def study_name(strategy: str, seed: int, n_trials: int, epochs: int) -> str:
    return f"bench-{strategy.replace('+', '-')}-t{n_trials}-e{epochs}-s{seed}"


def run(seeds: list[int], n_trials: int, epochs: int, extra: list[str]) -> None:
    for seed in seeds:
        for strategy, choice in STRATEGIES.items():
            tune(["data=breastmnist", "search=small_cnn", "name=tuning_benchmark", f"seed={seed}",
                  f"trainer.max_epochs={epochs}", f"study.n_trials={n_trials}",
                  f"study.name={study_name(strategy, seed, n_trials, epochs)}",
                  "trainer.enable_progress_bar=false", "tracking.log_checkpoint=false",
                  "study.export_dir=${paths.results_dir}/studies/exported",
                  *choice, *extra])


def _summary(study: optuna.Study) -> dict[str, float]:
    done = [t for t in study.trials if t.state.is_finished()]
    best = study.best_trial
    starts = [t.datetime_start for t in done if t.datetime_start]
    ends = [t.datetime_complete for t in done if t.datetime_complete]
    return {
        "best_val": best.value, "test_auc": best.user_attrs.get("test/auc", float("nan")),
        "epochs": sum(t.user_attrs.get("epochs", 0) for t in done),
        "pruned": sum(t.state.name == "PRUNED" for t in done),
        "trials": len(done), "minutes": (max(ends) - min(starts)).total_seconds() / 60,
        "best_trial": best.number,
    }


def _fmt(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} +- {statistics.stdev(values):.{digits}f}"


def report(n_trials: int, epochs: int) -> str:
    names = set(optuna.get_all_study_names(STORAGE))
    lines = [
        "# Search strategies on BreastMNIST at the same trial budget", "",
        f"Space `conf/search/small_cnn.yaml` (model: LeNet-5 or the six-layer CNN; Adam lr "
        f"1e-5..1e-1 log; weight decay 1e-6..1e-2 log; batch 32/64/128); {n_trials} trials per "
        f"study, up to {epochs} epochs per trial; objective: best val AUC of the trial; the test "
        f"AUC is that of the best trial's own selected checkpoint.",
        f"Machine: {describe_machine(machine_tags())}; other jobs shared the cores, so wall "
        "times compare strategies only roughly.",
        f"Command: `python benchmark/tuning_samplers.py run --seeds 0 1 --n-trials {n_trials} "
        f"--epochs {epochs}` then `python benchmark/tuning_samplers.py report`.", "",
        "| strategy | seeds | best val AUC | test AUC of best config | epochs consumed | "
        "pruned trials | wall minutes | per seed: best val / test AUC / epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for strategy in STRATEGIES:
        rows = []
        for seed in range(10):
            name = study_name(strategy, seed, n_trials, epochs)
            if name in names:
                study = optuna.load_study(study_name=name, storage=STORAGE)
                if any(t.state.name == "COMPLETE" for t in study.trials):
                    rows.append((seed, _summary(study)))
        if not rows:
            continue
        col = {k: [r[k] for _, r in rows] for k in rows[0][1]}
        per_seed = "; ".join(f"s{s}: {r['best_val']:.3f} / {r['test_auc']:.3f} / {r['epochs']}"
                             for s, r in rows)
        lines.append(f"| {strategy} | {len(rows)} | {_fmt(col['best_val'])} | "
                     f"{_fmt(col['test_auc'])} | {_fmt(col['epochs'], 0)} | "
                     f"{_fmt(col['pruned'], 1)} | {_fmt(col['minutes'], 1)} | {per_seed} |")
    return "\n".join(lines) + "\n"


def study_table(name: str, title: str, command: str) -> str:
    """Every trial of one study (any study of the default storage) as a Markdown table."""
    study = optuna.load_study(study_name=name, storage=STORAGE)
    # the sampler and pruner the study ran with are tags of its MLflow parent run
    parent = MlflowClient(f"sqlite:///{REPO_ROOT / 'results' / 'mlflow.db'}").get_run(
        study.user_attrs["mlflow_parent_run_id"]).data.tags
    params = sorted({k for t in study.trials for k in t.params})
    lines = [f"# {title}", "",
             f"Optuna study `{name}` ({parent['optuna.sampler']}, {parent['optuna.pruner']}); "
             "objective: best val AUC of each trial; test "
             "metrics of each trial's own selected checkpoint.",
             f"Machine: {describe_machine(machine_tags())}.", f"Command: `{command}`.", "",
             "| trial | state | val AUC | test AUC | test ACC | test sensitivity | "
             "test specificity | epochs | minutes | " + " | ".join(params) + " |",
             "|" + "---|" * (9 + len(params))]
    for t in study.trials:
        attrs = t.user_attrs
        minutes = ((t.datetime_complete - t.datetime_start).total_seconds() / 60
                   if t.datetime_complete and t.datetime_start else float("nan"))
        cells = [str(t.number), t.state.name, "" if t.value is None else f"{t.value:.3f}",
                 *[f"{attrs[k]:.3f}" if k in attrs else "" for k in
                   ("test/auc", "test/acc", "test/sensitivity", "test/specificity")],
                 str(attrs.get("epochs", "")), f"{minutes:.1f}",
                 *[f"{t.params[k]:.3g}" if isinstance(t.params.get(k), float)
                   else str(t.params.get(k, "")) for k in params]]
        lines.append("| " + " | ".join(cells) + " |")
    best = study.best_trial
    lines += ["", f"Best trial: {best.number} (val AUC {best.value:.3f}, test AUC "
              f"{best.user_attrs.get('test/auc', float('nan')):.3f}); its full configuration is "
              f"exported as `experiments/tuned/{name}.yaml`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p_study = sub.add_parser("study")
    p_study.add_argument("name")
    p_study.add_argument("--title", required=True)
    p_study.add_argument("--command", required=True)
    p_study.add_argument("--output", type=Path, required=True)
    for name in ("run", "report"):
        p = sub.add_parser(name)
        p.add_argument("--n-trials", type=int, default=20)
        p.add_argument("--epochs", type=int, default=12)
        if name == "run":
            p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
            p.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.action == "study":
        text = study_table(args.name, args.title, args.command)
        args.output.write_text(text)
        sys.stdout.write(text)
    elif args.action == "run":
        run(args.seeds, args.n_trials, args.epochs, args.overrides)
    else:
        text = report(args.n_trials, args.epochs)
        OUTPUT.write_text(text)
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
