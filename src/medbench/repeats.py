"""Repeated runs of one configuration (seeds x cross-validation folds) and their group key."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator

from omegaconf import DictConfig, OmegaConf, open_dict

from medbench import legacy
from medbench.errors import ConfigError

# keys that say where, how often and with what description a run is recorded, not what is
# trained and tested (the survey entry's text, published figures and tuning record describe it)
BOOKKEEPING = ("seed", "seeds", "resume", "paths", "tracking", "name", "choices", "cv.fold",
               "budget", "verbose",
               "data.root", "data.download", "survey", "reference", "tuned",
               "trainer.enable_progress_bar", "trainer.enable_model_summary",
               "callbacks.progress_bar.metrics",  # what the bar shows
               # a second reader's masks: the reference of another row (runner=observer)
               "data.observer_values", "data.splits.train.observer", "data.splits.val.observer",
               "data.splits.test.observer",
               # what a checkpoint file stores, not which one is selected
               "callbacks.model_checkpoint.save_weights_only",
               # whether copies of an image across splits stop the run, not what it trains
               "data.duplicates",
               # saliency maps of the tested model (+explain.at_test): what is written after
               "explain",
               # where the run is launched (here, or a SLURM job), not what it trains
               "cluster")
# Options added after runs were tracked, with their default: a run on the default hashes as
# it did before the option existed, so adding an option does not split leaderboard rows.
ADDED_DEFAULTS = {"model.init": "library", "data.family": "classification", "ensemble": None,
                  "data.channels": None, "data.positive_class": None, "data.classes": None,
                  # runner.calibration and .uncertainty*, under the runner's first name
                  # (legacy.hash_layout)
                  "task.calibration": None, "task.uncertainty": None,
                  "task.uncertainty_passes": 20, "trainer.num_nodes": 1}


def config_hash(cfg: DictConfig) -> str:
    """12 hex digits identifying what a run trains and tests: equal for the seeds and folds of
    one configuration, so the leaderboard aggregates them. Values interpolated from the seed
    (a classifier's ``random_state: ${seed}``) and a source run named by
    ``model.pretrained_path=run:<id>`` (one per seed) count as the same. Keys renamed since
    hashes were first computed are hashed under their first name (:func:`legacy.hash_layout`),
    so a configuration keeps its hash, and its leaderboard row, across renames."""
    neutral = cfg.copy()
    with open_dict(neutral):
        neutral.seed = 0
    resolved = OmegaConf.to_container(neutral, resolve=True)
    values = legacy.hash_layout(json.loads(json.dumps(resolved, default=str)))
    for key in (*BOOKKEEPING, *ADDED_DEFAULTS):
        *parents, leaf = key.split(".")
        node = values
        for parent in parents:
            node = node.get(parent) if isinstance(node, dict) else None
        if isinstance(node, dict) and (key not in ADDED_DEFAULTS
                                       or node.get(leaf) == ADDED_DEFAULTS[key]):
            node.pop(leaf, None)
    model = values.get("model") or {}
    if str(model.get("pretrained_path") or "").startswith("run:"):
        model["pretrained_path"] = "run:<source run>"
    text = json.dumps(values, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def expand(cfg: DictConfig) -> Iterator[DictConfig]:
    """One config per seed of ``seeds`` (else ``seed``) and per fold of ``cv.folds`` (else the
    one ``cv.fold``, or no cross-validation)."""
    seeds = list(cfg.seeds) if cfg.get("seeds") else [cfg.seed]
    cv = cfg.get("cv") or {}
    folds = [cv.get("fold")] if cv.get("fold") is not None or not cv.get("folds") else list(
        range(int(cv.folds)))
    if any(not isinstance(s, int) for s in seeds):
        raise ConfigError(f"seeds: expected a list of integers, got {list(seeds)}")
    for seed in seeds:
        for fold in folds:
            one = cfg.copy()
            with open_dict(one):
                one.seed, one.seeds = seed, None
                if fold is not None:
                    one.cv.fold = fold
            yield one


def train_repeats(cfg: DictConfig, train: Callable[..., tuple[str | None, dict[str, float]]]
                  ) -> list[tuple[DictConfig, str | None, dict[str, float]]]:
    """Trains every expanded config with ``train(cfg, tags=...)``; the runs share a
    ``medbench.group`` tag (one per command) beside their config hash."""
    configs = list(expand(cfg))
    tags = {"medbench.group": uuid.uuid4().hex[:12]} if len(configs) > 1 else {}
    outcomes = []
    for one in configs:
        run_id, metrics = train(one, tags=tags)
        outcomes.append((one, run_id, metrics))
    return outcomes
