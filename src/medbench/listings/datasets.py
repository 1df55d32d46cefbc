"""`medbench datasets`: each data config, whether its files are under the data root, and how
to get the missing ones.

The data configs (``conf/data/*.yaml`` and the plugins' ``data/`` folders) are read as YAML,
``defaults`` merged, ``${paths.data_dir}`` replaced by the data root (``$MEDBENCH_DATA_DIR``, else
``~/.medbench/data``, or ``--root``); Hydra, torch and the loaders are not imported. Configs
still holding ``???`` (``image_folder``, ``csv_manifest``, ...) are templates for one's own data.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medbench.listings import snapshot
from medbench.listings.fetch import how_to_get

MEDMNIST_SIZES = {"medmnist": (28, 64, 128, 224), "medmnist3d": (28, 64)}
MITBIH_ARCHIVE = "mitbih_arrhythmia/mitdb_48records_rewritten.tar.xz"  # data/ecg.py's ARCHIVE
MITBIH_SOURCES = ("mitbih", "mitbih_binary")
BOX_SOURCES = ("boxes", "one_box")


@dataclass(frozen=True)
class DatasetRow:
    """One data config: whether its files are there (``yes``, ``no``, ``partial``, or ``-``:
    nothing to look for), the path looked at and what else was found."""

    name: str
    family: str
    source: str
    present: str
    looked_for: str
    detail: str = ""
    flag: str = ""  # MedMNIST: the flag and size to download
    size: int = 0


def data_root(root: str | Path | None = None) -> Path:
    """``root``, else ``$MEDBENCH_DATA_DIR``, else ``~/.medbench/data`` (conf/paths)."""
    return Path(root or os.environ.get("MEDBENCH_DATA_DIR") or Path.home() / ".medbench" / "data")


def npz_name(flag: str, size: int) -> str:
    """MedMNIST's file name (``data/medmnist.py``'s rule)."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config(folders: Sequence[Path], name: str, seen: tuple[str, ...] = ()) -> dict:
    """The data config ``name`` with its ``defaults`` (same group) merged in, as Hydra does."""
    path = next((f / f"{name}.yaml" for f in folders if (f / f"{name}.yaml").is_file()), None)
    if path is None or name in seen:
        return {}
    own = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    merged: dict[str, Any] = {}
    defaults = own.pop("defaults", None) or ["_self_"]
    if "_self_" not in defaults:
        defaults = [*defaults, "_self_"]
    for item in defaults:
        if item == "_self_":
            merged = _merge(merged, own)
        elif isinstance(item, str):
            merged = _merge(merged, read_config(folders, item, (*seen, name)))
    return merged


def _resolve(value: Any, root: Path) -> Any:
    if isinstance(value, str):
        return value.replace("${paths.data_dir}", str(root))
    if isinstance(value, dict):
        return {k: _resolve(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, root) for v in value]
    return value


def _is_template(cfg: dict[str, Any]) -> bool:
    return any(cfg.get(key) == "???" for key in ("root", "manifest", "flag", "splits"))


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _medmnist(cfg: dict[str, Any], root: Path) -> tuple[str, str, str]:
    where = Path(cfg.get("root") or root)
    flag, size = str(cfg["flag"]), int(cfg.get("size", 28))

    def found(side: int) -> Path | None:
        name = npz_name(flag, side)
        return next((f / name for f in (where / "medmnist", where) if (f / name).is_file()),
                    None)

    path = found(size)
    sizes = [str(s) for s in MEDMNIST_SIZES[cfg["source"]] if found(s)]
    detail = f"sizes here: {', '.join(sizes)} px" if sizes else ""
    shown = path or where / "medmnist" / npz_name(flag, size)
    return ("yes" if path else "no"), _shown(shown, root), detail


def _image_masks(cfg: dict[str, Any], root: Path) -> tuple[str, str, str]:
    where = Path(cfg["root"])
    splits = cfg.get("splits") or {}
    there = [split for split, spec in splits.items()
             if isinstance(spec, dict) and spec.get("images")
             and next(where.glob(str(spec["images"])), None) is not None]
    first = next(iter(splits.values()), {}) if splits else {}
    shown = where / str(first.get("images", "")) if isinstance(first, dict) else where
    present = "yes" if splits and len(there) == len(splits) else ("partial" if there else "no")
    detail = f"splits here: {', '.join(there)}" if present == "partial" else ""
    return present, _shown(shown, root), detail


def _boxes(cfg: dict[str, Any], root: Path) -> tuple[str, str, str]:
    where = Path(cfg["root"])
    splits = cfg.get("splits") or {}
    needed = [where / str(f) for f in (splits.values() if isinstance(splits, dict) else [])]
    needed += [(where / str(cfg[k])).parent for k in ("images", "annotations") if cfg.get(k)]
    missing = [p for p in needed if not p.exists()]
    present = "no" if not where.is_dir() else ("partial" if missing else "yes")
    detail = f"missing: {_shown(missing[0], root)}" if present == "partial" else ""
    return present, _shown(where, root), detail


def _mitbih(cfg: dict[str, Any], root: Path) -> tuple[str, str, str]:
    archive = Path(cfg["archive"]) if cfg.get("archive") else Path(
        cfg.get("root") or root) / MITBIH_ARCHIVE
    return ("yes" if archive.is_file() else "no"), _shown(archive, root), ""


def _generic(cfg: dict[str, Any], root: Path) -> tuple[str, str, str]:
    where = cfg.get("root")
    if not where:
        return "-", "", ""
    path = Path(where)
    present = "yes" if path.is_dir() and any(path.iterdir()) else "no"
    return present, _shown(path, root), ""


def presence(cfg: dict[str, Any], root: Path) -> tuple[str, str, str]:
    """(present, path looked at, detail) for one resolved data config."""
    source = cfg.get("source", "")
    if source in MEDMNIST_SIZES:
        return _medmnist(cfg, root)
    if source == "image_masks":
        return _image_masks(cfg, root)
    if source in BOX_SOURCES:
        return _boxes(cfg, root)
    if source in MITBIH_SOURCES:
        return _mitbih(cfg, root)
    return _generic(cfg, root)


def config_folders(index: dict[str, Any]) -> list[Path]:
    from medbench.config import config_dir

    return [config_dir() / "data", *(Path(d) / "data" for d in index.get("config_dirs", []))]


def dataset_rows(root: Path, folders: Sequence[Path]) -> tuple[list[DatasetRow], list[str]]:
    """One row per concrete data config, and the names of the templates."""
    names = sorted({p.stem for f in folders if f.is_dir() for p in f.glob("*.yaml")})
    rows, templates = [], []
    for name in names:
        cfg = _resolve(read_config(folders, name), root)
        if _is_template(cfg):
            templates.append(name)
            continue
        present, looked_for, detail = presence(cfg, root)
        medmnist = cfg.get("source") in MEDMNIST_SIZES
        rows.append(DatasetRow(name, str(cfg.get("family", "classification")),
                               str(cfg.get("source", "")), present, looked_for, detail,
                               str(cfg["flag"]) if medmnist else "",
                               int(cfg.get("size", 28)) if medmnist else 0))
    return rows, templates


def main(args: Sequence[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(
        prog="medbench datasets", description="Which datasets are under the data root, and how "
        "to get the others.")
    parser.add_argument("--root", help="data root to look in (default: $MEDBENCH_DATA_DIR, "
                        "else ~/.medbench/data)")
    options = parser.parse_args(list(args))
    root = data_root(options.root)
    index = snapshot.data_index()
    rows, templates = dataset_rows(root, config_folders(index))
    origin = ("--root" if options.root else "MEDBENCH_DATA_DIR"
              if os.environ.get("MEDBENCH_DATA_DIR") else "default; set MEDBENCH_DATA_DIR")
    grid = Table(title=f"datasets under {root} ({origin})")
    grid.add_column("data=", no_wrap=True)
    for head in ("family", "source", "present"):
        grid.add_column(head)
    grid.add_column("looked for", overflow="fold")
    grid.add_column("also")
    for row in rows:
        grid.add_row(row.name, row.family, row.source, row.present, row.looked_for, row.detail)
    console = Console(width=140, soft_wrap=True)
    console.print(grid)
    here = sum(row.present == "yes" for row in rows)
    console.print(f"{here} of {len(rows)} present (partial: some splits' files missing; -: "
                  "nothing on disk to look for).", highlight=False)
    notes = how_to_get([r for r in rows if r.present in ("no", "partial")], root, index)
    if notes:
        console.print("how to get the missing ones:", highlight=False)
        for note in notes:
            console.print(f"  - {note}", highlight=False, markup=False)
    console.print(f"templates for your own data (set their ??? keys: data.root, data.manifest, "
                  f"data.flag, ...): {', '.join(templates)}", highlight=False, markup=False)
    console.print("task families:", ", ".join(index["families"]), highlight=False)
    console.print("data sources:", ", ".join(index["sources"]), highlight=False)
    flags = [f for f in index["medmnist"] if not f.endswith("3d")]
    console.print("MedMNIST 2D flags (data=medmnist data.flag=<flag>):", ", ".join(flags),
                  highlight=False)
    return 0
