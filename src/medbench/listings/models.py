"""`medbench models`: the registered models from the snapshot, sizes on request.

``medbench models`` lists name, architecture, source, family, spatial dims and minimum input
without building anything (no torch once the snapshot is cached). ``--cost`` adds the
parameter count and the MACs of one forward pass at ``--size`` px (each network built once per
setting, then cached under ``<cache>/listings/cost-<key>.json``, the key hashing the model and
family sources and the versions of torch and the model libraries); ``medbench models <name>...``
shows those models with their cost.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from medbench.errors import ConfigError
from medbench.listings import snapshot

COST_SOURCES = (*snapshot.MODEL_SOURCES, "family.py", "tasks")
DEFAULTS = {"size": 28, "in_chans": 1, "num_classes": 2}


def parse(args: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="medbench models", description="List the registered models (no network is built "
        "unless --cost or model names are given).")
    parser.add_argument("names", nargs="*", metavar="model",
                        help="show only these models, with their params and MACs")
    parser.add_argument("--cost", action="store_true",
                        help="add params and MACs (builds each network once, then cached)")
    parser.add_argument("--size", type=int, help="reference input side for MACs (raised to a "
                        f"model's minimum; default {DEFAULTS['size']}); implies --cost")
    parser.add_argument("--in-chans", type=int,
                        help=f"input channels (default {DEFAULTS['in_chans']}); implies --cost")
    parser.add_argument("--num-classes", type=int,
                        help=f"classes (default {DEFAULTS['num_classes']}); implies --cost")
    options = parser.parse_args(list(args))
    given = [name for name in DEFAULTS if getattr(options, name) is not None]
    options.cost = bool(options.cost or options.names or given)
    for name, value in DEFAULTS.items():
        if getattr(options, name) is None:
            setattr(options, name, value)
    return options


def select(rows: list[dict[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of ``names`` (all when empty); an unknown name is a one-line error."""
    if not names:
        return rows
    by_name = {row["name"]: row for row in rows}
    for name in names:
        if name not in by_name:
            close = difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"unknown model '{name}'{hint} (`medbench models` lists them)")
    return [by_name[name] for name in dict.fromkeys(names)]


def _setting(row: dict[str, Any], in_chans: int, num_classes: int, size: int) -> str:
    """The key of one model's cost: its metadata and the requested setting."""
    text = json.dumps({**row, "in_chans": in_chans, "num_classes": num_classes, "size": size},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _measure(row: dict[str, Any], in_chans: int, num_classes: int, size: int) -> list[int]:
    """Parameters, MACs and the input side of one built network."""
    from medbench.data.base import DatasetInfo
    from medbench.family import get_family
    from medbench.models import create_model
    from medbench.models.profile import count_macs, count_parameters

    side = max(size, row["min_input_size"])
    family = get_family(row["family"])
    chans = in_chans * row["views"]  # two-stream: a channel group per view
    dims = row["build_dims"]
    info = DatasetInfo("example", family.name, num_classes, chans, spatial_dims=dims)
    model = create_model(row["name"], chans, family.num_outputs(info))  # outputs: the family's
    example = family.example_input(info, (chans, *(side,) * dims))
    return [count_parameters(model), count_macs(model, example), side]


def costs(rows: list[dict[str, Any]], in_chans: int, num_classes: int,
          size: int) -> dict[str, list[int] | None]:
    """Model name -> [params, MACs, input side] (None for a composite: its members' cost),
    from the cache where it holds them; the others are built, measured and stored."""
    key = snapshot.source_key(COST_SOURCES, snapshot.library_versions(snapshot.MODEL_LIBRARIES))
    path = snapshot.cache_file("cost", key) if key else None
    stored = snapshot.read_json(path) if path else None
    if not isinstance(stored, dict):  # none yet, or not ours
        stored = {}
    found: dict[str, list[int] | None] = {}
    fresh = False
    for row in rows:
        if row["composite"]:
            found[row["name"]] = None
            continue
        setting = _setting(row, in_chans, num_classes, size)
        if setting not in stored:
            stored[setting] = _measure(row, in_chans, num_classes, size)
            fresh = True
        found[row["name"]] = stored[setting]
    if fresh and path is not None:
        snapshot.write_json(path, stored)
    return found


def table(rows: list[dict[str, Any]], cost: dict[str, list[int] | None] | None,
          title: str) -> Any:
    from rich.table import Table

    heads = ["architecture", "source", "family", "dims", "min input (px)"]
    if cost is not None:
        heads += ["params", "MACs", "at (px)"]
    grid = Table(title=title)
    grid.add_column("model", no_wrap=True)
    for head in heads:
        grid.add_column(head)
    for row in rows:
        cells = [row["architecture"], row["source"], row["family"], row["spatial_dims"],
                 str(row["min_input_size"])]
        if cost is not None:
            measured = cost.get(row["name"])
            cells += (["members'", "members'", ""] if measured is None else
                      [f"{measured[0] / 1e6:.2f} M", f"{measured[1] / 1e6:.1f} M",
                       str(measured[2])])
        grid.add_row(row["name"], *cells)
    return grid


def main(args: Sequence[str]) -> int:
    from rich.console import Console

    options = parse(args)
    rows = select(snapshot.model_rows(), options.names)
    console = Console(width=140)
    if options.cost:
        cost = costs(rows, options.in_chans, options.num_classes, options.size)
        title = (f"registered models ({options.in_chans} channel(s), {options.num_classes} "
                 "classes)")
        console.print(table(rows, cost, title))
    else:
        console.print(table(rows, None, f"registered models ({len(rows)})"))
        console.print("params and MACs: medbench models --cost [--size N] (every model), or "
                      "medbench models <name>...")
    return 0
