"""`medbench tune`: ask Optuna, train the trial, tell Optuna; many workers may share a study."""

from __future__ import annotations

import ctypes
import json
import math
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from medbench import signals
from medbench.config import compose_config
from medbench.console import console
from medbench.errors import ConfigError, TrainingError, interruption
from medbench.family import family_of
from medbench.tuning.outputs import StudyRun, best_trial, export_best
from medbench.tuning.space import SearchSpace
from medbench.tuning.study import budget_lock, claim_trial, finished_count, heartbeat, open_study
from medbench.tuning.trial import TrialSpec, run_trial

# overrides that configure the study rather than the training
TUNE_OVERRIDE = re.compile(r"^[+~]*(search|study)([./@=]|$)")
STATES = {"COMPLETE": optuna.trial.TrialState.COMPLETE,
          "PRUNED": optuna.trial.TrialState.PRUNED, "FAIL": optuna.trial.TrialState.FAIL}


@dataclass
class TuneResult:
    study_name: str
    parent_run_id: str
    finished: int
    n_trials: int
    outcomes: dict[int, dict[str, Any]] = field(default_factory=dict)  # this worker's trials
    best: optuna.trial.FrozenTrial | None = None
    exported: Path | None = None


def tune(overrides: list[str]) -> TuneResult:
    """Run (or join) the study that ``conf/tune.yaml`` plus ``overrides`` describes; quiet
    unless ``verbose=true`` (its trials too: they compose the same overrides)."""
    cfg = compose_config(overrides, config_name="tune")
    with console(bool(cfg.get("verbose"))):
        return _run_study(cfg, overrides)


def _run_study(cfg: DictConfig, overrides: list[str]) -> TuneResult:
    settings: dict[str, Any] = OmegaConf.to_container(cfg.study, resolve=True)
    space = SearchSpace(OmegaConf.to_container(cfg.search.params, resolve=True))
    train_overrides = [o for o in overrides if not TUNE_OVERRIDE.match(o)]
    _check_space(train_overrides, space)
    name = settings["name"] or _default_name(cfg)
    direction = _direction(settings, cfg)
    n_trials = int(settings["n_trials"])
    if settings["sampler"]["name"] == "grid":
        n_trials = min(n_trials, space.grid_size())
    timeout_s = cfg.tracking.get("timeout_s", 5)  # a storage server's too
    study = open_study(settings, space, name, direction, timeout_s)
    lock = budget_lock(settings["storage"], name, timeout_s)
    parent = StudyRun(cfg, study, lock, {"study": _public(settings),
                                         "search": dict(cfg.search.params),
                                         "overrides": " ".join(train_overrides)})
    result = TuneResult(name, parent.run_id, 0, n_trials)
    launch = _launcher(settings["launcher"], cfg)
    deadline = time.monotonic() + (settings["timeout"] or math.inf)
    failures = 0
    while time.monotonic() < deadline and failures < int(settings["max_consecutive_failures"]):
        trial = claim_trial(study, n_trials, lock, space, settings["heartbeat_interval"] / 2)
        if trial is None:
            break
        trial_overrides = space.overrides(trial.params)
        trial.set_user_attr("overrides", trial_overrides)
        spec = TrialSpec(train_overrides + trial_overrides, name, settings["storage"],
                         trial._trial_id, trial.number, settings["metric"], direction,
                         settings["pruner"], parent.child_tags(trial.number))
        try:
            with heartbeat(study, trial):
                outcome = launch(spec, trial)
        except BaseException as err:  # Ctrl-C, SIGTERM: the trial ends FAIL, not RUNNING
            if interruption(err) is not None:
                signals.handled()
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            if interruption(err) is not None:
                # queued again with its parameters: the study resumed runs what it would have
                # (a dead worker's trial is queued by the heartbeat's retry callback)
                study.enqueue_trial(trial.params, user_attrs={"interrupted_trial": trial.number})
                parent.interrupted()
            raise
        _tell(study, trial, outcome)
        outcome["run_id"] = parent.record_trial(trial.number, outcome)
        result.outcomes[trial.number] = outcome
        failures = failures + 1 if outcome["state"] == "FAIL" else 0
        print(f"trial {trial.number}: {outcome['state']} value={outcome['value']} "
              f"epochs={outcome['epochs']} {trial.params}"
              + (f" ({outcome['error']})" if outcome["state"] == "FAIL" else ""), flush=True)
    if failures >= int(settings["max_consecutive_failures"]):
        parent.client.set_terminated(parent.run_id, "FAILED")
        raise TrainingError(f"study {name}: {failures} trials in a row failed, the last with "
                            f"{outcome['error']} (see study.max_consecutive_failures)")
    result.finished = finished_count(study)
    out_dir = Path(cfg.paths.results_dir) / "studies" / name
    if result.finished >= n_trials:
        result.exported = export_best(study, train_overrides, Path(settings["export_dir"]))
        parent.finish(out_dir, result.exported)
    elif time.monotonic() >= deadline:  # study.timeout: the study so far, resumable
        parent.finish(out_dir, None, stopped=f"study.timeout ({settings['timeout']} s) reached "
                      f"after {result.finished} of {n_trials} trials")
    result.best = best_trial(study)
    return result


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: dict[str, Any]) -> None:
    trial.set_user_attr("epochs", outcome["epochs"])
    for key, value in outcome["metrics"].items():
        trial.set_user_attr(key, value)
    if outcome["error"]:
        trial.set_user_attr("error", outcome["error"][:1000])
    state = STATES[outcome["state"]]
    value = outcome["value"]
    if state == optuna.trial.TrialState.COMPLETE and not _finite(value):
        state = optuna.trial.TrialState.FAIL
        trial.set_user_attr("error", f"objective {value} is not finite")
        outcome["state"] = "FAIL"
    study.tell(trial, value if state == optuna.trial.TrialState.COMPLETE else None, state=state)


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(float(value))


def _check_space(train_overrides: list[str], space: SearchSpace) -> None:
    """Compose one trial's config up front so a wrong key fails before any trial starts; an
    override of a key the space samples is refused (the sampled value would win, silently)."""
    tuned = {key.lstrip("+~"): name for name, key in space.keys.items()}
    for override in train_overrides:
        key = override.partition("=")[0].lstrip("+~")
        if key in tuned:
            raise ConfigError(
                f"'{override}' sets what the search space tunes (search.params.{tuned[key]}): "
                f"drop the override, or fix it and tune the rest with "
                f"'~search.params.{tuned[key]}'")
    first = {}
    for key, dist in space.distributions.items():
        first[key] = dist.choices[0] if hasattr(dist, "choices") else dist.low
    compose_config(train_overrides + space.overrides(first))


def _default_name(cfg: DictConfig) -> str:
    experiment = (cfg.choices.get("experiment") or "train").replace("/", "-")
    return f"{experiment}-{cfg.choices.get('search')}"


def _direction(settings: dict[str, Any], cfg: DictConfig) -> str:
    """The study's direction; ``auto``: that of the metric, as the data's family declares it."""
    direction = settings["direction"]
    if direction == "auto":
        mode = family_of(cfg).monitor_mode(settings["metric"])
        return "maximize" if mode == "max" else "minimize"
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"study.direction: expected maximize, minimize or auto, got "
                          f"'{direction}'")
    return direction


def _public(settings: dict[str, Any]) -> dict[str, Any]:
    """Study settings for the parent run's params, without the storage URL (it may hold a
    password)."""
    return {k: v for k, v in settings.items() if k != "storage"}


def _launcher(kind: str, cfg: DictConfig):
    if kind == "auto":
        kind = "subprocess" if _multi_process(cfg.trainer) else "inline"
    if kind == "inline":
        return run_trial
    if kind == "subprocess":
        return _run_trial_process
    raise ConfigError(f"study.launcher: expected auto, inline or subprocess, got '{kind}'")


def _multi_process(trainer: DictConfig) -> bool:
    strategy = str(trainer.get("strategy", "auto"))
    devices = trainer.get("devices", 1)
    return ("ddp" in strategy and devices not in (1, "1")) or int(trainer.get("num_nodes", 1)) > 1


def _run_trial_process(spec: TrialSpec, trial: optuna.Trial) -> dict[str, Any]:
    """Trains the trial in ``python -m medbench trial``: a DDP launcher there restarts that same
    command for each rank, so every rank reads this spec and trains the same parameters."""
    with tempfile.TemporaryDirectory(prefix="medbench-trial-") as tmp:
        spec_path = spec.save(Path(tmp) / "spec.json")
        result_path = Path(tmp) / "result.json"
        code = subprocess.call([sys.executable, "-m", "medbench", "trial", str(spec_path),
                                "--result", str(result_path)], preexec_fn=_die_with_parent)
        if result_path.is_file():
            return json.loads(result_path.read_text())
    return {"state": "FAIL", "value": None, "metrics": {}, "epochs": 0,
            "error": f"trial process exited with code {code} before reporting"}


def _die_with_parent() -> None:
    """Linux: the trial process gets SIGKILL when its worker dies, instead of training on."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
