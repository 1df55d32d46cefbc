"""`medbench register <run id | study:<name> | row:<method>[@<dataset>]> [--name NAME]`: a
tracked run (a study's best trial; a leaderboard row's run with the best validation score) as a
versioned MLflow pyfunc model of the Model Registry, servable with ``mlflow models serve -m
models:/<NAME>/<version> --env-manager local -h 127.0.0.1``.

The model's artifacts are the run's selected checkpoint, its logged ``config.yaml`` and
``preprocessing.json``: what the run's evaluation pipeline needs (its ``augment.eval`` steps,
normalisation, resize, views, the largest pixel value of the training images' dtype) and the
data's description (channels, classes, label names, the network's input shape) and the run's
logged metrics (a calibrated run's temperature, which divides its logits), captured at
registration. Loading rebuilds the network and the pipeline from them with medbench (the
serving environment is this one: ``--env-manager local``, no conda), without the training
data. Registration logs the model under the source run (``serving/model-<k>``) and creates a
model version tagged ``medbench.source_run``, ``dataset`` and ``test/auc``.

Input: a numpy array (N, H, W) of greyscale images, or (N, H, W, C) for C-channel data, of
the training images' dtype (uint8 for MedMNIST), as the run's data source reads files. Each
image goes through the run's evaluation pipeline; one whose shape then differs from the
network's input is refused in one line. Output: a DataFrame of the family's prediction
columns (classification: ``predicted`` and ``prob_<class>`` per class); other families are
refused in one line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from medbench.errors import ConfigError, DataError

ARTIFACT_FOLDER = "serving"


class MedbenchModel(mlflow.pyfunc.PythonModel):
    """A medbench classification run: images in, the family's prediction columns out."""

    def load_context(self, context) -> None:
        import torch
        from omegaconf import OmegaConf, open_dict

        from medbench.data.base import DatasetInfo
        from medbench.data.transforms import build_pipeline
        from medbench.family import family_of
        from medbench.models.registry import load_pretrained
        from medbench.train import build_model

        prep = json.loads(Path(context.artifacts["preprocessing"]).read_text(encoding="utf-8"))
        cfg = OmegaConf.create(Path(context.artifacts["config"]).read_text(encoding="utf-8"))
        with open_dict(cfg):
            cfg.model.pretrained_path = None  # the run's own weights are loaded below
        self.family, self.info = family_of(cfg), DatasetInfo(**prep["info"])
        self.shape, self.run_id = tuple(prep["input_shape"]), prep["run_id"]
        self.dtype = np.dtype(prep["dtype"])
        shapes = SimpleNamespace(info=self.info, model_in_chans=prep["input_shape"][0],
                                 image_size=min(prep["input_shape"][1:]))
        self.net = build_model(cfg, self.family, shapes)
        load_pretrained(self.net, context.artifacts["checkpoint"], strict=True,
                        key=f"run '{self.run_id}' checkpoint")
        self.net = self.family.served_network(self.net, prep.get("metrics", {})).cpu().eval()
        self.pipeline = build_pipeline(prep["steps"], prep["normalize"], prep["resize"],
                                       prep["views"], max_pixel_value=prep["max_pixel_value"])
        self.torch = torch

    def items(self, images: np.ndarray) -> Any:
        """(N, H, W[, C]) images -> the network's (N, *input_shape) batch, each checked."""
        images = np.asarray(images)
        if images.ndim == 3 and self.info.in_chans == 1:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] != self.info.in_chans:
            raise DataError(f"medbench serving: expected images (N, H, W) or (N, H, W, "
                            f"{self.info.in_chans}) for run '{self.run_id}', got an array of "
                            f"shape {list(images.shape)}")
        out = []
        for i, image in enumerate(images.astype(self.dtype, copy=False)):
            tensor = self.pipeline(image=image)["image"]
            if tuple(tensor.shape) != self.shape:
                raise DataError(f"medbench serving: image {i} gives an input of shape "
                                f"{list(tensor.shape)} (channels, size after the run's "
                                f"pipeline); run '{self.run_id}' was built for "
                                f"{list(self.shape)}")
            out.append(tensor)
        return self.torch.stack(out)

    def predict(self, context, model_input: np.ndarray, params=None) -> pd.DataFrame:
        """(N, H, W[, C]) images (the signature's tensor; np.ndarray: no type-hint schema)."""
        if isinstance(model_input, dict) and len(model_input) == 1:  # {"inputs": {name: ..}}
            [model_input] = model_input.values()
        if isinstance(model_input, pd.DataFrame):  # a tensor signature sends arrays; be kind
            model_input = np.stack([np.asarray(v) for v in model_input.iloc[:, 0]])
        with self.torch.no_grad():
            outputs = self.net(self.items(model_input))
        return pd.DataFrame(self.family.prediction_columns(outputs, self.info))


def preprocessing(run_id: str, datamodule: Any) -> dict[str, Any]:
    """What the run's evaluation pipeline and network need, as JSON (no training data)."""
    return {"run_id": run_id, "info": asdict(datamodule.info),
            "input_shape": list(datamodule.input_shape),
            "steps": list(datamodule.augment.get("eval") or []),
            "normalize": {k: list(v) for k, v in dict(datamodule.normalize).items()},
            "resize": datamodule.resize, "views": datamodule.augment.get("views"),
            "max_pixel_value": float(datamodule.max_pixel_value()),
            "dtype": str(np.asarray(datamodule.splits["train"][0][0]).dtype)}


def signature(info: Any, names: list[str], dtype: str):
    """Input: a tensor of images of any size (the model checks them after its pipeline) of
    the training images' dtype; output: the family's columns."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    shape = (-1, -1, -1) if info.in_chans == 1 else (-1, -1, -1, info.in_chans)
    return ModelSignature(Schema([TensorSpec(np.dtype(dtype), shape)]),
                          Schema([ColSpec("string", "predicted"),
                                  *(ColSpec("double", f"prob_{n}") for n in names)]))


def study_run(client: Any, experiment_id: str, name: str) -> str:
    """The run of the best trial of study ``name`` (its parent run's ``best_trial`` tag)."""
    query = f"tags.`medbench.kind` = 'study' and tags.`optuna.study` = '{name}'"
    parents = client.search_runs([experiment_id], query, max_results=1)
    best = parents[0].data.tags.get("best_trial") if parents else None
    if best is None:
        raise ConfigError(f"medbench register: no finished study '{name}' with a best trial "
                          "in the store")
    trials = client.search_runs([experiment_id], f"tags.`optuna.study` = '{name}' and "
                                f"tags.`optuna.trial` = '{best}'", max_results=1)
    if not trials:
        raise ConfigError(f"medbench register: study '{name}': no run of its best trial {best}")
    return trials[0].info.run_id


def row_run(client: Any, uri: str, spec: str) -> str:
    """The run of leaderboard row ``<method>[@<dataset>]`` (as the tables name them) whose
    validation score on its family's monitored metric is best: the test split plays no part
    in choosing which seed is served."""
    import difflib

    from medbench.family import get_family
    from medbench.leaderboard.build import row_members

    method, _, dataset = spec.partition("@")
    members = row_members(uri)  # every run of the store aggregated: once
    rows = {key: ids for key, ids in members.items()
            if key[1] == method and dataset in ("", key[2])}
    if not rows:
        names = sorted({key[1] for key in members})
        close = difflib.get_close_matches(method, names, n=3)
        raise ConfigError(f"medbench register: no leaderboard row '{spec}'"
                          + (f"; did you mean {', '.join(close)}?" if close else
                             f" (rows: {', '.join(names) or 'none tracked'})"))
    if len(rows) > 1:
        raise ConfigError(f"medbench register: '{method}' has rows on several datasets ("
                          f"{', '.join(sorted(key[2] for key in rows))}): name one as "
                          f"row:{method}@<dataset>")
    [((family_name, _, _), ids)] = rows.items()
    family = get_family(family_name)
    monitor = family.default_monitor
    scores = {run_id: client.get_run(run_id).data.metrics.get(monitor) for run_id in ids}
    scored = {k: v for k, v in scores.items() if v is not None}
    if not scored:
        raise ConfigError(f"medbench register: no run of row '{spec}' logged {monitor}")
    pick = max if family.monitor_mode(monitor) == "max" else min
    return pick(scored, key=scored.__getitem__)


def register_run(run_id: str, uri: str, runs_dir: Path, name: str | None = None,
                 timeout_s: float = 5) -> tuple[str, str, str]:
    """Logs run ``run_id`` (or ``study:<name>``'s best trial) as a pyfunc model and registers
    a new version of ``name``: (run id, name, version)."""
    import mlflow
    import torch
    from omegaconf import open_dict

    from medbench.family import family_of
    from medbench.tracking import Tracker
    from medbench.tracking.logged_config import logged_config
    from medbench.train import build_datamodule, dataset_name
    from medbench.uris import reach

    reach(uri, timeout_s, 2, create=False)
    tracker = Tracker(uri, "medbench", timeout_s=timeout_s)
    client = tracker.client
    if run_id.startswith("study:"):
        run_id = study_run(client, tracker.experiment_id(), run_id[len("study:"):])
    elif run_id.startswith("row:"):
        run_id = row_run(client, uri, run_id[len("row:"):])
    with tempfile.TemporaryDirectory(prefix="medbench-register-") as scratch:
        scratch = Path(scratch)
        cfg = logged_config(tracker, run_id, runs_dir, scratch)  # one line if no such run
        run = client.get_run(run_id)
        family = family_of(cfg)
        if family.name != "classification":
            raise ConfigError(f"medbench register: run '{run_id}' is a {family.name} run; "
                              "only classification runs are served yet")
        checkpoint = tracker.selected_checkpoint(run_id, scratch / "checkpoint", runs_dir)
        with open_dict(cfg):
            cfg.model.pretrained_path = None
        datamodule = build_datamodule(cfg)
        datamodule.setup()
        if datamodule.info.spatial_dims != 2:
            raise ConfigError(f"medbench register: run '{run_id}' takes "
                              f"{datamodule.info.spatial_dims}D inputs; served models take 2D "
                              "images")
        prep = preprocessing(run_id, datamodule)
        prep["metrics"] = run.data.metrics  # a calibrated test's temperature among them
        (scratch / "preprocessing.json").write_text(json.dumps(prep, indent=1), encoding="utf-8")
        (scratch / "config.yaml").write_text(cfg_text(cfg), encoding="utf-8")
        example = np.asarray(datamodule.splits["test"][0][0])[None]  # a real test image
        example = example[..., 0] if datamodule.info.in_chans == 1 else example
        names = (list(datamodule.info.label_names)
                 or [str(i) for i in range(datamodule.info.num_classes)])
        count = len(client.list_artifacts(run_id, ARTIFACT_FOLDER))
        path = f"{ARTIFACT_FOLDER}/model-{count + 1}"
        local = scratch / "model"
        mlflow.pyfunc.save_model(
            str(local), python_model=MedbenchModel(),
            signature=signature(datamodule.info, names, prep["dtype"]),
            input_example=example, artifacts={
                "checkpoint": str(checkpoint), "config": str(scratch / "config.yaml"),
                "preprocessing": str(scratch / "preprocessing.json")},
            # served in this environment (--env-manager local): no inferred list
            pip_requirements=[f"mlflow=={mlflow.__version__}",
                              f"torch=={torch.__version__.split('+')[0]}"])
        client.log_artifacts(run_id, str(local), path)
    name = name or f"{cfg.model.name}-{dataset_name(cfg)}"
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name, description="medbench runs, served by "
                                       "`mlflow models serve --env-manager local`")
    tags = {"medbench.source_run": run_id, "dataset": dataset_name(cfg),
            "model": str(cfg.model.name)}
    if "test/auc" in run.data.metrics:
        tags["test/auc"] = str(run.data.metrics["test/auc"])
    version = client.create_model_version(name, f"{run.info.artifact_uri}/{path}", run_id,
                                          tags=tags)
    return run_id, name, str(version.version)


def cfg_text(cfg: Any) -> str:
    """The config travelling with the model: the run's, every secret redacted."""
    from omegaconf import OmegaConf

    from medbench.uris import redact_config

    return OmegaConf.to_yaml(redact_config(OmegaConf.to_container(cfg, resolve=False)))


def main(args: list[str]) -> int:
    """``medbench register <run id | study:<name>> [--name NAME] [tracking.uri=...]``."""
    from medbench.config import compose_config

    parser = argparse.ArgumentParser(prog="medbench register",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run id, study:<name> (its best trial's run) or "
                        "row:<method>[@<dataset>] (a leaderboard row's best run on validation)")
    parser.add_argument("--name", help="the registered model (default: <model>-<dataset>)")
    parser.add_argument("overrides", nargs="*", help="tracking.uri=..., paths.results_dir=...")
    options = parser.parse_intermixed_args(args)
    cfg = compose_config(options.overrides)
    run_id, name, version = register_run(options.run, str(cfg.tracking.uri),
                                         Path(cfg.paths.runs_dir), options.name,
                                         cfg.tracking.get("timeout_s", 5))
    print(f"run {run_id} registered as model '{name}' version {version} "
          f"(models:/{name}/{version})")
    return 0
