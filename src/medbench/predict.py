"""`medbench predict <run id | models:/<name>/<version>> <folder | image | manifest.csv>
[--out file.csv]`: a tracked run (or the source run of a registered model version) applied to
new images. The network is rebuilt from the run's logged config and selected checkpoint; each
image is read as the run's data source reads its files (the same channels: a file of another
count is refused in one line naming it) and goes through the run's own evaluation pipeline;
the family turns a batch into CSV rows and files written beside the CSV (``Family.predictor``:
classification a row of class probabilities per file, segmentation a mask and probability PNG
per file, detection a row per box), each row naming its file.

The run's data must be at hand (its pipeline divides by the training images' largest pixel
value, and the model is sized to the data).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from medbench import atomic
from medbench.data.files import IMAGE_SUFFIXES
from medbench.data.sources import file_ids
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


def source_run(tracker: Any, spec: str) -> str:
    """The run id ``spec`` names: itself, or a ``models:/<name>/<version>`` URI's source run
    (the version's ``medbench.source_run`` tag, as ``medbench register`` sets it)."""
    if not spec.startswith("models:/"):
        return spec
    import difflib

    from mlflow.exceptions import MlflowException

    from medbench.uris import redact

    name, _, version = spec[len("models:/"):].rpartition("/")
    if not name or not version.isdigit():
        raise ConfigError(f"medbench predict: '{spec}' is not models:/<name>/<version> (a "
                          "version number)")
    client = tracker.client
    try:
        client.get_registered_model(name)
    except MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        close = difflib.get_close_matches(name, names, n=2)
        raise ConfigError(f"medbench predict: no registered model '{name}' in "
                          f"{redact(tracker.uri)}"
                          + (f"; did you mean {', '.join(close)}?" if close else
                             f" (registered: {', '.join(names) or 'none'})")) from None
    try:
        found = client.get_model_version(name, version)
    except MlflowException:
        quoted = name.replace("'", "\\'")
        versions = sorted((str(v.version) for v in client.search_model_versions(
            f"name = '{quoted}'")), key=int)
        raise ConfigError(f"medbench predict: registered model '{name}' has no version "
                          f"{version} (versions: {', '.join(versions) or 'none'})") from None
    return found.tags.get("medbench.source_run") or found.run_id


def file_stems(ids: list[str]) -> list[str]:
    """Per sample id a relative name, without its suffix, for the files written of it: inside
    the output folder (no anchor, no '..') and unique ('-2', '-3', ... on a clash)."""
    taken: set[str] = set()
    stems = []
    for sample in ids:
        path = Path(sample)
        parts = [p for p in path.with_suffix("").parts if p not in ("..", ".", path.anchor)]
        stem = base = "/".join(parts) or "image"
        count = 1
        while stem in taken:
            count += 1
            stem = f"{base}-{count}"
        taken.add(stem)
        stems.append(stem)
    return stems


class NewImages(Dataset):
    """New files read by the run's data source and put through its eval pipeline."""

    def __init__(self, datamodule: Any, paths: list[Path], ids: list[str]) -> None:
        self.datamodule, self.paths, self.ids = datamodule, paths, ids
        self.stems = file_stems(ids)
        self.transform = datamodule.build_transform(False, targets=False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = self.datamodule.read_image(self.paths[index])
        return {"image": self.transform(image=image)["image"], "size": image.shape[:2],
                "path": self.paths[index], "sample_id": self.ids[index],
                "stem": self.stems[index]}


def collate(items: list[dict[str, Any]]) -> dict[str, list]:
    """A batch as lists (images of several sizes stay apart)."""
    return {key: [item[key] for item in items] for key in items[0]}


def predict_files(tracker: Any, run_id: str, paths: list[Path], root: Path, out: Path,
                  runs_dir: Path, progress: bool = True) -> tuple[pd.DataFrame, int]:
    """The family's rows for ``paths`` (ids relative to ``root``) and the number of files it
    wrote beside ``out`` (under ``<out's folder>/<out's stem>/``)."""
    import tqdm

    from medbench.family import PredictContext, family_of
    from medbench.models.registry import load_pretrained
    from medbench.tracking.logged_config import logged_config
    from medbench.train import build_datamodule, build_model

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
        net = family.served_network(net, tracker.client.get_run(run_id).data.metrics).eval()
        predict = family.predictor(PredictContext(cfg, net, datamodule, checkpoint, run_id,
                                                  out.stem or "files"))
    images = NewImages(datamodule, paths, file_ids(paths, root))
    loader = DataLoader(images, batch_size=datamodule.eval_batch_size, shuffle=False,
                        collate_fn=collate)
    rows: list[dict[str, Any]] = []
    written = 0
    with torch.no_grad():
        for batch in tqdm.tqdm(loader, desc="predict", unit="batch",
                               disable=None if progress else True):  # None: a terminal only
            predicted = predict(batch)
            rows += predicted.rows
            for relative, data in predicted.files.items():
                atomic.write_bytes(out.parent / relative, data)
                written += 1
    return pd.DataFrame(rows), written


def main(args: list[str]) -> int:
    """``medbench predict <run id | models:/name/version> <input> [--out file.csv]
    [tracking.uri=...] [paths...]``."""
    from medbench.config import compose_config
    from medbench.tracking import Tracker
    from medbench.uris import reach

    parser = argparse.ArgumentParser(prog="medbench predict", description=__doc__.splitlines()[0])
    parser.add_argument("run_id", help="a run id, or models:/<name>/<version> (a registered "
                        "model version: its source run)")
    parser.add_argument("input", type=Path, help="a folder of images, an image, or a CSV "
                        "with a 'path' column")
    parser.add_argument("--out", type=Path, help="the CSV written (default: "
                        "<paths.results_dir>/predictions/<run id>/<input name>.csv); files "
                        "(masks) go under its folder, in <its stem>/")
    parser.add_argument("overrides", nargs="*", help="tracking.uri=..., paths.results_dir=...")
    options = parser.parse_intermixed_args(args)
    cfg = compose_config(options.overrides)
    uri, timeout = str(cfg.tracking.uri), cfg.tracking.get("timeout_s", 5)
    paths, root = input_files(options.input)  # refused before the store is reached
    reach(uri, timeout, 2, create=False)
    tracker = Tracker(uri, "medbench", timeout_s=timeout)
    run_id = source_run(tracker, options.run_id)
    out = options.out or (Path(cfg.paths.results_dir) / "predictions" / run_id
                          / f"{options.input.stem or 'input'}.csv")
    table, written = predict_files(tracker, run_id, paths, root, out,
                                   Path(cfg.paths.runs_dir))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, table.to_csv(index=False))
    files = f" and {written} file(s) under {out.parent / out.stem}" if written else ""
    print(f"{len(table)} prediction(s) of run {run_id} written to {out}{files}")
    return 0
