"""Train every surveyed design of experiments/survey/ on the real data mirror; tabulate results.

    python benchmark/survey_designs.py run [<id> ...]   # default: every experiments/survey/*.yaml
    python benchmark/survey_designs.py report            # -> results/survey_designs.md

Two-stage experiments (a `pretrain:` list) first train the source run, then start the
experiment from its checkpoint (model.pretrained_path=run:<id>). Every run is tracked in the
MLflow experiment `survey` (sources in `survey_pretrain`) of the default store.
"""

from __future__ import annotations

import argparse
import platform
import sys

import torch
from mlflow.tracking import MlflowClient

from medbench.config import REPO_ROOT, compose_config
from medbench.train import train_run

SURVEY_DIR = REPO_ROOT / "experiments" / "survey"
OUTPUT = REPO_ROOT / "results" / "survey_designs.md"
QUIET = ["trainer.enable_progress_bar=false"]


def run(ids: list[str], extra: list[str]) -> None:
    for pid in ids or sorted(p.stem for p in SURVEY_DIR.glob("*.yaml")):
        overrides = [f"experiment=survey/{pid}", *QUIET, *extra]
        cfg = compose_config(overrides)
        if cfg.pretrain:
            source = compose_config([*cfg.pretrain, "name=survey_pretrain", *QUIET, *extra])
            source_id, _ = train_run(source)
            overrides.append(f"model.pretrained_path=run:{source_id}")
            cfg = compose_config(overrides)
        _, metrics = train_run(cfg)
        print(f"{pid}: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())
                                     if k.startswith("test/")), flush=True)


def report(uri: str) -> str:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("survey")
    runs = client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"]) if exp else []
    latest = {}
    for r in runs:
        latest.setdefault(r.data.tags.get("survey.id"), r)
    lines = [
        "# Surveyed designs trained on the real data mirror", "",
        "Each row is the latest finished run of `experiments/survey/<id>.yaml`, made by",
        "`python benchmark/survey_designs.py run` (then `report`). Budgets are short CPU runs,",
        "not the papers' protocols, and the data is a labelled proxy unless stated: the",
        "reported figures are the papers' own, on their own data, shown for orientation only.",
        f"Machine: {platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads.", "",
        "| survey | design | model | data here | epochs | test ACC | test AUC | reported |"
        " run |", "|---|---|---|---|---|---|---|---|---|",
    ]
    for pid, r in sorted(latest.items(), key=lambda kv: kv[1].data.params["survey.section"]):
        p, m = r.data.params, r.data.metrics
        epochs = p.get("trainer.max_epochs") if p.get("task.name") == "classification" else (
            "features + " + p.get("task.classifier._target_", "").rsplit(".", 1)[-1])
        reported = ", ".join(f"{k.removeprefix('survey.reported.')} {v}" for k, v in p.items()
                             if k.startswith("survey.reported."))
        lines.append(
            f"| {p['survey.section']} {pid} | {p['survey.name']} | {p['model.name']} | "
            f"{p['data.flag']} ({p['survey.data_here'][7:60]}...) | {epochs} | "
            f"{m['test/acc']:.3f} | {m['test/auc']:.3f} | {reported} | "
            f"`{r.info.run_id[:8]}` |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("ids", nargs="*")
    p_run.add_argument("--override", action="append", default=[])
    p_rep = sub.add_parser("report")
    p_rep.add_argument("--uri", default=f"sqlite:///{REPO_ROOT / 'results' / 'mlflow.db'}")
    args = parser.parse_args()
    if args.command == "run":
        run(args.ids, args.override)
    else:
        text = report(args.uri)
        OUTPUT.write_text(text)
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
