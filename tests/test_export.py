"""`medbench export`: a real short BreastMNIST run as ONNX (dynamic batch) and TorchScript
files that onnxruntime and ``torch.jit.load`` run on real test images within tolerance of the
PyTorch network, logged to the run with ``export.json``'s parity; a 1D (ECG) run's ONNX; bad
input and networks with no single tensor output are one line."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import onnxruntime
import pytest
import torch
from mlflow.tracking import MlflowClient

from medbench.cli import main
from medbench.config import compose_config
from medbench.errors import ConfigError
from medbench.export import TOLERANCE, check_exportable, parity_batch
from medbench.models import create_model
from medbench.models.registry import load_pretrained
from medbench.train import build_datamodule, train_run

BREAST = ["data=breastmnist", "model=lenet5", "trainer.max_epochs=2"]
ECG = ["data=mitbih", "model=kiranyaz_cnn1d", "trainer.max_epochs=1", "data.batch_size=64",
       "data.train_records=[106]", "data.val_records=[100]", "data.test_records=[119]",
       "runner.scheduler=null", "monitor=val/jkappa", "runner.channels_last=false"]


def _train(tmp_path_factory, mlflow_template, name: str, overrides: list[str]):
    results = tmp_path_factory.mktemp(name) / "results"
    results.mkdir()
    shutil.copyfile(mlflow_template, results / "mlflow.db")
    cfg = compose_config([f"paths.results_dir={results}", "trainer.enable_progress_bar=false",
                          *overrides])
    run_id, _ = train_run(cfg)
    return results, run_id, cfg


@pytest.fixture(scope="module")
def source_run(tmp_path_factory, mlflow_template):
    """A two-epoch LeNet-5 on the real BreastMNIST: (results folder, run id, config)."""
    return _train(tmp_path_factory, mlflow_template, "export", BREAST)


def _client(results) -> MlflowClient:
    return MlflowClient(f"sqlite:///{results / 'mlflow.db'}")


def test_onnx_and_torchscript_match_pytorch_on_real_test_images(source_run, capsys):
    results, run_id, cfg = source_run
    assert main(["export", run_id, f"paths.results_dir={results}"]) == 0
    out = capsys.readouterr().out
    folder = results / "exports" / run_id
    assert f"exported to {folder}" in out and "OVER TOLERANCE" not in out
    assert out.count("max abs diff vs PyTorch") == 2

    report = json.loads((folder / "export.json").read_text())
    assert report["run_id"] == run_id and report["model"] == "lenet5"
    assert report["input_shape"] == [1, 28, 28] and report["example_input"] == [1, 1, 28, 28]
    assert report["onnx_input"] == ["batch", 1, 28, 28]  # the batch dimension is symbolic
    assert report["opset"] == 20 and report["tolerance"] == TOLERANCE == 1e-4
    assert report["parity_batch"] == {"split": "test", "items": 32, "windows": False}
    for fmt in ("onnx", "torchscript"):
        file = folder / report["files"][fmt]["file"]
        assert file.stat().st_size == report["files"][fmt]["bytes"] > 10_000
        assert report["parity"][fmt]["within_tolerance"]
        assert 0 <= report["parity"][fmt]["max_abs_diff"] <= TOLERANCE

    # an independent check: 7 real test images through the run's pipeline, the PyTorch
    # network from the run's selected checkpoint against both files (batch 7, traced at 1)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    images = next(iter(datamodule.test_dataloader()))["image"][:7]
    net = create_model("lenet5", 1, 2).eval()
    name = _client(results).get_run(run_id).data.tags["best_checkpoint"]
    load_pretrained(net, results / "runs" / run_id / "checkpoints" / name, strict=True)
    with torch.no_grad():
        expected = net(images).numpy()
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    assert got.shape == (7, 2) and np.abs(got - expected).max() <= TOLERANCE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in torch 2.14
        scripted = torch.jit.load(str(folder / "model.torchscript.pt"))
    with torch.no_grad():
        assert np.abs(scripted(images).numpy() - expected).max() <= TOLERANCE

    logged = {a.path for a in _client(results).list_artifacts(run_id, "export")}
    assert logged == {"export/model.onnx", "export/model.torchscript.pt", "export/export.json"}


@pytest.mark.parametrize(("args", "says"), [
    (["{run}", "--format", "onnx,tflite"], "unknown format 'tflite' (known: onnx, torchscript"),
    (["0" * 32], f"run '{'0' * 32}' not found"),
])
def test_bad_input_is_one_line(source_run, tmp_path, capsys, args, says):
    results, run_id, _ = source_run
    out = tmp_path / "out"
    code = main(["export", *[a.format(run=run_id) for a in args], "--out", str(out),
                 f"paths.results_dir={results}"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and says in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_a_network_without_one_tensor_output_is_refused():
    detections = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)}]
    with pytest.raises(ConfigError, match="the detection model 'faster_rcnn' returns a list "
                                          "of dict, not one tensor"):
        check_exportable(detections, "detection", "faster_rcnn")
    check_exportable(torch.zeros(1, 2), "classification", "lenet5")  # one tensor: exported


def test_whole_images_give_windows_of_the_networks_input():
    images = torch.arange(2 * 3 * 584 * 565, dtype=torch.float32).reshape(2, 3, 584, 565)
    windows, cut = parity_batch(images, (3, 64, 64))
    assert cut and windows.shape == (32, 3, 64, 64)  # 9 x 8 windows each image, 32 kept
    assert torch.equal(windows[0], images[0, :, :64, :64])
    assert torch.equal(windows[1], images[1, :, :64, :64])
    assert torch.equal(windows[2], images[0, :, :64, 64:128])
    same, cut = parity_batch(images[:, :, :64, :64], (3, 64, 64))
    assert not cut and same.shape == (2, 3, 64, 64)


def test_a_1d_ecg_run_exports_to_onnx(tmp_path_factory, mlflow_template, tmp_path, capsys):
    with pytest.MonkeyPatch.context() as patch:  # the archive unpacks into this test's cache
        patch.setenv("MEDBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        results, run_id, _ = _train(tmp_path_factory, mlflow_template, "export_1d", ECG)
        out = tmp_path / "ecg"
        assert main(["export", run_id, "--format", "onnx", "--out", str(out),
                     f"paths.results_dir={results}"]) == 0
    assert "onnx " in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.onnx"]
    report = json.loads((out / "export.json").read_text())
    assert report["onnx_input"] == ["batch", 1, 256] and list(report["parity"]) == ["onnx"]
    assert report["parity_batch"]["items"] == 32 and report["parity"]["onnx"]["within_tolerance"]
    logged = {a.path for a in _client(results).list_artifacts(run_id, "export")}
    assert logged == {"export/model.onnx", "export/export.json"}
