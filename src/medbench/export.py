"""`medbench export <run id> [--format onnx,torchscript] [--out DIR]`: a tracked run's network
as ONNX (a dynamic batch dimension) and TorchScript files, checked against PyTorch.

The network is rebuilt from the run's logged config and selected checkpoint (as ``medbench
predict`` does), in eval mode, and traced with its family's example input (one item of the
data's input shape). Parity: the outputs of the exported files (ONNX through onnxruntime's
CPUExecutionProvider) on a real batch of the run's test split (its first evaluation batch, at
most ``PARITY_ITEMS`` items: more than one, so the dynamic batch is exercised) against the
PyTorch module's; the largest absolute difference is reported against ``TOLERANCE``.

Written to ``<paths.results_dir>/exports/<run id>/`` (or ``--out``): ``model.onnx``,
``model.torchscript.pt`` and ``export.json`` (run, model, input shape, opset, files, parity),
all logged as artifacts of the source run under ``export/``. The files hold the network as it
takes one input (a segmentation run's training patch: its sliding window over whole images is
the caller's). A network whose output is not one tensor (detection models return a list of
dicts per image) is refused in one line.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medbench import atomic
from medbench.errors import ConfigError

FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
EXPORT_FOLDER = "export"
OPSET = 20  # torch 2.14's dynamo exporter's own default, named so export.json can say it
TOLERANCE = 1e-4  # max |exported - PyTorch| over the outputs (logits, masks' logits), float32
PARITY_ITEMS = 32


def parse_formats(text: str) -> list[str]:
    """``onnx,torchscript`` -> the formats, in that order; one line for an unknown one."""
    asked = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in asked if f not in FORMATS]
    if unknown or not asked:
        raise ConfigError(f"medbench export: unknown format '{','.join(unknown) or text}' "
                          f"(known: {', '.join(FORMATS)}; several: --format onnx,torchscript)")
    return list(dict.fromkeys(asked))


def check_exportable(output: Any, family: str, model: str) -> None:
    """One line when the network's output is not one tensor: the files hold a single output."""
    if not isinstance(output, torch.Tensor):
        kind = type(output).__name__
        if isinstance(output, list | tuple) and output:
            kind += f" of {type(output[0]).__name__}"
        raise ConfigError(f"medbench export: the {family} model '{model}' returns a {kind}, "
                          "not one tensor: only networks with a single tensor output are "
                          "exported (classification, segmentation, 1D and 3D classifiers)")


def export_onnx(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """ONNX with a dynamic batch dimension. torch 2.14 exports through ``torch.export``
    (``dynamo=True``, its default, needing onnxscript); the TorchScript-based exporter
    (``dynamo=False`` with ``dynamic_axes``) is deprecated, so the batch is declared with
    ``dynamic_shapes``: a ``torch.export.Dim``, which also holds for an example batch of 1."""
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(net, (example,), input_names=["input"], output_names=["output"],
                                dynamic_shapes=({0: batch},), opset_version=OPSET, dynamo=True,
                                verbose=False)
    # one self-contained file (weights inline): medbench's networks are far below ONNX's 2 GB
    with atomic.atomic_path(path) as temp:
        program.save(str(temp), external_data=False)


def export_torchscript(net: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """TorchScript traced with the example input (a CNN's graph does not branch on values).
    torch 2.14 marks ``torch.jit`` deprecated (a FutureWarning per call): asked for, silenced."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(net, example, check_trace=False)
        with atomic.atomic_path(path) as temp:
            torch.jit.save(traced, str(temp))


def parity_batch(images: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, bool]:
    """Real items as the network takes them, at most ``PARITY_ITEMS``: the test images when
    they have its input shape, else non-overlapping windows of that shape cut from them
    (segmentation runs test whole images through a sliding window of the training patch);
    and whether they are windows."""
    window, sizes = tuple(shape[1:]), tuple(images.shape[2:])
    if sizes == window:
        return images[:PARITY_ITEMS], False
    if len(sizes) != len(window) or any(s < w for s, w in zip(sizes, window, strict=True)):
        raise ConfigError(f"medbench export: test images of shape {list(images.shape[1:])} "
                          f"hold no window of the network's input {list(shape)}")
    starts = itertools.product(*(range(0, s - w + 1, w) for s, w in zip(sizes, window,
                                                                         strict=True)))
    crops = [images[(..., *(slice(o, o + w) for o, w in zip(start, window, strict=True)))]
             for start in starts]
    return torch.cat(crops)[:PARITY_ITEMS], True


def onnx_input_shape(path: Path) -> list[int | str]:
    """The ONNX graph's input shape, a symbolic dimension by its name."""
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape
    return [d.dim_param or d.dim_value for d in dims.dim]


def onnx_outputs(path: Path, images: torch.Tensor, threads: int = 0) -> np.ndarray:
    """The ONNX file's outputs through onnxruntime on the CPU (``threads`` 0: its default)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]


def torchscript_outputs(path: Path, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")(images).numpy()


def rebuild(run_id: str, uri: str, runs_dir: Path, timeout_s: float,
            retries: int) -> tuple[Any, Any, Any, Any, torch.nn.Module]:
    """(tracker, logged config, family, set-up datamodule, network with the run's selected
    checkpoint, eval mode, on the CPU)."""
    from omegaconf import open_dict

    from medbench.family import family_of
    from medbench.models.registry import load_pretrained
    from medbench.tracking import Tracker
    from medbench.tracking.logged_config import logged_config
    from medbench.train import build_datamodule, build_model
    from medbench.uris import reach

    reach(uri, timeout_s, retries, create=False)  # exporting creates no store
    tracker = Tracker(uri, "medbench", timeout_s=timeout_s, retries=retries)
    with tempfile.TemporaryDirectory(prefix="medbench-export-") as scratch:
        cfg = logged_config(tracker, run_id, runs_dir, Path(scratch))
        family = family_of(cfg)
        checkpoint = tracker.selected_checkpoint(run_id, Path(scratch) / "checkpoint", runs_dir)
        with open_dict(cfg):
            cfg.model.pretrained_path = None  # the run's own weights are loaded below
        datamodule = build_datamodule(cfg)
        datamodule.setup()
        net = build_model(cfg, family, datamodule, tracker, Path(scratch))
        load_pretrained(net, checkpoint, strict=True, key=f"run '{run_id}' checkpoint")
    return tracker, cfg, family, datamodule, net.cpu().eval()


def export_run(run_id: str, formats: list[str], out: Path, uri: str, runs_dir: Path,
               timeout_s: float = 5, retries: int = 2) -> dict[str, Any]:
    """Exports run ``run_id`` into ``out``, checks parity, logs the files to the run; the
    report written as ``export.json``."""
    tracker, cfg, family, datamodule, net = rebuild(run_id, uri, runs_dir, timeout_s, retries)
    model = str(cfg.model.name)
    example = family.example_input(datamodule.info, datamodule.input_shape)
    batch, windows = parity_batch(next(iter(datamodule.test_dataloader()))["image"],
                                  tuple(datamodule.input_shape))
    with torch.no_grad():
        check_exportable(net(example), family.name, model)
        reference = net(batch).numpy()
    out.mkdir(parents=True, exist_ok=True)
    files, parity = {}, {}
    for fmt in formats:
        path = out / FORMATS[fmt]
        if fmt == "onnx":
            try:
                export_onnx(net, example, path)
            except Exception as err:  # torch.export's own refusal, e.g. data-dependent flow
                raise ConfigError(f"medbench export: the {family.name} model '{model}' could "
                                  f"not be exported to ONNX ({type(err).__name__}: "
                                  f"{str(err).strip().splitlines()[0][:200]})") from None
            outputs = onnx_outputs(path, batch)
        else:
            export_torchscript(net, example, path)
            outputs = torchscript_outputs(path, batch)
        difference = float(np.abs(outputs.astype(np.float64) - reference).max())
        files[fmt] = {"file": path.name, "bytes": path.stat().st_size}
        parity[fmt] = {"max_abs_diff": difference, "within_tolerance": difference <= TOLERANCE}
    report = {
        "run_id": run_id, "model": model, "family": family.name,
        "dataset": datamodule.info.name, "input_shape": list(datamodule.input_shape),
        "example_input": list(example.shape), "opset": OPSET if "onnx" in formats else None,
        "onnx_input": onnx_input_shape(out / FORMATS["onnx"]) if "onnx" in formats else None,
        "files": files, "tolerance": TOLERANCE,
        "parity_batch": {"split": "test", "items": int(batch.shape[0]),
                         "windows": windows}, "parity": parity,
        "torch": torch.__version__,
    }
    atomic.write_text(out / "export.json", json.dumps(report, indent=2) + "\n")
    for name in [*(FORMATS[f] for f in formats), "export.json"]:
        tracker.client.log_artifact(run_id, str(out / name), EXPORT_FOLDER)
    return report


def summary_lines(report: dict[str, Any], out: Path) -> list[str]:
    """What the command prints: the files and each format's parity."""
    lines = [f"run {report['run_id']} ({report['model']}, {report['family']}, input "
             f"{report['input_shape']}) exported to {out}; logged under artifacts "
             f"{EXPORT_FOLDER}/"]
    items = f"{report['parity_batch']['items']} test " + (
        "window(s)" if report["parity_batch"]["windows"] else "item(s)")
    for fmt, parity in report["parity"].items():
        file = report["files"][fmt]
        verdict = "ok" if parity["within_tolerance"] else "OVER TOLERANCE"
        lines.append(f"  {fmt:<12} {file['file']} ({file['bytes'] / 1e6:.2f} MB): max abs "
                     f"diff vs PyTorch {parity['max_abs_diff']:.2e} on {items} "
                     f"(tolerance {report['tolerance']:g}: {verdict})")
    return lines


def main(args: list[str]) -> int:
    """``medbench export <run id> [--format ...] [--out DIR] [tracking.uri=...] [paths...]``."""
    from medbench.config import compose_config

    parser = argparse.ArgumentParser(prog="medbench export", description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("--format", default="onnx,torchscript",
                        help=f"comma-separated, of {', '.join(FORMATS)} (default: both)")
    parser.add_argument("--out", type=Path, help="the folder written (default: "
                        "<paths.results_dir>/exports/<run id>/)")
    parser.add_argument("overrides", nargs="*", help="tracking.uri=..., paths.results_dir=...")
    options = parser.parse_intermixed_args(args)
    formats = parse_formats(options.format)
    cfg = compose_config(options.overrides)
    out = options.out or Path(cfg.paths.results_dir) / "exports" / options.run_id
    report = export_run(options.run_id, formats, out, str(cfg.tracking.uri),
                        Path(cfg.paths.runs_dir), cfg.tracking.get("timeout_s", 5),
                        cfg.tracking.get("retries", 2))
    print("\n".join(summary_lines(report, out)))
    bad = [f for f, p in report["parity"].items() if not p["within_tolerance"]]
    if bad:
        print(f"warning: medbench export: {', '.join(bad)} output(s) differ from PyTorch by "
              f"more than {TOLERANCE:g} (see export.json)")
    return 0
