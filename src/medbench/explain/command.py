"""`medbench explain <run id>`: a tracked run's selected checkpoint rebuilt from its logged
config, its test images explained, the overlays, scores and sanity check logged to that run
(artifacts under ``explain/``, metrics ``explain/<method>/...``)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from medbench.data.base import SplitDataModule
from medbench.errors import ConfigError
from medbench.explain.explained import ExplainOptions, explain_network, explain_options
from medbench.explain.targets import targets_for
from medbench.family import family_of
from medbench.models.registry import load_pretrained
from medbench.tracking import Tracker
from medbench.tracking.logged_config import logged_config
from medbench.uris import reach

EXPLAIN_FOLDER = "explain"


def explain_tracked_run(run_id: str, uri: str, runs_dir: Path, options: ExplainOptions,
                        timeout_s: float = 5, retries: int = 2) -> dict[str, float]:
    """Explains run ``run_id`` of the store ``uri`` and logs the outcome to it."""
    from medbench.train import build_datamodule, build_model

    reach(uri, timeout_s, retries, create=False)  # explaining creates no store
    tracker = Tracker(uri, "medbench", timeout_s=timeout_s, retries=retries)
    with tempfile.TemporaryDirectory(prefix="medbench-explain-") as scratch:
        scratch = Path(scratch)
        cfg = logged_config(tracker, run_id, runs_dir, scratch)
        family = family_of(cfg)
        targets = targets_for(family.name)
        checkpoint = tracker.selected_checkpoint(run_id, scratch / "checkpoint", runs_dir)
        with open_dict(cfg):
            cfg.model.pretrained_path = None  # the run's own weights are loaded below
        datamodule = build_datamodule(cfg)
        datamodule.setup()
        net = build_model(cfg, family, datamodule, tracker, scratch)
        load_pretrained(net, checkpoint, strict=True, key=f"run '{run_id}' checkpoint")
        targets.use_checkpoint(checkpoint)
        folder = runs_dir / run_id / EXPLAIN_FOLDER
        files, metrics = explain_network(net, datamodule, targets, options, folder)
        log_explanation(tracker, run_id, folder, files, metrics)
    return metrics


def explain_after_test(tracker: Tracker, cfg: DictConfig, net: nn.Module,
                       datamodule: SplitDataModule, checkpoint: str | None,
                       run_dir: Path) -> None:
    """``explain.at_test=true`` (``+explain.at_test=true`` on ``medbench train``): the run's
    selected checkpoint explained once tested, logged as ``medbench explain`` logs it."""
    if not checkpoint:
        print("explain.at_test: the run selected no checkpoint: nothing explained")
        return
    try:  # a bad explain option costs the explanations, not the run trained and tested
        options = explain_options(OmegaConf.to_container(cfg.explain, resolve=True))
        load_pretrained(net, checkpoint, strict=True, key="explain.at_test: checkpoint")
        folder = run_dir / EXPLAIN_FOLDER
        targets = targets_for(family_of(cfg).name)
        targets.use_checkpoint(checkpoint)
        files, metrics = explain_network(net, datamodule, targets, options, folder)
    except ConfigError as err:
        print(f"warning: explain.at_test: {err} (nothing explained; the run is kept: "
              f"medbench explain {tracker.run_id} explain.<key>=<value> explains it)",
              file=sys.stderr)
        return
    log_explanation(tracker, str(tracker.run_id), folder, files, metrics)


def log_explanation(tracker: Tracker, run_id: str, folder: Path, files: list[Path],
                    metrics: dict[str, float]) -> None:
    """The files under the run's ``explain/`` artifacts (their sub-folders kept), the metrics
    on the run."""
    for path in files:
        parent = path.parent.relative_to(folder)
        where = EXPLAIN_FOLDER if parent == Path(".") else f"{EXPLAIN_FOLDER}/{parent}"
        tracker.client.log_artifact(run_id, str(path), where)
    for key, value in metrics.items():
        tracker.client.log_metric(run_id, key, float(value))


def summary_lines(run_id: str, metrics: dict[str, float]) -> list[str]:
    """What the command prints: per method explained the sanity check and faithfulness."""
    lines = [f"run {run_id}: explanations logged under artifacts {EXPLAIN_FOLDER}/"]
    methods = [key.split("/")[1] for key in metrics if key.endswith("/rank_corr_randomized")]
    for method in methods:
        corr = metrics[f"explain/{method}/rank_corr_randomized"]
        flag = metrics[f"explain/{method}/sanity_flag"]
        lines.append(
            f"  {method:<12} rank corr. with randomised weights {corr:+.3f}"
            f"{'  FLAGGED: maps barely depend on the weights' if flag else ''}; confidence "
            f"change {metrics[f'explain/{method}/confidence_change']:+.3f}; "
            f"{metrics[f'explain/{method}/seconds_per_image']:.3f} s/image")
    return lines


def main(args: list[str]) -> int:
    """``medbench explain <run id> [explain.<key>=<value> ...] [overrides of the store]``."""
    from medbench.config import compose_config

    if not args or args[0] in ("-h", "--help") or "=" in args[0]:
        print("usage: medbench explain <run id> [explain.methods=[gradcam,gradcam_pp,scorecam]]"
              " [explain.target_layer=<layer>] [explain.indices=[0,5]] [explain.top=4] "
              "[explain.crop=[64,64]] "
              "[tracking.uri=...] [paths.results_dir=...]")
        return 0 if args and args[0] in ("-h", "--help") else 2
    run_id, rest = args[0], args[1:]
    options = explain_options([a for a in rest if a.startswith("explain.")])
    cfg = compose_config([a for a in rest if not a.startswith("explain.")])
    metrics = explain_tracked_run(run_id, str(cfg.tracking.uri), Path(cfg.paths.runs_dir),
                                  options, cfg.tracking.get("timeout_s", 5),
                                  cfg.tracking.get("retries", 2))
    print("\n".join(summary_lines(run_id, metrics)))
    return 0
