"""The summary table printed after a run: our test metrics beside the published ones."""

from __future__ import annotations

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table


def print_summary(cfg: DictConfig, metrics: dict[str, float]) -> None:
    reference = dict(cfg.get("reference") or {})
    source = reference.pop("source", None)
    table = Table(title=f"{cfg.model.name} on {cfg.data.get('flag', cfg.data.source)} "
                        f"(seed {cfg.seed}): test metrics of the best-{cfg.monitor} checkpoint")
    table.add_column("metric")
    table.add_column("medbench", justify="right")
    if reference:
        table.add_column(f"published: {source or 'reference'}", justify="right")
    for key in sorted(metrics):
        row = [key, f"{metrics[key]:.4f}"]
        if reference:
            row.append(f"{reference[key]:.3f}" if key in reference else "")
        table.add_row(*row)
    Console().print(table)
