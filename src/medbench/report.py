"""The summary table printed after a run: our test metrics beside the published ones."""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table


def print_summary(cfg: DictConfig, runs: list[dict[str, float]]) -> None:
    """Test metrics of one run, or mean +- std over repeated runs (seeds, folds)."""
    reference = dict(cfg.get("reference") or {})
    source = reference.pop("source", None)
    seeds = f"seed {cfg.seed}" if len(runs) == 1 else f"{len(runs)} runs, mean ± std"
    table = Table(title=f"{cfg.model.name} on {cfg.data.get('flag', cfg.data.source)} "
                        f"({seeds}): test metrics of the best-{cfg.monitor} checkpoint")
    table.add_column("metric")
    table.add_column("medbench", justify="right")
    if reference:
        table.add_column(f"published: {source or 'reference'}", justify="right")
    for key in sorted(runs[0]):
        values = np.array([run[key] for run in runs])
        ours = f"{values[0]:.4f}" if len(runs) == 1 else (
            f"{values.mean():.4f} ± {values.std(ddof=1):.4f}")
        row = [key, ours]
        if reference:
            row.append(f"{reference[key]:.3f}" if key in reference else "")
        table.add_row(*row)
    Console().print(table)


def print_study(result) -> None:
    """This worker's trials of a `medbench tune` study, and the study's best trial."""
    table = Table(title=f"study {result.study_name}: {result.finished}/{result.n_trials} trials "
                        f"finished (MLflow parent run {result.parent_run_id})")
    for column in ("trial", "state", "value", "epochs", "test/auc", "note"):
        table.add_column(column)
    for number, outcome in sorted(result.outcomes.items()):
        value = outcome.get("value")
        test_auc = outcome.get("metrics", {}).get("test/auc")
        table.add_row(str(number), outcome["state"], "" if value is None else f"{value:.4f}",
                      str(outcome.get("epochs", "")),
                      "" if test_auc is None else f"{test_auc:.4f}", outcome.get("error") or "")
    console = Console()
    console.print(table)
    if result.best is not None:
        console.print(f"best trial {result.best.number}: value {result.best.value:.4f} "
                      f"{result.best.params}")
    if result.exported is not None:
        console.print(f"best configuration exported to {result.exported}")
