"""The detection family: metrics against hand counts and pycocotools, the three torchvision
detectors from their configs, the leaderboard's paired test, and a real BCCD run end to end
through the `medbench train` command."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from medbench.metrics.detection import (
    FPPI,
    DetectionScores,
    best_threshold,
    froc,
    match_image,
    per_image,
)

NAMES = ["RBC", "WBC", "Platelets"]


def _target(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64)}


def _pred(boxes, labels, scores):
    return {**_target(boxes, labels), "scores": torch.tensor(scores, dtype=torch.float32)}


def _random_case(seed: int, images: int = 6):
    """Noisy detections of random true boxes, with misses, wrong classes and extras."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(images):
        n = int(rng.integers(1, 6))
        xy = rng.uniform(0, 200, (n, 2))
        true = np.concatenate([xy, xy + rng.uniform(10, 60, (n, 2))], 1)
        labels = rng.integers(0, 3, n)
        keep = rng.random(n) < 0.8
        noisy = true[keep] + rng.normal(0, 4, (keep.sum(), 4))
        extra = rng.uniform(0, 200, (2, 2))
        boxes = np.concatenate([noisy, np.concatenate([extra, extra + 30], 1)])
        classes = np.concatenate([np.where(rng.random(keep.sum()) < 0.9, labels[keep],
                                           (labels[keep] + 1) % 3), rng.integers(0, 3, 2)])
        preds.append(_pred(boxes.tolist(), classes.tolist(), rng.random(len(boxes)).tolist()))
        targets.append(_target(true.tolist(), labels.tolist()))
    return preds, targets


def test_perfect_predictions_score_one():
    targets = [_target([[10, 10, 50, 60], [70, 20, 90, 40]], [0, 2]),
               _target([[5, 5, 30, 30]], [1])]
    preds = [{**t, "scores": torch.ones(len(t["labels"]))} for t in targets]
    scores = DetectionScores(NAMES)
    scores.update(preds, targets)
    results = scores.results()
    for key in ("map", "map50", "map75", "precision", "recall", "f1", "froc",
                *(f"ap50_{n}" for n in NAMES)):
        assert results[key] == pytest.approx(1.0), key
    rows = per_image(scores.images, results["threshold"])
    assert rows["tp"].tolist() == [2, 1] and rows["fp"].sum() == rows["fn"].sum() == 0
    assert rows["ap50"].tolist() == [1.0, 1.0] and rows["f1"].tolist() == [1.0, 1.0]


def test_a_small_case_against_a_hand_count():
    """Two true RBCs; detections 0.9 on the first (IoU 1), 0.8 a miss (IoU 0), 0.7 on the
    second (IoU 0.81), 0.6 a WBC on the first RBC (wrong class)."""
    target = _target([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])
    pred = _pred([[0, 0, 10, 10], [50, 50, 60, 60], [21, 21, 30, 30], [0, 0, 10, 10]],
                 [0, 0, 0, 1], [0.9, 0.8, 0.7, 0.6])
    scores = DetectionScores(NAMES)
    [matches] = scores.update([pred], [target])
    assert matches.matched.tolist() == [True, False, True, False]
    results = scores.results(threshold=0.65)  # 3 kept: TP, FP, TP
    assert (results["precision"], results["recall"]) == pytest.approx((2 / 3, 1.0))
    assert results["f1"] == pytest.approx(0.8)
    # COCO's 101-point interpolated AP: precision 1 up to recall 0.5, then 2/3
    assert results["ap50_RBC"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-6)
    assert np.isnan(results["ap50_Platelets"])  # no true platelet: undefined, not 0
    # VOC all-point AP of the image alone: 0.5 * 1 + 0.5 * 2/3
    assert per_image([matches], 0.65)["ap50"][0] == pytest.approx(0.5 + 0.5 * 2 / 3)
    # FROC over 1 image: 1 FP after the first hit, the second hit at 1 FP, 2 FP at the end
    assert froc([matches]) == pytest.approx({"froc_1": 1.0, "froc_2": 1.0, "froc_4": 1.0,
                                             "froc_8": 1.0, "froc": 1.0})
    assert froc([matches], rates=[0.5])["froc_0.5"] == pytest.approx(0.5)


def test_faster_backend_agrees_with_pycocotools():
    preds, targets = _random_case(0)
    fast, reference = DetectionScores(NAMES), DetectionScores(NAMES, backend="pycocotools")
    for scores in (fast, reference):
        scores.update(preds, targets)
    a, b = fast.coco(), reference.coco()
    assert 0.05 < a["map50"] < 0.95
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-6, nan_ok=True), key


def test_threshold_is_the_best_f1_and_froc_matches_a_brute_force():
    preds, targets = _random_case(1)
    images = [match_image(p["boxes"], p["scores"], p["labels"], t["boxes"], t["labels"])
              for p, t in zip(preds, targets, strict=True)]
    scores = DetectionScores(NAMES)
    scores.images = images
    f1 = {float(s): scores_f1 for s in np.concatenate([m.scores for m in images])
          for scores_f1 in [_f1(images, float(s))]}
    chosen = best_threshold(images)
    assert _f1(images, chosen) == pytest.approx(max(f1.values()))
    n_true = sum(len(m.true_labels) for m in images)
    for rate in FPPI:
        best = max([0.0] + [sum(int(((m.scores >= s) & m.matched).sum()) for m in images)
                            / n_true for s in f1
                            if sum(int(((m.scores >= s) & ~m.matched).sum()) for m in images)
                            <= rate * len(images)])
        assert froc(images)[f"froc_{rate}"] == pytest.approx(best)


def _f1(images, threshold: float) -> float:
    counts = per_image(images, threshold)
    tp, fp, fn = (counts[k].sum() for k in ("tp", "fp", "fn"))
    return 2 * tp / (2 * tp + fp + fn)


@pytest.mark.parametrize("name", ["faster_rcnn", "retinanet", "fcos"])
def test_each_detector_builds_from_its_config_trains_and_predicts(name):
    from medbench.config import REPO_ROOT
    from medbench.models import MODELS, create_model

    cfg = OmegaConf.load(REPO_ROOT / "conf" / "model" / f"{name}.yaml")
    kwargs = {**OmegaConf.to_container(cfg.kwargs), "min_size": 64, "max_size": 80}
    assert cfg.name == name and MODELS.get(name).meta["family"] == "detection"
    torch.manual_seed(0)
    net = create_model(name, 3, 4, **kwargs)
    images = [torch.rand(3, 60, 80), torch.rand(3, 80, 60)]
    targets = [_target([[5, 5, 30, 40]], [1]), _target([[10, 10, 20, 20], [1, 2, 50, 70]],
                                                       [2, 3])]
    losses = net.train()(images, targets)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        out = net.eval()(images)
    assert len(out) == 2 and set(out[0]) == {"boxes", "labels", "scores"}
    assert all((o["labels"] >= 0).all() and (o["labels"] <= 3).all() for o in out)
    assert all((o["boxes"][:, 2] <= w).all() for o, w in zip(out, (80, 60), strict=True))


def test_anchor_levels_must_match_the_feature_maps():
    from medbench.errors import ConfigError
    from medbench.models import create_model

    with pytest.raises(ConfigError, match=r"anchor_sizes has 2 level\(s\) but the backbone "
                                          r"gives 4 feature maps"):
        create_model("faster_rcnn", 3, 4, anchor_sizes=[[16], [32]])


def test_paired_test_over_images():
    from medbench.tasks.detection.ranking import PerImage, paired_test

    rng = np.random.default_rng(0)
    n = 40
    index = np.arange(n)

    def run(tp, fp, fn, ap):
        return PerImage(index, {"tp": tp, "fp": fp, "fn": fn, "ap50": ap})

    tp = rng.integers(5, 15, n).astype(float)
    good = run(tp, np.ones(n), np.ones(n), rng.uniform(0.8, 1.0, n))
    poor = run(tp - 3, np.full(n, 6.0), np.full(n, 4.0), rng.uniform(0.2, 0.5, n))
    assert paired_test("f1", [good], [poor]) < 0.01
    assert paired_test("map50", [good], [poor]) < 0.01
    assert paired_test("f1", [good], [good]) == 1.0
    assert np.isnan(paired_test("map", [good], [poor]))  # no per-image form
    other = PerImage(index + 1, good.values)
    assert np.isnan(paired_test("f1", [good], [other]))


def test_bccd_end_to_end_through_the_cli(results_dir, mlflow_client, only_run, data_dir):
    """`medbench train experiment=bccd_fasterrcnn` on a handful of real BCCD images, tiny,
    detecting through flipped views fused (runner.uncertainty=tta)."""
    from medbench.cli import main
    from medbench.leaderboard.build import build_tables
    from medbench.tasks.detection.ranking import PerImage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["train", "experiment=bccd_fasterrcnn", f"paths.results_dir={results_dir}",
                     "trainer.enable_progress_bar=false", "trainer.max_epochs=1",
                     "data.max_images={train: 4, val: 2, test: 3}", "data.batch_size=2",
                     "model.kwargs.min_size=96", "model.kwargs.max_size=128",
                     "runner.uncertainty=tta"])  # flipped views fused: uncertainty, below
    assert code == 0
    run = only_run()
    metrics, tags = run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED" and tags["family"] == "detection"
    assert tags["dataset"] == "bccd" and tags["data.class_counts_test"] == "[48, 3, 2]"
    assert "test/map50" in metrics and 0 <= metrics["test/map50"] <= 1
    assert {"test/map", "test/f1", "test/froc", "test/froc_8", "test/ap50_WBC"} <= set(metrics)
    # the test used the threshold of the selected epoch's validation
    chosen = [m.value for m in mlflow_client.get_metric_history(run.info.run_id,
                                                                 "val/threshold")]
    assert any(abs(v - metrics["test/threshold"]) < 1e-6 for v in chosen)
    files = {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
    assert {"per_image_test.csv", "detections"} <= files
    local = mlflow_client.download_artifacts(run.info.run_id, "per_image_test.csv",
                                             str(results_dir))
    rows = pd.read_csv(local)
    assert list(rows.columns) == ["index", "n_true", "n_pred", "tp", "fp", "fn", "f1", "ap50",
                                  "entropy", "mutual_info", "sample_id"]
    assert (rows["mutual_info"] >= 0).all()
    assert metrics["test/mutual_info"] == pytest.approx(rows["mutual_info"].mean(), rel=1e-5)
    # selective prediction: images referred by their box scores' entropy, scored by F1
    assert {"test/aurc", "test/selective_f1_at_90", "test/referral_excluded"} <= set(metrics)
    assert {"selective_prediction.csv", "selective_prediction.png"} <= files
    assert all(name.startswith("JPEGImages/BloodImage_") for name in rows["sample_id"])
    assert rows["index"].tolist() == [0, 1, 2] and rows["n_true"].sum() == 53
    assert (rows["tp"] + rows["fn"] == rows["n_true"]).all()
    assert (rows["tp"] + rows["fp"] == rows["n_pred"]).all()
    parsed = PerImage.read(Path(local))  # what the leaderboard's paired test reads
    assert parsed.index.tolist() == [0, 1, 2]
    assert parsed.counts().tolist() == rows[["tp", "fp", "fn"]].to_numpy().tolist()
    tables = {t.key: t for t in build_tables(f"sqlite:///{results_dir}/mlflow.db")}
    assert tables["table13_detection"].metrics == ["map50", "map", "f1", "froc"]  # not a survey row
