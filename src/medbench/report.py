"""The summary printed after a run: our test metrics beside the published ones, where the run
was filed, and whether the schedule matches the published one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from medbench.console import console


def print_summary(cfg: DictConfig, runs: list[dict[str, float]],
                  run_ids: Sequence[str | None] = ()) -> None:
    """Test metrics of one run, or mean +- std over repeated runs (seeds, folds), beside the
    published figures; then each run's id, folders and selected epoch (read back from the
    tracking store), and a caveat when the schedule differs from the published one."""
    reference = dict(cfg.get("reference") or {})
    source = reference.pop("source", None)
    published_epochs = reference.pop("epochs", None)
    with console(bool(cfg.get("verbose"))):
        facts = [run_facts(cfg, run_id) for run_id in run_ids if run_id]
    tracked = [fact for fact in facts if "artifacts" in fact]  # read back from the store
    tested = "the run"
    if tracked and all("best_epoch" in fact for fact in tracked):
        tested = f"the best-{cfg.monitor} checkpoint"
    elif tracked:
        tested = _untrained_weights(cfg)
    seeds = f"seed {cfg.seed}" if len(runs) == 1 else f"{len(runs)} runs, mean ± std"
    table = Table(title=f"{cfg.model.name} on {cfg.data.get('flag', cfg.data.source)} "
                        f"({seeds}): test metrics of {tested}")
    table.add_column("metric")
    table.add_column("medbench", justify="right")
    if reference:
        schedule = "" if published_epochs is None else f", {published_epochs} epochs"
        table.add_column(f"published: {source or 'reference'}{schedule}", justify="right")
    for key in sorted(runs[0]):
        values = np.array([run[key] for run in runs])
        ours = f"{values[0]:.4f}" if len(runs) == 1 else (
            f"{values.mean():.4f} ± {values.std(ddof=1):.4f}")
        row = [key, ours]
        if reference:
            row.append(f"{reference[key]:.3f}" if key in reference else "")
        table.add_row(*row)
    out = Console()
    out.print(table)
    for fact in facts:
        out.print(_run_line(cfg, fact), highlight=False, soft_wrap=True)
    if facts and "data.positive_label" in facts[0]:  # binary labels: what "positive" meant
        out.print(f"positive class: '{facts[0]['data.positive_label']}' (index "
                  f"{facts[0]['data.positive_class']}; data.positive_class=<name|index>)",
                  highlight=False, soft_wrap=True)
    caveat = schedule_caveat(cfg) if reference else None
    if caveat:
        out.print(f"caveat: {caveat}", style="yellow", highlight=False, soft_wrap=True)


def run_facts(cfg: DictConfig, run_id: str) -> dict[str, str]:
    """What the summary shows of a tracked run: its id, folders and selected checkpoint's
    tags (none of these when the store cannot be read)."""
    facts = {"run_id": run_id, "folder": str(Path(cfg.paths.runs_dir) / run_id)}
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        run = MlflowClient(cfg.tracking.uri).get_run(run_id)
    except MlflowException:
        return facts
    facts["artifacts"] = run.info.artifact_uri.removeprefix("file://")
    facts.update({k: v for k, v in run.data.tags.items()
                  if k in ("best_epoch", "best_score", "data.positive_class",
                           "data.positive_label")})
    return facts


def _untrained_weights(cfg: DictConfig) -> str:
    """What a run that selected no checkpoint tested: the weights it was given (an
    evaluation-only run: ``medbench evaluate``, ``trainer.max_epochs=0``), or those in memory."""
    given = str(cfg.model.get("pretrained_path") or "")
    if cfg.trainer.get("max_epochs") == 0 and given:
        return ("the weights of " + (f"run {given[4:]} (its selected checkpoint)"
                                     if given.startswith("run:") else given))
    return "the weights in memory (no checkpoint)"


def _run_line(cfg: DictConfig, fact: dict[str, str]) -> str:
    selected = ""
    if "best_epoch" in fact:
        score = f", {cfg.monitor} {float(fact['best_score']):.4f}" if "best_score" in fact else ""
        selected = f": best epoch {fact['best_epoch']}{score}"
    elif "artifacts" in fact:
        selected = f": {_untrained_weights(cfg).removeprefix('the ')}"
    line = f"run {fact['run_id']}{selected}\n  run folder {fact['folder']}"
    if "artifacts" in fact:
        line += f"\n  artifacts  {fact['artifacts']}"
    return line


def schedule_caveat(cfg: DictConfig) -> str | None:
    """Why this run's figures are not the published schedule's, if they are not."""
    trainer, reasons = cfg.trainer, []
    published = (cfg.get("reference") or {}).get("epochs")
    if published is not None and trainer.max_epochs != published:
        reasons.append(f"{trainer.max_epochs} epoch(s) here, {published} published")
    limit = trainer.get("limit_train_batches")
    if trainer.get("fast_dev_run"):
        reasons.append("fast_dev_run (one batch)")
    if limit is not None and not (isinstance(limit, float) and limit == 1.0):
        reasons.append(f"limit_train_batches={limit}")
    if trainer.get("overfit_batches"):
        reasons.append(f"overfit_batches={trainer.overfit_batches}")
    if cfg.get("budget"):
        reasons.append(f"budget={cfg.budget}")
    if not reasons:
        return None
    return f"not the published schedule ({'; '.join(reasons)}): compare with care"


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
    out = Console()
    out.print(table)
    if result.best is not None:
        out.print(f"best trial {result.best.number}: value {result.best.value:.4f} "
                      f"{result.best.params}")
    if result.exported is not None:
        out.print(f"best configuration exported to {result.exported}")
