"""Errors that medbench reports to the user as one line (no traceback)."""

import errno
from collections.abc import Callable


class MedbenchError(Exception):
    """Base class: the message is shown to the user as is, on one line."""


class ConfigError(MedbenchError):
    """A config value is missing, unknown or inconsistent."""


class DataError(MedbenchError):
    """A data file is missing, corrupt or inconsistent with the config."""


class TrainingError(MedbenchError):
    """Training cannot go on (for example the loss became non-finite)."""


class RunStopped(Exception):
    """Raised to end a run early on purpose (a pruned trial): the MLflow run ends KILLED."""


class Interrupted(KeyboardInterrupt):
    """The process was told to stop (SIGTERM; SIGINT is Python's own KeyboardInterrupt): the
    MLflow run ends KILLED, its last checkpoint kept for ``resume=<run id>``."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


def interruption(err: BaseException) -> KeyboardInterrupt | None:
    """The interrupt behind ``err``: itself; or one in its chain of causes and contexts, as
    when Lightning turned it into ``sys.exit(1)`` after its graceful shutdown, or a library's
    clean-up broke on the state the interrupt left (OmegaConf: "'NoneType' object has no
    attribute '_invalidate_flags_cache'"; recorded as a failed trial, it silently took the
    trial's place in the study: found by fault injection); or the SIGTERM Lightning's own
    handler saw (its loops raise ``SIGTERMException`` at a batch's end: a SIGTERM whose
    exception Python dropped)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [err]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, KeyboardInterrupt):
            return current
        if isinstance(current, SystemExit) and type(current).__name__ == "SIGTERMException":
            return Interrupted("SIGTERM")
        pending += [current.__context__, current.__cause__]
    return None


class TrackingError(MedbenchError):
    """The tracking store cannot be reached (a server that refuses or does not answer)."""


def first_line(err: BaseException, clean: Callable[[str], str] = str.strip,
               limit: int = 200) -> str:
    """The first line of ``err``'s text (its class name when it has none), for a one-line
    error; ``clean`` acts on the whole text first (the redaction of credentials)."""
    return (clean(str(err)).strip().splitlines() or [type(err).__name__])[0].strip()[:limit]


def disk_fault(err: BaseException) -> MedbenchError | None:
    """A write refused by the disk (full, over quota, read-only) as the one line it deserves,
    naming the file; None for any other error (a bug keeps its traceback)."""
    if not isinstance(err, OSError) or err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return None
    hint = ("make it writable, or set paths.results_dir to another disk"
            if err.errno == errno.EROFS else
            "free space, or set paths.results_dir to another disk")
    where = f" {err.filename}" if err.filename else " a file"
    return TrainingError(f"cannot write{where}: {err.strerror or err} ({hint})")
