"""Saliency maps of a localizer trained briefly on real BCCD images (one white blood cell per
image): the localization family's targets (the predicted class's logit, the predicted box
drawn), the randomisation check and faithfulness logged by ``+explain.at_test=true``."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch
from PIL import Image

from medbench.cli import main
from medbench.explain.targets import targets_for


def test_a_bccd_localizer_explains_its_test_images(results_dir, mlflow_client, only_run):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["train", "experiment=bccd_wbc_localizer", f"paths.results_dir={results_dir}",
                     "trainer.enable_progress_bar=false", "trainer.max_epochs=1",
                     "data.max_images={train: 8, val: 3, test: 4}", "data.batch_size=4",
                     "data.resize=[72,96]", "+explain.at_test=true", "+explain.top=1",
                     "+explain.methods=[gradcam,scorecam]", "+explain.sanity_stages=2"])
    assert code == 0
    run = only_run()
    metrics = run.data.metrics
    for method in ("gradcam", "scorecam"):
        assert -1 <= metrics[f"explain/{method}/rank_corr_randomized"] <= 1
        assert np.isfinite(metrics[f"explain/{method}/confidence_change"])
        files = [a.path for a in mlflow_client.list_artifacts(run.info.run_id,
                                                              f"explain/{method}")]
        assert files and all(f.endswith(".png") for f in files)
        local = mlflow_client.download_artifacts(run.info.run_id, files[0], str(results_dir))
        assert Image.open(local).size == (96, 72)  # the input's size (W, H)
    table = pd.read_csv(results_dir / "runs" / run.info.run_id / "explain" / "explained.csv")
    assert {"confidence", "true_score", "iou", "predicted"} <= set(table.columns)
    assert table["iou"].between(0, 1).all()  # every BCCD test image holds a WBC


def test_localization_targets_take_the_class_logits_after_the_box():
    targets = targets_for("localization")
    outputs = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.1, 2.0],     # box at the centre, class 1
                            [0.0, 0.0, 0.0, 0.0, 3.0, -1.0]])   # "none"
    truth = {"box": torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]),
             "label": torch.tensor([1, 0]), "size": torch.tensor([[72.0, 96.0]] * 2)}
    scores = targets.scores(outputs, truth, None)
    assert scores["predicted"].tolist() == [1, 0]
    assert scores["true_score"][0] == 1.0  # the same box as the truth: IoU 1
    assert scores["true_score"][1] == torch.tensor([3.0, -1.0]).softmax(0)[0]
    predicted = targets.predicted(outputs, truth)
    assert [t.category for t in targets.map_targets(predicted)] == [5, 4]
    drawn = targets.annotate(np.zeros((72, 96, 3), np.uint8), predicted, 0)
    assert drawn[18, 24:72].max() == 255 and drawn[36, 48].max() == 0  # the box's top edge
