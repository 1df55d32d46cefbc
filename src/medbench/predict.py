"""`medbench predict <run id> <folder | image | manifest.csv> [--out file.csv]`: a tracked run
applied to new images. The network is rebuilt from the run's logged config and selected
checkpoint; each image is read as the run's data source reads files (1 or 3 channels, 8- or
16-bit) and goes through the run's own evaluation pipeline (resize, normalisation); the family
turns the outputs into the CSV's columns (classification: the predicted class and each class's
probability), each row naming its file.

The run's data must be at hand (its pipeline divides by the training images' largest pixel
value, and the model is sized to the data); an image the network was not built for (other
channels once read, other size after the pipeline) is refused in one line naming the file.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from medbench import atomic
from medbench.data.files import IMAGE_SUFFIXES, FileSource
from medbench.data.sources import ItemDataset
from medbench.errors import ConfigError, DataError


def input_files(where: Path) -> tuple[list[Path], Path]:
    """The images of a folder (recursively, sorted), one image, or a CSV's ``path`` column
    (relative to its folder); and the folder their ids are relative to."""
    if not where.exists():
        raise DataError(f"medbench predict: {where} not found (expected a folder of images, "
                        "an image or a CSV with a 'path' column)")
    if where.is_dir():
        paths = sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        root = where
    elif where.suffix.lower() == ".csv":
        table = pd.read_csv(where, dtype=str, keep_default_na=False)
        if "path" not in table.columns:
            raise DataError(f"medbench predict: {where} has no 'path' column (columns: "
                            f"{', '.join(table.columns)})")
        paths, root = [where.parent / p for p in table["path"]], where.parent
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise DataError(f"medbench predict: {where}: {len(missing)} listed file(s) not "
                            f"found, e.g. {missing[0]}")
    elif where.suffix.lower() in IMAGE_SUFFIXES:
        paths, root = [where], where.parent
    else:
        raise DataError(f"medbench predict: {where} is not a folder, an image "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))}) or a CSV")
    if not paths:
        raise DataError(f"medbench predict: no {sorted(IMAGE_SUFFIXES)} images under {where}")
    return paths, root


class CheckedItems(Dataset):
    """The run's pipeline over new files, each item checked against the network's input."""

    def __init__(self, items: ItemDataset, paths: list[Path], shape: tuple[int, ...],
                 run_id: str) -> None:
        self.items, self.paths, self.shape, self.run_id = items, paths, shape, run_id

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        got = tuple(item["image"].shape)
        if got != self.shape:
            raise DataError(f"medbench predict: {self.paths[index]} gives an input of shape "
                            f"{list(got)} (channels, size after the run's pipeline); run "
                            f"'{self.run_id}' was built for {list(self.shape)}")
        return item


def predict_files(run_id: str, where: Path, uri: str, runs_dir: Path, timeout_s: float = 5,
                  progress: bool = True) -> pd.DataFrame:
    """Per file of ``where``: its id and the family's prediction columns."""
    import tqdm

    from medbench.family import family_of
    from medbench.models.registry import load_pretrained
    from medbench.tracking import Tracker
    from medbench.tracking.logged_config import logged_config
    from medbench.train import build_datamodule, build_model
    from medbench.uris import reach

    paths, root = input_files(where)
    reach(uri, timeout_s, 2, create=False)
    tracker = Tracker(uri, "medbench", timeout_s=timeout_s)
    with tempfile.TemporaryDirectory(prefix="medbench-predict-") as scratch:
        cfg = logged_config(tracker, run_id, runs_dir, Path(scratch))
        family = family_of(cfg)
        checkpoint = tracker.selected_checkpoint(run_id, Path(scratch) / "checkpoint", runs_dir)
        cfg.model.pretrained_path = None
        datamodule = build_datamodule(cfg)
        datamodule.setup()
        if datamodule.info.spatial_dims != 2:
            raise ConfigError(f"medbench predict: run '{run_id}' takes "
                              f"{datamodule.info.spatial_dims}D inputs; predict reads 2D images")
        net = build_model(cfg, family, datamodule, tracker, Path(scratch))
        load_pretrained(net, checkpoint, strict=True, key=f"run '{run_id}' checkpoint")
    source = FileSource(paths, datamodule.info.in_chans, root)
    dummy = np.zeros(len(paths), dtype=np.int64)  # no targets: the pipeline needs one each
    items = ItemDataset(source, dummy, datamodule.target_kind, datamodule.build_transform(False))
    loader = DataLoader(CheckedItems(items, paths, tuple(datamodule.input_shape), run_id),
                        batch_size=datamodule.eval_batch_size, shuffle=False,
                        collate_fn=datamodule.target_kind.collate)
    net.eval()
    columns: dict[str, list[Any]] = {}
    with torch.no_grad():
        for batch in tqdm.tqdm(loader, desc="predict", unit="batch",
                               disable=None if progress else True):  # None: a terminal only
            for key, values in family.prediction_columns(net(batch["image"]),
                                                         datamodule.info).items():
                columns.setdefault(key, []).extend(values)
    return pd.DataFrame({"sample_id": source.sample_ids(), **columns})


def main(args: list[str]) -> int:
    """``medbench predict <run id> <input> [--out file.csv] [tracking.uri=...] [paths...]``."""
    from medbench.config import compose_config

    parser = argparse.ArgumentParser(prog="medbench predict", description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("input", type=Path, help="a folder of images, an image, or a CSV "
                        "with a 'path' column")
    parser.add_argument("--out", type=Path, help="the CSV written (default: "
                        "<paths.results_dir>/predictions/<run id>/<input name>.csv)")
    parser.add_argument("overrides", nargs="*", help="tracking.uri=..., paths.results_dir=...")
    options = parser.parse_intermixed_args(args)
    cfg = compose_config(options.overrides)
    table = predict_files(options.run_id, options.input, str(cfg.tracking.uri),
                          Path(cfg.paths.runs_dir), cfg.tracking.get("timeout_s", 5))
    out = options.out or (Path(cfg.paths.results_dir) / "predictions" / options.run_id
                          / f"{options.input.stem or 'input'}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, table.to_csv(index=False))
    print(f"{len(table)} prediction(s) of run {options.run_id} written to {out}")
    return 0
