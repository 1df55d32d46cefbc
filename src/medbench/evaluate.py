"""`medbench evaluate <run id> data=<dataset> [key=value ...]`: external validation. A tracked
run's selected checkpoint, rebuilt from the config it logged, is tested on another dataset (or
the same one again) into a new tracked run, tagged ``medbench.source_run`` with the source's id.

The new run is an evaluation-only run (``trainer.max_epochs=0``: the leaderboard shows it as
``<method> (evaluation only)`` in the table of the data it was tested on). Its config is the
source run's, with the keys the command line names taken as ``medbench train`` would compose
them, the store and folders of this invocation, and the source's preprocessing (how images are
fed to the network: ``data.size``, ``data.resize``, ``data.normalize``) unless named too.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from medbench.errors import ConfigError, DataError
from medbench.tracking import Tracker
from medbench.uris import reach

# data keys of how the source run fed its network, carried to the data evaluated on
PREPROCESSING = ("size", "resize", "normalize")
# what the network's input and output layers were built for: the data evaluated on must agree
BUILT_FOR = (("family", "task family"), ("num_classes", "classes"), ("label_type", "labels"),
             ("in_chans", "input channels"), ("spatial_dims", "spatial dimensions"))
USAGE = ("usage: medbench evaluate <run id> data=<dataset> [data.<key>=<value> ...] "
         "[runner.uncertainty=tta ...] [tracking.uri=...] [paths.results_dir=...]")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def evaluation_config(source: DictConfig, run_id: str, overrides: list[str]) -> DictConfig:
    """The config of the evaluation of run ``run_id`` (its logged config ``source``)."""
    from medbench.config import compose_config

    keys = [_key(o) for o in overrides]
    if "experiment" in keys:
        raise ConfigError("medbench evaluate: experiment= would replace the run's configuration;"
                          " name the data (data=<dataset>) and the keys to change")
    composed = compose_config(overrides)
    cfg = source.copy()
    with open_dict(cfg):
        for key in dict.fromkeys(["paths", "tracking", *keys]):
            value = OmegaConf.select(composed, key)
            if OmegaConf.is_config(value):
                value = OmegaConf.to_container(value, resolve=True)
            OmegaConf.update(cfg, key, value, merge=False, force_add=True)
            if "." not in key and OmegaConf.select(composed, f"choices.{key}") is not None:
                OmegaConf.update(cfg, f"choices.{key}", composed.choices[key], force_add=True)
        for key in PREPROCESSING:
            if key in source.data and key in cfg.data and f"data.{key}" not in keys:
                cfg.data[key] = source.data[key]
        cfg.trainer.max_epochs = 0
        cfg.model.pretrained_path = f"run:{run_id}"
        cfg.resume = None
    return cfg


def check_built_for(source_tags: dict[str, str], summary: dict[str, Any], run_id: str) -> None:
    """One line when the data evaluated on is not what the network was built for."""
    source = source_tags.get("dataset", "its data")
    target = summary.get("name", "this data")
    for key, what in BUILT_FOR:
        was, now = source_tags.get(f"data.{key}"), summary.get(key)
        if was is not None and now is not None and str(was) != str(now):
            raise DataError(f"medbench evaluate: run '{run_id}' was built for {was} {what} "
                            f"({source}); {target} has {now}: evaluate on data of the same "
                            "task, classes and channels")


def evaluate(run_id: str, overrides: list[str]) -> tuple[DictConfig, str | None,
                                                         dict[str, float]]:
    """Evaluates run ``run_id`` as the module says; (config, new run id, test metrics)."""
    from medbench.config import compose_config
    from medbench.tracking.logged_config import logged_config
    from medbench.train import build_datamodule, train_run

    store = compose_config([o for o in overrides if _key(o).startswith(("tracking", "paths"))])
    uri, timeout = str(store.tracking.uri), store.tracking.get("timeout_s", 5)
    reach(uri, timeout, store.tracking.get("retries", 2), create=False)  # no store created
    tracker = Tracker(uri, "medbench", timeout_s=timeout)
    with tempfile.TemporaryDirectory(prefix="medbench-evaluate-") as scratch:
        source = logged_config(tracker, run_id, Path(store.paths.runs_dir), Path(scratch))
    run = tracker.client.get_run(run_id)
    if run.info.status != "FINISHED":
        raise ConfigError(f"medbench evaluate: run '{run_id}' is {run.info.status}: only a "
                          "finished run's selected checkpoint is evaluated")
    cfg = evaluation_config(source, run_id, overrides)
    datamodule = build_datamodule(cfg)
    summary = datamodule.summary()
    check_built_for(run.data.tags, summary, run_id)
    names = list(datamodule.info.label_names)
    trained_on = source.data.get("classes")
    if trained_on and names and list(trained_on) != names:
        print(f"warning: medbench evaluate: classes {names} scored index by index against "
              f"the run's {list(trained_on)} (set data.classes to match)", file=sys.stderr)
    tags = {"medbench.source_run": run_id, "medbench.source_dataset":
            run.data.tags.get("dataset", "")}
    new_id, metrics = train_run(cfg, tags=tags,
                                run_name=f"{run.info.run_name}-on-{summary['name']}")
    return cfg, new_id, metrics


def main(args: list[str]) -> int:
    """``medbench evaluate <run id> [overrides]``: prints the new run's summary."""
    from medbench.report import print_summary

    if not args or args[0] in ("-h", "--help") or "=" in args[0]:
        print(USAGE)
        return 0 if args and args[0] in ("-h", "--help") else 2
    from medbench.train import dataset_name

    cfg, new_id, metrics = evaluate(args[0], args[1:])
    print(f"run {new_id}: run {args[0]} evaluated on {dataset_name(cfg)}")
    print_summary(cfg, [metrics], [new_id])
    return 0
