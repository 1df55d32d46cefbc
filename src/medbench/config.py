"""Hydra composition: ``conf/`` plus ``experiments/`` served as the ``experiment`` group."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from omegaconf import DictConfig, OmegaConf, open_dict

from medbench import legacy
from medbench.config_checks import check_config
from medbench.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT_GROUP = "experiment"
# the top-level experiments/ folder is the `experiment` group (ExperimentsConfigSource); set here
# rather than in train.yaml because Hydra reads a search path from the primary config only, and
# tune.yaml includes train.yaml. Plugins' config folders follow it.
EXPERIMENTS_SOURCE = "medbench-experiments://experiments"
# what `medbench tune` exports (study.export_dir) is served as experiment=tuned/<study> too,
# so a study never writes into the source tree (experiments/tuned holds the committed ones)
TUNED_SOURCE = "medbench-tuned://results/tuned"


def yaml_error(err: yaml.YAMLError, path: Path | str | None = None) -> str:
    """One line for a YAML syntax error: the file, line and column, and what the parser
    expected."""
    mark = getattr(err, "problem_mark", None)
    where = path or (mark.name if mark else "a config file")
    at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return f"{where}{at}: not valid YAML: {getattr(err, 'problem', None) or err}"


def config_dir() -> Path:
    path = Path(os.environ.get("MEDBENCH_CONFIG_DIR") or REPO_ROOT / "conf")
    if not (path / "train.yaml").is_file():
        raise ConfigError(
            f"config folder {path} has no train.yaml: install medbench from its repository "
            f"(pip install -e .) or set MEDBENCH_CONFIG_DIR"
        )
    return path


class ExperimentsConfigSource(ConfigSource):
    """Serves a plain folder (``experiments/`` at the repository root) as the experiment group.

    Hydra maps a search-path root to groups by sub-folder name; this source lets the top-level
    ``experiments/`` folder hold presets directly, so ``experiment=survey/<id>`` finds
    ``experiments/survey/<id>.yaml``. Relative paths are taken from the repository root.
    """

    group = EXPERIMENT_GROUP  # the config group the folder is served as

    @staticmethod
    def scheme() -> str:
        return "medbench-experiments"

    def __init__(self, provider: str, path: str) -> None:
        super().__init__(provider=provider, path=path)
        folder = Path(self.path)
        self.folder = folder if folder.is_absolute() else REPO_ROOT / folder
        parts = self.group.split("/")
        self.parents = ["/".join(parts[:i]) for i in range(len(parts))]  # "", "experiment", ...

    def _full(self, config_path: str) -> Path | None:
        if config_path == self.group or config_path.startswith(self.group + "/"):
            return self.folder / config_path[len(self.group):].lstrip("/")
        return None

    def load_config(self, config_path: str) -> ConfigResult:
        full = self._full(self._normalize_file_name(config_path))
        if full is None or not full.is_file():
            raise ConfigLoadError(f"Config not found : {config_path}")
        text = full.read_text(encoding="utf-8")
        try:
            node = OmegaConf.create(text) if text.strip() else OmegaConf.create()
        except yaml.YAMLError as err:  # a preset a user is editing: where, not a traceback
            raise ConfigError(yaml_error(err, full)) from None
        if "task" in text:  # a preset in the spelling of before the task-family contract
            node = OmegaConf.create(legacy.rewrite_experiment(OmegaConf.to_container(node)))
        return ConfigResult(config=node,
                            path=f"{self.scheme()}://{self.folder}", provider=self.provider,
                            header=ConfigSource._get_header_dict(text[:512]))

    def available(self) -> bool:
        return self.folder.is_dir()

    def is_group(self, config_path: str) -> bool:
        if config_path in self.parents:
            return self.available()
        full = self._full(config_path)
        return full is not None and full.is_dir()

    def is_config(self, config_path: str) -> bool:
        full = self._full(self._normalize_file_name(config_path))
        return full is not None and full.is_file()

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        if config_path in self.parents:  # the next level of the group's own path
            child = self.group.split("/")[len(config_path.split("/")) if config_path else 0]
            names = [child] if self.available() else []
            return names if results_filter in (None, ObjectType.GROUP) else []
        full = self._full(config_path)
        files: list[str] = []
        if full is not None and full.is_dir():
            for entry in sorted(os.listdir(full)):
                self._list_add_result(files, f"{config_path}/{entry}", entry, results_filter)
        return sorted(set(files))


class TunedConfigSource(ExperimentsConfigSource):
    """Serves ``results/tuned/`` (what ``medbench tune`` exports) as ``experiment=tuned/...``."""

    group = f"{EXPERIMENT_GROUP}/tuned"

    @staticmethod
    def scheme() -> str:
        return "medbench-tuned"


def _register() -> None:
    from hydra._internal.sources_registry import SourcesRegistry

    SourcesRegistry.instance().register(ExperimentsConfigSource)
    SourcesRegistry.instance().register(TunedConfigSource)
    if not OmegaConf.has_resolver("repo_root"):
        OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT))


@contextmanager
def _hydra_session() -> Iterator[str]:
    """Hydra initialised on ``conf/``; yields the override adding ``experiments/`` and the
    plugins' config folders to the search path."""
    from medbench.plugins import CONFIG_DIRS, load_plugins

    _register()
    load_plugins()
    tuned = [TUNED_SOURCE] if (REPO_ROOT / "results" / "tuned").is_dir() else []
    search = ",".join([EXPERIMENTS_SOURCE, *tuned, *(path.as_uri() for path in CONFIG_DIRS)])
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        yield f"hydra.searchpath=[{search}]"


def config_groups(config_name: str = "train") -> dict[str, list[str]]:
    """Every config group on the search path (nested ones as ``experiment/survey``) and its
    options, as Hydra's config loader sees them for ``config_name``."""
    with _hydra_session() as search:
        loader = GlobalHydra.instance().config_loader()

        def options(group: str, kind: ObjectType) -> list[str]:
            return loader.get_group_options(group, kind, config_name, [search])

        def walk(group: str) -> list[str]:
            nested = [f"{sub}/{name}" for sub in options(group, ObjectType.GROUP)
                      for name in walk(f"{group}/{sub}")]
            return sorted(options(group, ObjectType.CONFIG) + nested)

        return {group: walk(group) for group in options("", ObjectType.GROUP)
                if group != "hydra"}


def compose_config(overrides: list[str] | None = None, config_name: str = "train") -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with Hydra overrides, as ``@hydra.main`` would.

    The group options picked (``data: breastmnist``, ``experiment: ...``) land in ``choices``;
    ``monitor: auto`` becomes the data's family's own validation metric; overrides in an old
    spelling (``task.optimizer.lr=...``) are rewritten, with a note.
    """
    from medbench.family import family_of

    with _hydra_session() as search:
        cfg = compose(config_name=config_name, overrides=[search, *_current(overrides or [])],
                      return_hydra_config=True)
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.choices = choices
        if cfg.get("monitor") == "auto":
            cfg.monitor = family_of(cfg).default_monitor
    check_config(cfg)
    return cfg


def _current(overrides: list[str]) -> list[str]:
    """Overrides in today's spelling; an old one is rewritten with a note on stderr."""
    out = []
    for override in overrides:
        new, old = legacy.rewrite_override(override)
        if old:
            print(f"note: '{override}' is now spelled '{new}'", file=sys.stderr)
        out.append(new)
    return out
