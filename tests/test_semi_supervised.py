"""The semi_supervised runner (survey 4.4.3, Sun et al. 2017): a stratified labelled share of
the training split, the CNN trained on it alone, then LabelSpreading over its features of every
training image with the other images' labels hidden; on real BreastMNIST, tracked."""

from __future__ import annotations

import numpy as np
from mlflow.tracking import MlflowClient
from sklearn.semi_supervised import LabelSpreading

from medbench.catalog import SURVEY_DIR, CatalogEntry
from medbench.cli import main
from medbench.config import compose_config
from medbench.leaderboard.build import build_tables
from medbench.tasks.classification.semi_supervised import labelled_mask
from medbench.train import train_run

ENTRY = "sun2017_semisupervised_graph_cnn"
TINY = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1", "trainer.enable_progress_bar=false"]


def test_labelled_share_is_stratified_seeded_and_keeps_every_class() -> None:
    targets = np.array([0] * 90 + [1] * 10 + [2] * 2)
    mask = labelled_mask(targets, 0.25, seed=3)
    assert [int(mask[targets == c].sum()) for c in (0, 1, 2)] == [22, 2, 1]  # round, >= 1
    assert (labelled_mask(targets, 0.25, seed=3) == mask).all()
    assert not (labelled_mask(targets, 0.25, seed=4) == mask).all()
    assert labelled_mask(targets, 1.0, seed=0).all()


def test_unlabelled_images_labels_are_hidden_and_the_cnn_alone_is_logged(
        results_dir, monkeypatch) -> None:
    assert CatalogEntry.read(SURVEY_DIR / f"{ENTRY}.yaml").runnable
    seen = {}
    fit = LabelSpreading.fit

    def spy(self, x, y):
        seen["x"], seen["y"] = x, np.asarray(y).copy()
        return fit(self, x, y)

    monkeypatch.setattr(LabelSpreading, "fit", spy)
    cfg = compose_config([f"experiment=survey/{ENTRY}", f"paths.results_dir={results_dir}",
                          *TINY])
    run_id, metrics = train_run(cfg)
    run = MlflowClient(f"sqlite:///{results_dir / 'mlflow.db'}").get_run(run_id)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    n_labelled, n_unlabelled = int(tags["semi.labelled"]), int(tags["semi.unlabelled"])
    assert n_labelled + n_unlabelled == 546 == len(seen["y"])  # BreastMNIST's training split
    assert (seen["y"] == -1).sum() == n_unlabelled and round(546 * 0.25) - 1 <= n_labelled
    assert set(seen["y"][seen["y"] != -1]) == {0, 1}
    assert seen["x"].shape[1] == int(tags["features.dim"]) == 64
    assert {"test/auc", "val/auc", "labelled_only/test/auc"} <= set(metrics)
    assert {"labelled_only/test/auc", "test/auc"} <= set(run.data.metrics)
    # the leaderboard row says how much was labelled
    tables = {t.key: t for t in build_tables(f"sqlite:///{results_dir / 'mlflow.db'}")}
    frame = tables["table07_breast_classification"].frame
    assert list(frame.method) == [f"{ENTRY} (25% labelled)"] and list(frame.data) == ["proxy"]


def test_a_labelled_fraction_outside_0_1_is_one_line(results_dir, capsys) -> None:
    code = main(["train", f"experiment=survey/{ENTRY}", f"paths.results_dir={results_dir}",
                 "runner.labelled_fraction=1.5", *TINY])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert ("error: runner.labelled_fraction: expected a number in (0, 1] (the share of the "
            "training split that keeps its labels), got 1.5") in err


def test_self_training_is_the_other_method_and_no_epochs_trains_no_cnn(results_dir) -> None:
    cfg = compose_config([f"experiment=survey/{ENTRY}", f"paths.results_dir={results_dir}",
                          "runner.method=self_training", "trainer.max_epochs=0"])
    _, metrics = train_run(cfg)
    assert 0.0 <= metrics["test/auc"] <= 1.0 and "labelled_only/test/auc" not in metrics
