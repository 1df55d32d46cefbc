"""Errors that medbench reports to the user as one line (no traceback)."""


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


class TrackingError(MedbenchError):
    """The tracking store cannot be reached (a server that refuses or does not answer)."""
