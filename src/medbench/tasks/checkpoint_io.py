"""Lightning's checkpoints written whole or not at all, and read back or refused in one line.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction whose temp file lies in
the system's temp folder and is moved (copied, across filesystems) onto the target, unsynced:
a kill -9 or a full disk mid-write can leave a truncated ``last.ckpt`` or ``best-*.ckpt``.
:class:`AtomicCheckpointIO` writes beside the target and renames (:mod:`medbench.atomic`), so
the previous checkpoint stays whole until the new one is; a write that fails (a full disk, a
read-only folder) is one line and leaves no temp file.
"""

from __future__ import annotations

import errno
import os
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from medbench.atomic import atomic_path
from medbench.errors import DataError, TrainingError, first_line

_FULL = (errno.ENOSPC, errno.EDQUOT)
_FULL_HINT = "free space, or set paths.results_dir to another disk"
_LOCKED_HINT = "make the folder writable, or set paths.results_dir to a writable folder"


def write_failure(path: str | os.PathLike[str], err: OSError) -> TrainingError:
    """The one line for a checkpoint that could not be written (``err`` from the write)."""
    hint = _FULL_HINT if err.errno in _FULL else _LOCKED_HINT
    return TrainingError(f"cannot write checkpoint {path}: {err.strerror or err} ({hint})")


def unreadable(path: str | os.PathLike[str], err: BaseException) -> DataError:
    """The one line for a checkpoint file that torch cannot read (``err`` from the read)."""
    reason = first_line(err).split(". ")[0]
    return DataError(f"truncated or not a checkpoint: {path} ({reason}): delete it and start "
                     "again, or resume from an intact copy")


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with atomic local writes and one-line read and write errors.

    Passed to the Trainer as a plugin, it becomes ``trainer.strategy.checkpoint_io`` under any
    strategy (single device, DDP: rank 0 writes)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike[str],
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:  # as TorchCheckpointIO: it has no storage options
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        try:
            with atomic_path(path) as temp:
                torch.save(checkpoint, temp)
        except OSError as err:
            raise write_failure(path, err) from None

    def load_checkpoint(self, path: str | os.PathLike[str], map_location: Any = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        kwargs = {} if map_location is None else {"map_location": map_location}
        try:
            return super().load_checkpoint(path, weights_only=weights_only, **kwargs)
        except FileNotFoundError:  # Lightning's own message
            raise
        except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
            raise unreadable(path, err) from None
