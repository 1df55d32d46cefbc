"""Where families, data sources, models and configs come from: medbench's own modules, listed
here once, and plugins (a user's own family or dataset) found without editing medbench.

A plugin is a Python module named in ``$MEDBENCH_PLUGINS`` (comma-separated) or in an installed
package's ``medbench.plugins`` entry points. Importing it registers what it defines
(``@register_family``, ``@register_datamodule``, ``@register_model``); it may add a folder of
Hydra config groups with :func:`add_config_dir` (e.g. its ``data/<name>.yaml``).

Kept import-light: the families' declaration modules import no torch, so the leaderboard and
the config composer load them without loading torch.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from pathlib import Path

from medbench.errors import ConfigError

# medbench's own task families: the package under medbench/tasks/ declaring each
BUILTIN_FAMILIES = ("medbench.tasks.classification.family",
                    "medbench.tasks.segmentation.family",
                    "medbench.tasks.detection.family",
                    "medbench.tasks.localization.family")
ENTRY_POINT_GROUP = "medbench.plugins"
ENV_VAR = "MEDBENCH_PLUGINS"

CONFIG_DIRS: list[Path] = []  # extra Hydra config folders, searched after conf/
_loaded: set[str] = set()


def add_config_dir(path: str | Path) -> None:
    """Adds a folder of config groups (``data/``, ``model/``, ``experiment/``...) to Hydra's
    search path for every later composition."""
    path = Path(path).resolve()
    if path not in CONFIG_DIRS:
        CONFIG_DIRS.append(path)


def plugin_modules() -> list[str]:
    """Module names of the plugins in ``$MEDBENCH_PLUGINS`` and the installed entry points."""
    named = [m.strip() for m in os.environ.get(ENV_VAR, "").split(",") if m.strip()]
    named += [ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return named


def load_plugins() -> None:
    """Imports the built-in families and every plugin, once per process (idempotent)."""
    for module in (*BUILTIN_FAMILIES, *plugin_modules()):
        if module in _loaded:
            continue
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"plugin '{module}' ({ENV_VAR} or entry point "
                              f"'{ENTRY_POINT_GROUP}') cannot be imported: {err}") from None
        _loaded.add(module)
