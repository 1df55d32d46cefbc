"""The resume state on disk: a run's latest full checkpoint lives only while it may resume."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from medbench.errors import RunStopped

if TYPE_CHECKING:
    from medbench.tracking.mlflow_run import Tracker

LAST_CHECKPOINT = "last.ckpt"  # written each epoch by callbacks.latest_checkpoint


def last_checkpoint(runs_dir: Path, run_id: str) -> Path:
    """The checkpoint ``resume=<run id|last>`` continues from."""
    return runs_dir / run_id / "checkpoints" / LAST_CHECKPOINT


@contextmanager
def resume_state_dropped(tracker: Tracker, runs_dir: Path, keep: bool) -> Iterator[None]:
    """Deletes the run's ``last.ckpt`` (model, optimiser, loops: the largest file of a run)
    once the run ended FINISHED or was stopped on purpose (a pruned trial): neither resumes.
    A run that failed or was killed keeps it, and so does one whose selected checkpoint it is
    (``callbacks.model_checkpoint=null``). ``keep`` (``tracking.keep_last_checkpoint``) keeps
    it always. Enter it before :meth:`Tracker.run`, so it acts after the run has ended."""
    try:
        yield
    except RunStopped:
        _drop(tracker, runs_dir, keep)
        raise
    _drop(tracker, runs_dir, keep)


def _drop(tracker: Tracker, runs_dir: Path, keep: bool) -> None:
    if keep or not tracker.active or tracker.run_id is None:
        return
    path = last_checkpoint(runs_dir, tracker.run_id)
    if not path.is_file():
        return
    selected = tracker.client.get_run(tracker.run_id).data.tags.get("best_checkpoint")
    if selected != LAST_CHECKPOINT:
        path.unlink()
