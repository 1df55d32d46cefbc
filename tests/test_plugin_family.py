"""Proof of the family seam: a family that lives only in the tests (counting blobs, one file
plus one data config, loaded as a plugin) trains, tunes, ranks and reports like the built-in
one, with its own metrics and directions, and no module of medbench names it."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import optuna
import pytest

from medbench.cli import main
from medbench.config import REPO_ROOT, compose_config
from medbench.errors import ConfigError
from medbench.leaderboard.build import build_tables
from medbench.leaderboard.writers import to_markdown

PLUGIN_DIR = Path(__file__).parent / "plugins"
FAST = ["data=synthetic_counts", "model=lenet5", "trainer.enable_progress_bar=false"]


@pytest.fixture
def counting(monkeypatch):
    """The plugin on: importable, and named in $MEDBENCH_PLUGINS (subprocesses inherit both)."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.setenv("PYTHONPATH", str(PLUGIN_DIR))
    monkeypatch.setenv("MEDBENCH_PLUGINS", "medbench_counting")


def _runs(results_dir: Path, **filters):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in filters.items())
    ids = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(ids, query)


def test_no_module_of_medbench_names_the_test_family():
    for path in (REPO_ROOT / "src" / "medbench").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"counting|synthetic_counts|medbench_counting", text), path


def test_it_trains_end_to_end_with_its_own_metrics_and_direction(counting, results_dir,
                                                                capsys):
    code = main(["train", *FAST, "trainer.max_epochs=4", f"paths.results_dir={results_dir}"])
    assert code == 0
    report = capsys.readouterr().out
    assert "test/mae" in report and "best-val/mae checkpoint" in report  # the summary table
    client, [run] = _runs(results_dir, family="counting")
    tags, metrics = run.data.tags, run.data.metrics
    assert run.info.status == "FINISHED" and tags["runner"] == "lightning"
    assert tags["data.family"] == "counting" and tags["data.shape"] == "[1, 32, 32]"
    assert "data.mean_count_test" in tags and "label_type" in tags
    assert {"test/mae", "test/rmse", "val/mae", "model/macs"} <= set(metrics)
    assert not any(key.endswith("auc") for key in metrics)
    # monitor: auto is the family's val/mae, selected at its minimum (lower is better)
    history = sorted(client.get_metric_history(run.info.run_id, "val/mae"), key=lambda m: m.step)
    assert int(tags["best_epoch"]) == int(np.argmin([m.value for m in history]))
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "counts_test.csv" in files and "predictions_test.csv" not in files


def test_its_metric_keys_guard_the_monitor(counting):
    message = r"'val/auc' is not a validation metric of counting.*val/mae"
    with pytest.raises(ConfigError, match=message):
        from medbench.train import train

        train(compose_config([*FAST, "monitor=val/auc"]))


def test_tuning_honours_its_lower_is_better_metric(counting, results_dir):
    from medbench.tuning.driver import tune

    result = tune([*FAST, "search=optimizer", "trainer.max_epochs=2", "study.n_trials=3",
                   "study/pruner=none", "study.name=counts", f"paths.results_dir={results_dir}",
                   f"study.export_dir={results_dir}/tuned"])
    study = optuna.load_study(study_name="counts", storage=f"sqlite:///{results_dir}/optuna.db")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    values = [t.value for t in study.trials if t.value is not None]
    assert len(values) == 3 and result.best.value == min(values)
    # a trial's value is its best (lowest) val/mae over its epochs
    _, trials = _runs(results_dir, **{"medbench.kind": "trial"})
    for run in trials:
        assert run.data.metrics["optuna.value"] <= run.data.metrics["val/mae"] + 1e-9
    assert (results_dir / "tuned" / "counts.yaml").is_file()


def test_leaderboard_ranks_it_ascending_beside_classification(counting, results_dir):
    store = f"paths.results_dir={results_dir}"
    for seed in (0, 1):
        assert main(["train", *FAST, "trainer.max_epochs=6", f"seed={seed}", store]) == 0
    # a worse configuration: the untrained network (learning rate 0)
    assert main(["train", *FAST, "trainer.max_epochs=1", "runner.optimizer.lr=0", store]) == 0
    assert main(["train", "model=lenet5", "trainer.max_epochs=1", store,
                 "+trainer.limit_train_batches=2", "trainer.enable_progress_bar=false"]) == 0
    tables = {t.key: t for t in build_tables(f"sqlite:///{results_dir}/mlflow.db")}
    every = tables["all_methods"]
    assert [p.family for p in every.parts] == ["classification", "counting"]
    part, rows = dict((p.family, (p, f)) for p, f in every.family_parts())["counting"]
    assert part.metrics == ("mae", "rmse") and part.lower_is_better == {"mae", "rmse"}
    assert len(rows) == 1  # one method (lenet5) on one dataset: the configuration with 2 runs
    row = rows.iloc[0]
    assert row["runs"] == 2 and row["rank"] == 1 and row["mae_best"]
    assert "1 other configuration(s)" in " ".join(every.notes)
    markdown = to_markdown(every, "caption")
    assert "## counting" in markdown and "test MAE ↓ mean ± std" in markdown
    counting_part = markdown.split("## counting")[1]
    assert "AUC" not in counting_part.split("Notes:")[0]
    # the survey's tables have no counting entries, so no counting part
    assert all("counting" not in [p.family for p in t.parts] for k, t in tables.items()
               if k != "all_methods")


def _write_counting_runs(tmp_path: Path) -> str:
    """Three seeds each of a close ('good') and a far ('bad') counter on one test set."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("c", artifact_location=(tmp_path / "art").as_uri())
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 5, 120).astype(float)
    for method, noise in (("good", 0.3), ("bad", 1.5)):
        for seed in range(3):
            predictions = targets + rng.normal(0, noise, len(targets))
            run_id = client.create_run(experiment, tags={
                "medbench.kind": "run", "medbench.config_hash": method, "family": "counting",
                "model": method, "dataset": "synthetic_counts", "seed": str(seed)}).info.run_id
            error = predictions - targets
            client.log_batch(run_id, metrics=[
                Metric("test/mae", float(np.abs(error).mean()), 0, 0),
                Metric("test/rmse", float(np.sqrt((error ** 2).mean())), 0, 0)])
            path = tmp_path / run_id / "counts_test.csv"
            path.parent.mkdir()
            rows = np.stack([np.arange(len(targets)), targets, predictions], 1)[::-1]
            np.savetxt(path, rows, delimiter=",", header="index,target,prediction", comments="")
            client.log_artifact(run_id, str(path))
            client.set_terminated(run_id)
    return uri


def test_two_configurations_rank_lower_mae_first(counting, tmp_path):
    """Ranking direction with two rows on one test set: the lower MAE ranks 1 and is best;
    the other is tested against it with the family's paired test."""
    uri = _write_counting_runs(tmp_path)
    every = {t.key: t for t in build_tables(uri)}["all_methods"]
    frame = every.frame.set_index("method")
    good, bad = frame.loc["good"], frame.loc["bad"]
    assert good["rank"] == 1 and bad["rank"] == 2 and good["mae_mean"] < bad["mae_mean"]
    assert good["mae_best"] and not bad["mae_best"] and good["rmse_best"]
    assert bad["mae_p"] < 0.05 and not bad["mae_tied"] and math.isnan(good["mae_p"])
    assert set(every.metrics) == {"mae", "rmse"}  # no classification column without its rows
