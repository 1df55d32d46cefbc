"""The localization family: its metrics against hand-computed values, the contract shared code
reads, the one-WBC rules on the real BCCD, the paired test, and a real BCCD run end to end
through the `medbench train` command (and the survey's pyramid-of-scales proxy)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medbench.data.base import DatasetInfo
from medbench.errors import ConfigError
from medbench.family import FAMILIES, get_family
from medbench.metrics.localization import centre_error, localization_metrics, pair_iou

INFO = DatasetInfo("x", "localization", 2, 3, "multiclass", ["none", "WBC"])


def _batch():
    """Four images 640x480: two hold a WBC (the first found, the second missed: IoU 0), two
    hold none (the first said none, the second said WBC)."""
    boxes = torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.2, 0.2, 0.1, 0.1], [0.0] * 4, [0.0] * 4])
    preds = torch.tensor([[0.6, 0.5, 0.4, 0.4, 0.1, 0.9], [0.8, 0.8, 0.1, 0.1, 0.7, 0.3],
                          [0.5, 0.5, 0.2, 0.2, 0.8, 0.2], [0.5, 0.5, 0.2, 0.2, 0.4, 0.6]])
    target = {"box": boxes, "label": torch.tensor([1, 1, 0, 0]),
              "size": torch.tensor([[640.0, 480.0]] * 4)}
    return preds, target


def test_metrics_match_hand_computed_values():
    # shifted by 0.1 of the width: overlap 0.3 x 0.4 = 0.12, union 0.16 + 0.16 - 0.12 = 0.2
    assert pair_iou(torch.tensor([[0.6, 0.5, 0.4, 0.4]]),
                    torch.tensor([[0.5, 0.5, 0.4, 0.4]])).item() == pytest.approx(0.6)
    size = torch.tensor([[640.0, 480.0]])
    error = centre_error(torch.tensor([[0.6, 0.6, 0, 0]]), torch.tensor([[0.5, 0.5, 0, 0]]), size)
    assert error.item() == pytest.approx(np.hypot(64, 48))  # 80 px
    metrics = localization_metrics(2)
    preds, target = _batch()
    metrics.update(preds[:2], {k: v[:2] for k, v in target.items()})  # two batches
    metrics.update(preds[2:], {k: v[2:] for k, v in target.items()})
    values = {k: float(v) for k, v in metrics.compute().items()}
    assert values["iou"] == pytest.approx(0.3)  # (0.6 + 0) / 2, images without WBC left out
    assert values["centre_error"] == pytest.approx((64 + np.hypot(384, 288)) / 2)
    assert values["acc50"] == pytest.approx(0.5)  # the first: WBC and IoU 0.6; the second: no
    assert values["sensitivity"] == pytest.approx(0.5)  # 1 of the 2 WBC images said WBC
    assert values["specificity"] == pytest.approx(0.5)  # 1 of the 2 others said none
    assert values["class_acc"] == pytest.approx(0.5)


def test_family_contract():
    family = get_family("localization")
    assert "localization" in FAMILIES.names() and family.target_kind == "one_box"
    assert family.default_monitor == "val/iou" and family.monitor_mode("val/iou") == "max"
    assert family.monitor_mode("val/centre_error") == "min"
    for name, metric in family.metric_collection(INFO).items():  # declared = torchmetrics'
        assert family.metric(name).higher_is_better == metric.higher_is_better, name
    for column in family.leaderboard.columns:
        family.metric(column)
    assert family.num_outputs(INFO) == 6
    assert tuple(family.example_input(INFO, (3, 60, 80)).shape) == (1, 3, 60, 80)
    family.check_runner("lightning")
    from medbench.models import create_model

    for model in ("localizer", "pyramid_patch_localizer"):
        net = create_model(model, 3, family.num_outputs(INFO))
        assert tuple(net(torch.zeros(2, 3, 96, 128)).shape) == (2, 6), model


def test_one_wbc_rules_on_bccd(data_dir):
    from medbench.data.localization import OneBoxDataModule
    from medbench.data.targets import OneBox

    root = data_dir / "bccd" / "BCCD"
    splits = {s: f"ImageSets/Main/{s}.txt" for s in ("train", "val", "test")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the two zero-area RBC boxes
        data = OneBoxDataModule(objects=["WBC"], root=str(root), splits=splits,
                                classes=["RBC", "WBC", "Platelets"], name="bccd_wbc")
        data.setup()
    counts = data.rule_counts
    assert [(counts[s]["several"], counts[s]["empty"], counts[s]["kept"]) for s in counts] == [
        (10, 1, 205), (1, 1, 87), (3, 4, 72)]
    kept = data.splits["train"][1][7]  # BloodImage_00010: two WBCs, the larger kept
    assert kept["box"].tolist() == [239, 253, 510, 470] and kept["label"] == 1
    assert data.summary()["images_several_test"] == 3
    # a horizontal flip mirrors the normalised centre; the size stays the original image's
    import albumentations as A

    kind = OneBox(2)
    flip = A.Compose([A.HorizontalFlip(p=1)], **kind.compose_options())
    out = flip(image=np.zeros((480, 640, 3), np.uint8), **kind.augment_inputs(kept))
    item = kind.augmented(kept, out)
    assert item["box"].tolist() == pytest.approx([1 - 374.5 / 640, 361.5 / 480, 271 / 640,
                                                  217 / 480])
    with pytest.raises(ConfigError, match="data.several: expected one of largest, drop"):
        OneBoxDataModule(objects=["WBC"], several="first", root=str(root), splits=splits,
                         classes=["RBC", "WBC", "Platelets"])


def test_paired_test_over_images():
    from medbench.tasks.localization.ranking import PerImage, class_metric, paired_test

    rng = np.random.default_rng(0)
    index = np.arange(40)
    label = np.r_[np.ones(36), np.zeros(4)]
    good = PerImage(index, {"iou": rng.uniform(0.7, 0.9, 40), "label": label,
                            "pred_label": label.copy(), "hit50": np.ones(40)})
    bad = PerImage(index, {"iou": rng.uniform(0.2, 0.4, 40), "label": label,
                           "pred_label": np.ones(40), "hit50": np.zeros(40)})
    assert paired_test("iou", [good], [bad]) < 0.01
    assert paired_test("acc50", [good], [good]) == pytest.approx(1.0)
    assert class_metric("specificity")(None, bad.classes()) == 0.0
    assert np.isnan(paired_test("iou", [good], [PerImage(index + 1, good.values)]))


@pytest.mark.parametrize("experiment", ["bccd_wbc_localizer",
                                        "survey/emad2015_pyramid_of_scales_lv"])
def test_bccd_wbc_end_to_end_through_the_cli(experiment, results_dir, mlflow_client, only_run,
                                             data_dir):
    """`medbench train` on a handful of real BCCD images, tiny, for each of the two designs."""
    from medbench.cli import main
    from medbench.leaderboard.build import build_tables
    from medbench.tasks.localization.ranking import PerImage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["train", f"experiment={experiment}", f"paths.results_dir={results_dir}",
                     "trainer.enable_progress_bar=false", "trainer.max_epochs=1",
                     "data.max_images={train: 8, val: 3, test: 8}", "data.batch_size=4",
                     "data.resize=[72,96]"])
    assert code == 0
    run = only_run()
    metrics, tags = run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED" and tags["family"] == "localization"
    assert tags["dataset"] == "bccd_wbc" and tags["data.images_several_train"] == "1"
    for name in ("iou", "acc50", "centre_error", "sensitivity", "specificity", "class_acc"):
        assert f"test/{name}" in metrics and f"val/{name}" in metrics, name
    assert 0 <= metrics["test/iou"] <= 1 and metrics["test/centre_error"] >= 0
    files = {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
    assert {"per_image_test.csv", "localizations"} <= files
    local = mlflow_client.download_artifacts(run.info.run_id, "per_image_test.csv",
                                             str(results_dir))
    rows = pd.read_csv(local)
    assert rows["index"].tolist() == list(range(8)) and (rows["label"] == 1).all()
    assert rows["iou"].mean() == pytest.approx(metrics["test/iou"], abs=1e-5)
    assert PerImage.read(Path(local)).index.tolist() == list(range(8))
    tables = {t.key: t for t in build_tables(f"sqlite:///{results_dir}/mlflow.db")}
    # the optional AURC column where the table holds the run (a survey entry's): it has
    # selective prediction (tasks/referral)
    survey = experiment.startswith("survey/")
    assert tables["table14_localization"].metrics == ["iou", "acc50", "centre_error",
                                                      "sensitivity", "specificity",
                                                      *["aurc"] * survey]
