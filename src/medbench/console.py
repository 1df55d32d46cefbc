"""What a run prints: quiet by default, everything back with ``verbose=true``.

Quiet keeps the progress bar, the summary, errors and every warning or log record at WARNING
and above; it lowers the libraries' chatter below that (MLflow's table-creation lines, Lightning's
device and checkpoint-restore lines and its tips, Optuna's per-trial lines) and drops the
deprecation warnings medbench knows to be harmless. Both are scoped to the ``with`` block and
restored after it. Import-light: no torch, Lightning or MLflow.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# their INFO records are progress notes, not results (WARNING and above still print)
CHATTY_LOGGERS = ("mlflow", "alembic", "lightning.pytorch", "lightning.fabric", "optuna")
# (category, message regex): warnings of the stack, not of the run
KNOWN_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # Lightning's pytree helper on torch >= 2.10, once per process
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
)


@contextmanager
def console(verbose: bool = False) -> Iterator[None]:
    """Quiet inside the block unless ``verbose``."""
    if verbose:
        yield
        return
    loggers = {name: logging.getLogger(name) for name in CHATTY_LOGGERS}
    levels = {name: logger.level for name, logger in loggers.items()}
    with warnings.catch_warnings():
        for category, message in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        for logger in loggers.values():
            if logger.getEffectiveLevel() < logging.WARNING:
                logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for name, logger in loggers.items():
                logger.setLevel(levels[name])
