"""One trial: compose train.yaml with the sampled overrides and train it with pruning."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from medbench import signals
from medbench.config import compose_config
from medbench.errors import interruption
from medbench.tracking import is_rank_zero
from medbench.tuning.pruning import OptunaPruning, PrunedTrial
from medbench.tuning.strategies import build_pruner
from medbench.uris import redact


@dataclass
class TrialSpec:
    """What a process needs to train one trial, in-process or as ``medbench trial <file>``."""

    overrides: list[str]  # train.yaml overrides: the user's, then the sampled values
    study_name: str
    storage: str
    trial_id: int
    number: int
    metric: str
    direction: str
    pruner: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # of the trial's MLflow run

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self)))
        path.chmod(0o600)  # the storage URL may hold a password
        return path

    @classmethod
    def load(cls, path: Path) -> TrialSpec:
        return cls(**json.loads(Path(path).read_text()))


def run_trial(spec: TrialSpec, trial: optuna.Trial | None = None) -> dict[str, Any]:
    """Train the trial; returns its outcome: state, value, epochs, test metrics, error.

    Rank 0 reports to the trial (given, or loaded from the storage in a trial process); other
    DDP ranks train the same overrides and report nothing.
    """
    if trial is None and is_rank_zero():
        study = optuna.load_study(study_name=spec.study_name, storage=spec.storage,
                                  pruner=build_pruner(spec.pruner))
        trial = optuna.Trial(study, spec.trial_id)
    from medbench.train import train_run  # heavy: torch, Lightning

    pruning = OptunaPruning(trial if is_rank_zero() else None, spec.metric, spec.direction,
                            fingerprint="\n".join(spec.overrides))
    outcome: dict[str, Any] = {"state": "FAIL", "value": None, "metrics": {}, "error": None}
    try:
        cfg = compose_config(spec.overrides)
        _, metrics = train_run(cfg, callbacks=[pruning], tags=spec.tags,
                               run_name=f"{spec.study_name}-trial{spec.number}")
        value = pruning.best()
        if not math.isfinite(value):  # runners without epochs (deep features)
            value = float(metrics.get(spec.metric, math.nan))
        outcome.update(state="COMPLETE", value=value, metrics=metrics)
    except PrunedTrial as err:
        outcome.update(state="PRUNED", value=pruning.values[-1], error=redact(str(err)))
    except Exception as err:  # the study goes on; the trial ends FAIL with the reason
        if interruption(err) is not None:  # raised by a stop: the trial is re-queued
            raise
        signals.check()  # a stop Python dropped meanwhile is this failure's likely cause
        first = redact(str(err)).splitlines()[0] if str(err) else ""
        outcome["error"] = f"{type(err).__name__}: {first}"
    outcome["epochs"] = pruning.epochs
    return outcome


def main(args: list[str]) -> int:
    """``medbench trial <spec.json> --result <out.json>``: one trial in its own process (a DDP
    launcher restarts it for each rank); rank 0 writes the outcome."""
    import argparse

    parser = argparse.ArgumentParser(prog="medbench trial")
    parser.add_argument("spec", type=Path)
    parser.add_argument("--result", type=Path, required=True)
    options = parser.parse_args(args)
    outcome = run_trial(TrialSpec.load(options.spec))
    if is_rank_zero():
        options.result.write_text(json.dumps(outcome))
    return 0
