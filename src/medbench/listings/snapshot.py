"""Cached JSON snapshots of what the registries hold, keyed by the sources that fill them.

A snapshot's key hashes the bytes of the medbench source files named (folders: every ``.py``
under them), the plugin modules' files (``$MEDBENCH_PLUGINS`` and the ``medbench.plugins``
entry points) and any extra strings (library versions): editing a model, adding a plugin or
upgrading timm is another key, so the snapshot is built again; nothing else ever is. A plugin
whose file cannot be found without importing it disables the cache (built live every time).
Files go to ``<cache>/listings/`` (:mod:`medbench.cache`, import-light: a listing never
imports ``medbench.data``, which loads torch).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from medbench import atomic
from medbench.cache import cache_root

PACKAGE = Path(__file__).resolve().parents[1]  # src/medbench
MODEL_SOURCES = ("models", "registry.py", "plugins.py")
DATA_SOURCES = ("data", "family.py", "tasks", "plugins.py", "registry.py")
# the libraries a network's size may change with
MODEL_LIBRARIES = ("torch", "torchvision", "timm", "monai", "segmentation-models-pytorch",
                   "acsconv")
SNAPSHOT_VERSION = 1  # bump when a snapshot's layout changes


def library_versions(names: Iterable[str]) -> list[str]:
    """``name==version`` of each installed distribution (``name==-`` when absent), read from
    the package metadata: nothing is imported."""
    found = []
    for name in names:
        try:
            found.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            found.append(f"{name}==-")
    return found


def _python_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
    return [path] if path.is_file() else []


def _plugin_files() -> list[Path] | None:
    """The files of every plugin module, or None when one cannot be located unimported."""
    from medbench.plugins import plugin_modules

    files: list[Path] = []
    for name in plugin_modules():
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.origin or not Path(spec.origin).is_file():
            return None
        files.append(Path(spec.origin))
        for folder in spec.submodule_search_locations or ():
            files.extend(_python_files(Path(folder)))
    return files


def source_key(parts: Sequence[str], extra: Sequence[str] = ()) -> str | None:
    """A short hash of the named medbench sources (relative to the package), the plugins'
    files and ``extra``; None when a plugin's files cannot be found (no caching)."""
    plugins = _plugin_files()
    if plugins is None:
        return None
    digest = hashlib.sha256(f"v{SNAPSHOT_VERSION}".encode())
    files = [f for part in parts for f in _python_files(PACKAGE / part)] + plugins
    for path in files:  # medbench's own named relative to the package: a moved checkout hits
        label = path.relative_to(PACKAGE) if path.is_relative_to(PACKAGE) else path
        digest.update(str(label).encode() + b"\0")
        digest.update(path.read_bytes())
    for text in extra:
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()[:16]


def cache_file(kind: str, key: str) -> Path:
    return cache_root() / "listings" / f"{kind}-{key}.json"


def read_json(path: Path) -> Any:
    """The JSON value in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, value: Any) -> None:
    """Writes ``value`` atomically (a temporary file renamed); a read-only cache is skipped."""
    try:
        atomic.write_text(path, json.dumps(value, indent=1, sort_keys=True))
    except OSError:
        pass


def cached(kind: str, key: str | None, build: Callable[[], Any]) -> Any:
    """The snapshot ``kind`` for ``key`` from the cache, else ``build()`` (stored for next
    time)."""
    if key is None:
        return build()
    path = cache_file(kind, key)
    value = read_json(path)
    if value is None:
        value = build()
        write_json(path, value)
    return value


def _model_rows() -> list[dict[str, Any]]:
    import inspect

    from medbench.models import MODELS
    from medbench.plugins import load_plugins

    load_plugins()
    rows = []
    for entry in MODELS:
        meta = entry.meta
        declared = meta.get("spatial_dims")
        accepts_any = meta.get("composite") or (
            declared is None and "spatial_dims" in inspect.signature(entry.builder).parameters)
        rows.append({
            "name": entry.name,
            "architecture": str(meta.get("architecture", "")),
            "source": str(meta.get("source", "")),
            "family": str(meta.get("family", "classification")),
            "min_input_size": int(meta.get("min_input_size", 1)),
            "spatial_dims": "any" if accepts_any else str(declared or 2),
            "build_dims": int(declared or 2),
            "composite": bool(meta.get("composite", False)),
            "views": int(meta.get("views", 1)),
        })
    return rows


def model_rows() -> list[dict[str, Any]]:
    """One dict per registered model (medbench's and plugins'), sorted by name: name,
    architecture, source, family, min_input_size, spatial_dims (``1``, ``2``, ``3`` or ``any``),
    build_dims, composite, views."""
    return cached("models", source_key(MODEL_SOURCES), _model_rows)


def _data_index() -> dict[str, Any]:
    from medmnist import INFO

    from medbench.data import DATAMODULES
    from medbench.family import family_names
    from medbench.plugins import CONFIG_DIRS, load_plugins

    load_plugins()
    return {
        "families": family_names(),
        "sources": DATAMODULES.names(),
        "medmnist": {flag: {"python_class": info["python_class"], "task": info["task"]}
                     for flag, info in sorted(INFO.items())},
        "config_dirs": [str(path) for path in CONFIG_DIRS],
    }


def data_index() -> dict[str, Any]:
    """The task families (in their order), data source names, MedMNIST flags (python class,
    task) and the plugins' config folders."""
    key = source_key(DATA_SOURCES, library_versions(["medmnist"]))
    return cached("data", key, _data_index)
