"""The config a tracked run logged, read back: what explain, evaluate, predict, export and
register rebuild a run's network from."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from medbench.errors import ConfigError
from medbench.tracking.mlflow_run import Tracker
from medbench.uris import redact


def logged_config(tracker: Tracker, run_id: str, runs_dir: Path, scratch: Path) -> DictConfig:
    """The config a run logged: its run folder's ``config.yaml``, else its artifact."""
    try:
        tracker.client.get_run(run_id)
    except Exception as err:
        raise ConfigError(f"run '{run_id}' not found in {redact(tracker.uri)} "
                          f"({redact(str(err)).splitlines()[0]})") from None
    local = runs_dir / run_id / "config.yaml"
    if not local.is_file():
        try:
            local = Path(tracker.client.download_artifacts(run_id, "config.yaml", str(scratch)))
        except Exception:
            raise ConfigError(f"run '{run_id}' has no config.yaml artifact: not a run "
                              "`medbench train` tracked") from None
    return OmegaConf.create(local.read_text(encoding="utf-8"))
