"""`medbench predict` for segmentation and detection runs, and a registered model as the
source: tiny real runs (DRIVE U-Net, BCCD Faster R-CNN, one epoch each) applied to real files
give the masks and boxes of the runs' own test, at the thresholds their validation chose."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from medbench.cli import main
from medbench.config import compose_config

DRIVE = ["experiment=drive_unet", "trainer.max_epochs=1", "+trainer.limit_train_batches=1",
         "data.patches_per_image=4", "+model.kwargs.encoder_depth=3",
         "+model.kwargs.decoder_channels=[64,32,16]", "data.max_images={train: 3, val: 1, test: 2}"]
# data.resize: the run sees 320x240 images, its boxes must come back in the files' 640x480
BCCD = ["experiment=bccd_fasterrcnn", "trainer.max_epochs=1", "data.batch_size=2",
        "data.max_images={train: 2, val: 2, test: 2}", "model.kwargs.min_size=96",
        "model.kwargs.max_size=128", "data.resize=[240,320]"]


def _train(tmp_path_factory, mlflow_template, name: str, overrides: list[str]):
    """A tiny run in a store of its own: (results folder, run id, test metrics)."""
    from medbench.train import train_run

    results = tmp_path_factory.mktemp(name) / "results"
    results.mkdir()
    shutil.copyfile(mlflow_template, results / "mlflow.db")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_id, metrics = train_run(compose_config(
            [f"paths.results_dir={results}", "trainer.enable_progress_bar=false", *overrides]))
    return results, run_id, metrics


@pytest.fixture(scope="module")
def drive_run(tmp_path_factory, mlflow_template):
    return _train(tmp_path_factory, mlflow_template, "drive_predict", DRIVE)


@pytest.fixture(scope="module")
def bccd_run(tmp_path_factory, mlflow_template):
    return _train(tmp_path_factory, mlflow_template, "bccd_predict", BCCD)


def _tested(results: Path, run_id: str):
    """The run's family module with its selected checkpoint (weights and thresholds), and
    its test split's loader: what the run's own test step predicted with."""
    from medbench.family import family_of
    from medbench.tasks.module import load_module_state
    from medbench.train import build_datamodule, build_model

    cfg = OmegaConf.load(results / "runs" / run_id / "config.yaml")
    [checkpoint] = (results / "runs" / run_id / "checkpoints").glob("best-*.ckpt")
    cfg.model.pretrained_path = None
    family, datamodule = family_of(cfg), build_datamodule(cfg)
    datamodule.setup()
    module = family.build_module(cfg, build_model(cfg, family, datamodule), datamodule)
    load_module_state(module, checkpoint, "test")
    return module.eval(), datamodule.test_dataloader()


def _predict(capsys, results: Path, source: str, where: Path, out: Path) -> tuple[int, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["predict", source, str(where), "--out", str(out),
                     f"paths.results_dir={results}"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_drive_masks_are_the_run_s_own_test_masks_at_any_size(drive_run, data_dir, tmp_path,
                                                              capsys):
    """A DRIVE test image through `medbench predict` gives the mask the run's own test step
    gives it (the module's sliding windows, the checkpoint's threshold) and its per-image test
    metrics; a crop of another size (not a multiple of the 64-px window) a mask of its size."""
    results, run_id, metrics = drive_run
    drive = data_dir / "drive" / "DRIVE" / "test"
    (tmp_path / "new").mkdir()
    shutil.copy(drive / "images" / "01_test.tif", tmp_path / "new")
    Image.open(drive / "images" / "02_test.tif").crop((30, 40, 280, 230)).save(
        tmp_path / "new" / "crop.png")
    out = tmp_path / "masks.csv"
    code, said = _predict(capsys, results, run_id, tmp_path / "new", out)
    assert code == 0 and "2 prediction(s)" in said and "4 file(s)" in said, said
    table = pd.read_csv(out).set_index("sample_id")
    assert list(table.columns) == ["mask", "probabilities", "fraction_vessel", "threshold"]
    threshold = table.loc["01_test.tif", "threshold"]
    assert threshold == pytest.approx(metrics["test/threshold"], abs=1e-6)  # logged as float32

    module, loader = _tested(results, run_id)
    batch = next(iter(loader))  # 01_test.tif, as the test read it
    with torch.no_grad():
        probs = module.predictions(module.whole(batch["image"]))[0, 1].numpy()
    mask = np.asarray(Image.open(out.parent / table.loc["01_test.tif", "mask"]))
    assert mask.shape == (584, 565) and set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask == 255, probs >= np.float32(threshold))
    assert table.loc["01_test.tif", "fraction_vessel"] == pytest.approx((mask == 255).mean())
    stored = np.asarray(Image.open(out.parent / table.loc["01_test.tif", "probabilities"]))
    assert np.abs(stored / 255 - probs).max() <= 0.5 / 255 + 1e-6
    # inside the field of view the mask scores as the run's per-image test row says
    reference = np.asarray(Image.open(drive / "1st_manual" / "01_manual1.gif")) > 0
    fov = np.asarray(Image.open(drive / "mask" / "01_test_mask.gif")) > 0
    found = mask == 255
    tp, fp = (found & reference & fov).sum(), (found & ~reference & fov).sum()
    fn, tn = (~found & reference & fov).sum(), (~found & ~reference & fov).sum()
    row = pd.read_csv(results / "runs" / run_id / "per_image_test.csv").iloc[0]
    assert row["sample_id"] == "test/images/01_test.tif"
    assert 2 * tp / (2 * tp + fp + fn) == pytest.approx(row["dice"], abs=1e-5)
    assert tn / (tn + fp) == pytest.approx(row["specificity"], abs=1e-5)

    crop = np.asarray(Image.open(out.parent / table.loc["crop.png", "mask"]))
    assert crop.shape == (190, 250) and set(np.unique(crop)) <= {0, 255}
    assert Image.open(out.parent / table.loc["crop.png", "probabilities"]).size == (250, 190)


def test_drive_images_of_another_channel_count_are_one_line(drive_run, data_dir, tmp_path,
                                                           capsys):
    results, run_id, _ = drive_run
    grey = tmp_path / "grey.png"
    Image.open(data_dir / "drive" / "DRIVE" / "test" / "images" / "01_test.tif").convert(
        "L").save(grey)
    code, said = _predict(capsys, results, run_id, grey, tmp_path / "grey.csv")
    assert code == 1 and len(said.strip().splitlines()) == 1, said
    assert f"image {grey} has 1 channel(s) (mode L); the run's images have 3 (RGB)" in said
    assert not (tmp_path / "grey.csv").exists()


def test_bccd_boxes_are_the_run_s_own_test_boxes_in_the_files_pixels(bccd_run, data_dir,
                                                                     tmp_path, capsys):
    """BCCD's first two test images through `medbench predict` give the boxes the run's own
    test step kept at its validation threshold, scaled from the run's 320x240 input back to
    the files' 640x480; an image without a box at that threshold is one empty row."""
    results, run_id, metrics = bccd_run
    (tmp_path / "new").mkdir()
    for name in ("BloodImage_00007", "BloodImage_00011"):
        shutil.copy(data_dir / "bccd" / "BCCD" / "JPEGImages" / f"{name}.jpg", tmp_path / "new")
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "new" / "zz_black.png")
    out = tmp_path / "boxes.csv"
    code, said = _predict(capsys, results, run_id, tmp_path / "new", out)
    assert code == 0, said
    table = pd.read_csv(out)
    assert list(table.columns) == ["sample_id", "label", "score", "x1", "y1", "x2", "y2",
                                   "threshold"]
    threshold = metrics["test/threshold"]
    assert table["threshold"].unique().tolist() == pytest.approx([threshold], abs=1e-6)

    module, loader = _tested(results, run_id)
    batch = next(iter(loader))  # the two test images, 320x240 after the run's pipeline
    with torch.no_grad():
        tested = module.detect(list(batch["image"]))
    per_image = pd.read_csv(results / "runs" / run_id / "per_image_test.csv")
    for i, name in enumerate(("BloodImage_00007.jpg", "BloodImage_00011.jpg")):
        rows = table[table["sample_id"] == name]
        kept = tested[i]["scores"] >= module.score_threshold
        assert len(rows) == int(kept.sum()) == per_image.loc[i, "n_pred"] > 0
        assert rows["score"].to_numpy() == pytest.approx(tested[i]["scores"][kept].numpy(),
                                                         abs=1e-6)
        assert rows["label"].tolist() == [module.label_names[c]
                                          for c in tested[i]["labels"][kept].tolist()]
        boxes = rows[["x1", "y1", "x2", "y2"]].to_numpy()
        assert boxes == pytest.approx(tested[i]["boxes"][kept].double().numpy() * 2, abs=1e-3)
        assert boxes[:, 2].max() > 320 or boxes[:, 3].max() > 240  # in the 640x480 frame
    black = table[table["sample_id"] == "zz_black.png"]  # no box: one row, its fields empty
    assert len(black) == 1 and black[["label", "score", "x1", "y1", "x2", "y2"]].isna().all(
        axis=None)


def test_a_registered_model_predicts_as_its_source_run(lenet_breastmnist_run, data_dir,
                                                       tmp_path, capsys):
    """`medbench predict models:/<name>/<version>` (a real registry in the run's store, the
    version `medbench register` made) is its source run's prediction; a name or version the
    registry lacks is one line, exit 1."""
    results, run_id, _ = lenet_breastmnist_run
    assert main(["register", run_id, "--name", "predict-lenet",
                 f"paths.results_dir={results}"]) == 0
    version = capsys.readouterr().out.split("(models:/predict-lenet/")[1].split(")")[0]
    image = np.load(data_dir / "medmnist" / "breastmnist.npz")["test_images"][3]
    Image.fromarray(image).save(tmp_path / "03.png")
    for source, out in ((run_id, "by_run.csv"), (f"models:/predict-lenet/{version}",
                                                 "by_model.csv")):
        code, said = _predict(capsys, results, source, tmp_path / "03.png", tmp_path / out)
        assert code == 0 and f"of run {run_id}" in said, said
    by_run, by_model = (pd.read_csv(tmp_path / n) for n in ("by_run.csv", "by_model.csv"))
    pd.testing.assert_frame_equal(by_run, by_model)
    for source, says in (("models:/predict-lenett/1", "no registered model 'predict-lenett' "
                                                      "in sqlite:///"),
                         ("models:/predict-lenet/99", "registered model 'predict-lenet' has "
                                                      "no version 99 (versions: "),
                         ("models:/predict-lenet", "is not models:/<name>/<version>")):
        code, said = _predict(capsys, results, source, tmp_path / "03.png", tmp_path / "x.csv")
        assert code == 1 and says in said and len(said.strip().splitlines()) == 1, said
        assert "did you mean predict-lenet?" in said or "lenett" not in source
    assert not (tmp_path / "x.csv").exists()


def test_a_run_predict_cannot_rebuild_is_refused_in_one_line(tmp_path):
    """A detection run of another runner (R-CNN's stages, patch heatmaps) and a checkpoint
    without the family module's state (thresholds) are refused in one line each."""
    from medbench.errors import ConfigError
    from medbench.family import PredictContext, get_family
    from medbench.tasks.module import load_module_state

    cfg = compose_config(["experiment=bccd_rcnn"])
    context = PredictContext(cfg, None, None, tmp_path / "none.ckpt", "r1", "files")
    with pytest.raises(ConfigError, match="run 'r1' was fitted by runner 'rcnn'; predict takes "
                                          "detection runs of the lightning runner"):
        get_family("detection").predictor(context)
    module = torch.nn.Module()
    module.net = torch.nn.Linear(2, 1)
    module.register_buffer("thresholds", torch.zeros(1))
    torch.save({"state_dict": {"net.weight": torch.zeros(1, 2), "net.bias": torch.zeros(1)}},
               tmp_path / "net_only.ckpt")
    with pytest.raises(ConfigError, match=r"net_only.ckpt does not hold this module's state \(1 "
                                          r"tensor\(s\) missing, e.g. 'thresholds'\)"):
        load_module_state(module, tmp_path / "net_only.ckpt", "run 'r1' checkpoint")
