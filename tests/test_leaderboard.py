"""Leaderboards from tracked runs: grouping, statistics, survey tables, seeds and folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from medbench.catalog import SURVEY_TABLES, catalog, select
from medbench.cli import main
from medbench.errors import ConfigError
from medbench.leaderboard.build import build_tables
from medbench.leaderboard.collect import _from_search, collect_runs

N_TEST = 300


def _write_run(client: MlflowClient, experiment: str, tmp_path, *, method: str, seed: int,
               probs: np.ndarray, labels: np.ndarray, config: str = "c1",
               params: dict[str, str] | None = None, fitted: bool = True, **extra_tags) -> str:
    tags = {"medbench.kind": "run", "medbench.config_hash": config, "survey.id": method,
            "dataset": "breastmnist", "model": f"net_{method}", "seed": str(seed),
            "label_type": "binary", **extra_tags}
    run = client.create_run(experiment, tags=tags)
    run_id = run.info.run_id
    auc = float(pd.Series(probs[:, 1]).corr(pd.Series(labels), method="spearman"))
    metrics = {"test/auc": 0.5 + auc / 2, "test/acc": float((probs.argmax(1) == labels).mean()),
               "model/params": 1000.0 * (1 + len(method)), "model/macs": 5e5,
               "time/test_ms_per_image": 1.5, **({"time/fit_s": 10.0 + seed} if fitted else {})}
    client.log_batch(run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
                     params=[Param(k, v) for k, v in (params or {}).items()])
    path = tmp_path / run_id / "predictions_test.csv"  # named as the trainer names it
    path.parent.mkdir()
    frame = pd.DataFrame({"index": np.arange(N_TEST)[::-1], "label": labels[::-1],
                          "prob_0": probs[::-1, 0], "prob_1": probs[::-1, 1]})
    frame.to_csv(path, index=False)
    client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    return run_id


def _write_strong_and_chance(client: MlflowClient, experiment: str, tmp_path, seed: int) -> None:
    """Two seeds' worth of a strong method (shen2017) and one at chance (gao2014)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, N_TEST)
    for run_seed in range(2):
        for method, signal in (("shen2017_multicrop_pooling", 3.0),
                               ("gao2014_six_layer_hep2", 0.0)):
            _write_run(client, experiment, tmp_path, method=method, seed=run_seed,
                       probs=_scores(labels, signal, rng), labels=labels)


def _scores(labels: np.ndarray, signal: float, rng: np.random.Generator) -> np.ndarray:
    logit = signal * (labels - 0.5) + rng.normal(size=len(labels))
    p = 1 / (1 + np.exp(-logit))
    return np.stack([1 - p, p], 1)


@pytest.fixture
def store(tmp_path):
    """Three surveyed methods on one test set: two strong and close, one at chance."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("lb", artifact_location=(tmp_path / "art").as_uri())
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, N_TEST)
    for seed in range(3):
        _write_run(client, experiment, tmp_path, method="shen2017_multicrop_pooling", seed=seed,
                   probs=_scores(labels, 3.0, rng), labels=labels)
        _write_run(client, experiment, tmp_path, method="chowdhury2020_pdcovidnet_parallel_dilated",
                   seed=seed, probs=_scores(labels, 2.9, rng), labels=labels,
                   **{"tuned.study": "s1", "tuned.trials": "20", "tuned.compute_hours": "1.5"})
        _write_run(client, experiment, tmp_path, method="gao2014_six_layer_hep2", seed=seed,
                   probs=_scores(labels, 0.0, rng), labels=labels)
    # a better-scoring second configuration of gao2014 with fewer runs: must not be picked
    _write_run(client, experiment, tmp_path, method="gao2014_six_layer_hep2", seed=0,
               probs=_scores(labels, 5.0, rng), labels=labels, config="c2")
    # a rerun of seed 0 of the same configuration replaces the first (still 3 runs)
    _write_run(client, experiment, tmp_path, method="shen2017_multicrop_pooling", seed=0,
               probs=_scores(labels, 3.0, rng), labels=labels)
    # neither a quick smoke run nor a tuning trial counts
    _write_run(client, experiment, tmp_path, method="shen2017_multicrop_pooling", seed=9,
               probs=_scores(labels, 9.0, rng), labels=labels, **{"medbench.budget": "quick"})
    _write_run(client, experiment, tmp_path, method="shen2017_multicrop_pooling", seed=8,
               probs=_scores(labels, 9.0, rng), labels=labels, **{"medbench.kind": "trial"})
    return uri


def test_database_and_search_paths_read_the_same_runs(store):
    fast = collect_runs(store)
    slow = _from_search(MlflowClient(store))
    slow = slow.sort_values("start_time").reset_index(drop=True)
    assert len(fast) == 13  # every finished run, trials and quick runs included
    columns = sorted(set(fast.columns) & set(slow.columns) - {"experiment_id"})
    assert len(columns) > 15
    pd.testing.assert_frame_equal(fast[columns].astype(str), slow[columns].astype(str))


def test_survey_tables_rank_test_and_label_rows(store):
    tables = {t.key: t for t in build_tables(store)}
    overall = tables["table10_classification"].frame.set_index("method")
    strong = {"shen2017_multicrop_pooling", "chowdhury2020_pdcovidnet_parallel_dilated"}
    assert set(overall.index[:2]) == strong and overall.index[2] == "gao2014_six_layer_hep2"
    assert list(overall["rank"]) == [1, 2, 3] and list(overall["runs"]) == [3, 3, 3]
    first, second, gao = (overall.iloc[i] for i in range(3))
    assert first.auc_best and not second.auc_best and first.auc_mean >= second.auc_mean
    assert second.auc_tied and second.auc_p > 0.05  # close: not significantly different
    assert not gao.auc_tied and gao.auc_p < 1e-6  # at chance: clearly worse (DeLong)
    shen, chow = overall.loc["shen2017_multicrop_pooling"], overall.loc[
        "chowdhury2020_pdcovidnet_parallel_dilated"]
    assert gao.auc_mean < 0.6  # the chosen configuration is the one with most runs, not c2
    assert shen.auc_ci_low <= shen.auc_mean <= shen.auc_ci_high
    assert chow.tuning == "20 trials, 1.50 h (s1)" and shen.tuning == "untuned"
    assert shen.data == "proxy" and shen.reported == "accuracy 0.874, AUC 0.93"
    assert shen.section == "4.1.4" and shen.train_s == 11.0
    assert shen.params == 1000 * (1 + len("shen2017_multicrop_pooling"))
    notes = " ".join(tables["table10_classification"].notes)
    # every classification entry runs now (issue 21); the other families' tables keep some
    assert "1 other configuration(s)" in notes and "no finished runs yet" in notes
    assert "not runnable yet" not in notes
    assert "not runnable yet" in " ".join(tables["table15_overall"].notes)
    # survey grouping: lung (4.1) has shen only, HEp-2 (4.3) has gao only
    assert list(tables["table05_lung_classification"].frame.method) == [
        "shen2017_multicrop_pooling"]
    hep2 = tables["table06_hep2_classification"].frame
    assert list(hep2.method) == ["gao2014_six_layer_hep2"]
    assert hep2["rank"][0] == 1 and hep2.auc_best[0]  # ranked among its table's rows only
    assert tables["table12_segmentation"].frame.empty
    without_runs = [n for n in tables["table15_overall"].notes if n[0].isdigit()]
    assert len(without_runs) == 41 - 3  # every other entry, with its reason


def test_quick_runs_form_their_own_tables(store):
    quick = {t.key: t for t in build_tables(store, quick=True)}
    frame = quick["table10_classification"].frame
    assert list(frame.method) == ["shen2017_multicrop_pooling"] and list(frame.runs) == [1]


def test_catalog_selectors():
    entries = catalog()
    assert len(entries) == 41
    assert [e.id for e in select("4.3.2", entries)] == ["gao2014_six_layer_hep2"]
    assert {e.section for e in select("4.2", entries)} == {f"4.2.{i}" for i in range(1, 6)}
    assert len(select("table15", entries)) == 41
    assert all(e.family == "segmentation" for e in select("table12", entries))
    assert select("table05", entries) == select("table5", entries)
    assert set(SURVEY_TABLES) == {f"table{i}" for i in range(5, 16)}
    with pytest.raises(ConfigError, match="did you mean gao2014_six_layer_hep2"):
        select("gao2014_six_layer_hep", entries)


def test_leaderboard_command_writes_every_format(store, tmp_path, capsys):
    out = tmp_path / "boards"
    assert main(["leaderboard", "--uri", store, "--out", str(out)]) == 0
    said = capsys.readouterr().out  # gao2014's second configuration is one flag away
    assert "1 row(s) show one of several configurations" in said and "--all-configs" in said
    assert not (out / ".gitignore").exists()  # a folder of the user's choice is left as is
    names = {p.name for p in out.iterdir()}
    assert {"table05_lung_classification.md", "table10_classification.csv",
            "all_methods.md", "leaderboards.html"} <= names
    text = (out / "table10_classification.md").read_text()
    assert "| 3 | gao2014_six_layer_hep2 | 4.3.2 |" in text and "≈" in text
    frame = pd.read_csv(out / "table10_classification.csv")
    assert list(frame["rank"]) == [1, 2, 3] and frame["auc_p"].isna().sum() == 1
    # and for a paper: booktabs LaTeX, the same rows, the best in bold, every special escaped
    tex = (out / "table10_classification.tex").read_text()
    assert tex.count(r"\begin{table}") == 1 and r"\label{tab:table10_classification}" in tex
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert [line.split(" & ")[1] for line in body] == [
        m.replace("_", r"\_") for m in frame["method"]]
    assert len({line.count(" & ") for line in tex.splitlines() if " & " in line}) == 1
    auc = [line.split(" & ")[6] for line in body]  # rank, method, dataset, data, reported, runs
    assert auc[0].startswith(r"\textbf{") and not any("textbf" in a for a in auc[1:])
    assert tex.count("{") == tex.count("}")
    assert "_" not in tex.replace(r"\_", "").replace("tab:table10_classification", "")


def test_calibration_columns_show_where_runs_have_them(store):
    """ECE and Brier (lower is better) join AUC and ACC in a table where some run logged them;
    a table of runs from before they existed reads as before (tests/test_compat_store.py)."""
    client = MlflowClient(store)
    ids = [e.experiment_id for e in client.search_experiments()]
    for run in client.search_runs(ids, "tags.`survey.id` = 'gao2014_six_layer_hep2'"):
        client.log_metric(run.info.run_id, "test/ece", 0.2)
        client.log_metric(run.info.run_id, "test/brier", 0.25)
    tables = {t.key: t for t in build_tables(store)}
    [part] = tables["table10_classification"].parts
    assert part.metrics == ("auc", "acc", "ece", "brier")
    assert part.lower_is_better == {"ece", "brier"}
    frame = tables["table10_classification"].frame.set_index("method")
    assert frame.loc["gao2014_six_layer_hep2", "ece_mean"] == pytest.approx(0.2)
    assert frame["ece_mean"].isna().sum() == 2  # the other rows' runs have none


def test_cross_validation_folds_are_stratified_and_keep_patients_together():
    from medbench.data.splits import cross_validation_fold

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    patients = rng.integers(0, 60, 200)
    held = [cross_validation_fold(labels, patients, 5, k) for k in range(5)]
    assert (np.sum(held, axis=0) == 1).all()  # each sample validates exactly once
    for mask in held:
        assert not set(patients[mask]) & set(patients[~mask])
        assert abs(labels[mask].mean() - labels.mean()) < 0.15
    plain = [cross_validation_fold(labels, None, 5, k) for k in range(5)]
    assert [m.sum() for m in plain] == [40] * 5


def test_seeds_and_folds_on_real_data_form_one_leaderboard_row(data_dir, results_dir, capsys):
    overrides = ["data=breastmnist", "model=lenet5", "trainer.max_epochs=1", "seeds=[0,1]",
                 "cv.folds=2", f"paths.results_dir={results_dir}",
                 "trainer.enable_progress_bar=false"]
    assert main(["train", *overrides]) == 0
    assert "(4 runs, mean" in capsys.readouterr().out
    uri = f"sqlite:///{results_dir}/mlflow.db"
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted((r.data.tags["seed"], r.data.tags["cv.fold"]) for r in runs) == [
        ("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["medbench.config_hash"] for r in runs}) == 1
    assert len({r.data.tags["medbench.group"] for r in runs}) == 1
    assert len({r.data.tags["data.fingerprint_test"] for r in runs}) == 1  # one test split
    by_fold = {r.data.tags["cv.fold"]: r.data.tags for r in runs if r.data.tags["seed"] == "0"}
    assert sum(int(t["data.n_val"]) for t in by_fold.values()) == 546 + 78  # train+val pooled
    assert all(t["data.n_test"] == "156" for t in by_fold.values())  # the official test set
    frame = {t.key: t for t in build_tables(uri)}["all_methods"].frame
    assert list(frame.runs) == [4] and list(frame.method) == ["lenet5"]
    assert frame.params[0] > 0 and frame.infer_ms[0] > 0 and frame.train_s[0] > 0


def test_reproduce_quick_trains_runnable_entries_and_skips_the_others(data_dir, results_dir,
                                                                      capsys):
    assert main(["reproduce", "4.3.2", "7.1.1", "--seeds", "0", "--quick",
                 "--override", f"paths.results_dir={results_dir}",
                 "--override", "trainer.enable_progress_bar=false"]) == 0
    out = capsys.readouterr().out
    assert "7.1.1 sun2017_semisupervised_deep_cnn_localization: not runnable yet" in out
    assert "4.3.2 gao2014_six_layer_hep2 seed 0: test/acc" in out
    # the user's own folder; the committed tables are left alone
    board = (results_dir / "leaderboards-local" / "quick" / "table06_hep2_classification.md")
    assert "| 1 | gao2014_six_layer_hep2 | 4.3.2 | six_layer_cnn | breastmnist | proxy |" in (
        board.read_text())
    assert not (results_dir / "leaderboards-local" / "table06_hep2_classification.md").exists()
    assert not (results_dir / "leaderboards").exists()


def test_an_empty_store_lists_every_entry_without_rows(tmp_path):
    tables = {t.key: t for t in build_tables(f"sqlite:///{tmp_path}/empty.db")}
    assert all(t.frame.empty for t in tables.values())
    assert len(tables["table15_overall"].notes) == 41
    assert len(tables["table10_classification"].notes) == 21  # classification entries


def test_train_time_of_a_two_stage_method_includes_its_source_runs():
    from medbench.leaderboard.build import with_source_training

    runs = pd.DataFrame({"run_id": ["src1", "src2", "final", "plain"],
                         "time/fit_s": [100.0, 20.0, 5.0, 7.0],
                         "model.pretrained_path": [None, "run:src1", "run:src2", "/a/file.ckpt"]})
    total = with_source_training(runs).set_index("run_id")["time/fit_s"]
    assert total.to_dict() == {"src1": 100.0, "src2": 120.0, "final": 125.0, "plain": 7.0}


@pytest.fixture
def tracking_server(tmp_path):
    """A real MLflow tracking server on 127.0.0.1 that serves its artifacts."""
    from conftest import mlflow_server

    with mlflow_server(f"sqlite:///{tmp_path}/server.db", tmp_path / "served") as url:
        yield url


def test_leaderboard_over_a_tracking_server(tracking_server, tmp_path):
    """Runs and predictions read through the REST API (search pages, artifact downloads)."""
    client = MlflowClient(tracking_server)
    experiment = client.create_experiment("served")
    _write_strong_and_chance(client, experiment, tmp_path, seed=1)
    assert client.get_run(client.search_runs([experiment])[0].info.run_id).info.artifact_uri \
        .startswith("mlflow-artifacts:")
    frame = {t.key: t for t in build_tables(tracking_server)}["table10_classification"].frame
    assert list(frame.method) == ["shen2017_multicrop_pooling", "gao2014_six_layer_hep2"]
    assert list(frame.runs) == [2, 2] and frame.auc_p[1] < 1e-6 and not frame.auc_tied[1]


def test_reproduce_goes_on_after_a_failed_run_and_then_fails():
    from medbench.errors import TrainingError
    from medbench.reproduce import reproduce

    # ovalle2016, jiao2016 (two-stage), sun2017 (semi-supervised); 7.1.1 is not runnable yet
    entries = [*select("4.4", catalog()), *select("7.1.1", catalog())]
    trained, lines = [], []

    def fake_train(cfg, tags):
        name = cfg.survey.id if cfg.survey else "source"
        if name == "ovalle2016_auc_stopping_mammography":
            raise RuntimeError("out of memory\ntraceback lines")
        trained.append((name, cfg.seed))
        return f"run{len(trained)}", {"test/auc": 0.75}

    with pytest.raises(TrainingError, match=r"2 run\(s\) failed: ovalle2016_auc_stopping_"
                                            r"mammography seed 0, ovalle2016_auc\S+ seed 1$"):
        reproduce(entries, [0, 1], [], fake_train, log=lines.append)
    # jiao2016's source run is trained first, per seed, then the entry itself
    assert trained == [("source", 0), ("jiao2016_deep_features_svm", 0), ("source", 1),
                       ("jiao2016_deep_features_svm", 1),
                       ("sun2017_semisupervised_graph_cnn", 0),
                       ("sun2017_semisupervised_graph_cnn", 1)]
    assert "4.4.1 ovalle2016_auc_stopping_mammography seed 0: FAILED (RuntimeError: out of " \
           "memory)" in lines
    assert any("sun2017_semisupervised_deep_cnn_localization: not runnable yet" in line
               for line in lines)


def test_config_keys_mlflow_refuses_are_made_valid():
    from medbench.tracking import flatten

    params = flatten({"survey": {"reported": {"test accuracy (ResNet/InceptionNet)": 0.93}}})
    assert params == {"survey.reported.test accuracy _ResNet/InceptionNet_": "0.93"}


def test_config_hash_ignores_bookkeeping_but_not_training_choices():
    from omegaconf import open_dict

    from medbench.config import compose_config
    from medbench.repeats import config_hash

    def digest(*overrides):
        return config_hash(compose_config(list(overrides)))

    base = digest("experiment=survey/gao2014_six_layer_hep2")
    assert base == digest("experiment=survey/gao2014_six_layer_hep2", "seed=5",
                          "paths.results_dir=/elsewhere", "survey.name=renamed",
                          "trainer.enable_progress_bar=false")
    assert base != digest("experiment=survey/gao2014_six_layer_hep2", "trainer.max_epochs=21")
    assert base != digest("experiment=survey/gao2014_six_layer_hep2", "augment=basic")
    # an option added later hashes as before on its default, and apart on any other value
    cfg = compose_config(["experiment=survey/gao2014_six_layer_hep2"])
    with open_dict(cfg):
        del cfg.model["init"]
    assert config_hash(cfg) == base
    assert base != digest("experiment=survey/gao2014_six_layer_hep2", "model.init=pytorch")
    # values that follow the seed are the seed: deep features' classifier random_state
    jiao = digest("experiment=survey/jiao2016_deep_features_svm", "seed=1",
                  "model.pretrained_path=run:source1")
    assert jiao == digest("experiment=survey/jiao2016_deep_features_svm", "seed=2",
                          "model.pretrained_path=run:source2")


def test_leaderboard_over_a_postgresql_store(postgres_url, tmp_path):
    """MLflow's tables on PostgreSQL: the database path binds its values by name there."""
    client = MlflowClient(postgres_url)
    experiment = client.create_experiment("pg", artifact_location=(tmp_path / "art").as_uri())
    _write_strong_and_chance(client, experiment, tmp_path, seed=2)
    fast = collect_runs(postgres_url)
    slow = _from_search(client).sort_values("start_time").reset_index(drop=True)
    columns = sorted(set(fast.columns) & set(slow.columns) - {"experiment_id"})
    pd.testing.assert_frame_equal(fast[columns].astype(str), slow[columns].astype(str))
    frame = {t.key: t for t in build_tables(postgres_url)}["table10_classification"].frame
    assert list(frame.method) == ["shen2017_multicrop_pooling", "gao2014_six_layer_hep2"]
    assert list(frame.runs) == [2, 2] and not frame.auc_tied[1]


def test_rows_are_keyed_by_test_split_and_evaluation_only_runs_stand_apart(tmp_path):
    """Two test splits under one loader name are two rows; an old run (no fingerprint) joins
    its configuration's; an evaluation-only run is a row apart, never the trained one."""
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("keys", artifact_location=(tmp_path / "a").as_uri())
    labels = np.random.default_rng(0).integers(0, 2, N_TEST)
    rng = np.random.default_rng(1)
    shen = "shen2017_multicrop_pooling"

    def run(seed: int, config: str, fingerprint: str | None, method: str = shen, **extra):
        tags = {"dataset": "csv_manifest", **(
            {"data.fingerprint_test": fingerprint} if fingerprint else {})}
        _write_run(client, experiment, tmp_path, method=method, seed=seed, config=config,
                   probs=_scores(labels, 2.0, rng), labels=labels, **tags, **extra)

    run(0, "cA", "aaaaaaaa11111111")
    run(1, "cA", "aaaaaaaa11111111")
    run(2, "cA", None)  # tracked before the tag: its configuration's runs say which data
    run(0, "cB", "bbbbbbbb22222222")  # another manifest, later
    run(0, "cOld", None)  # an old configuration alone: today's key, the loader's name
    evaluation = {"trainer.max_epochs": "0", "model.pretrained_path": "run:x"}
    run(0, "cE", "aaaaaaaa11111111", params=evaluation, fitted=False)  # the latest of all
    members = {"trainer.max_epochs": "0", "model.kwargs.members": "[{'checkpoint': 'run:y'}]"}
    run(0, "cM", "aaaaaaaa11111111", method="maji2016_ensemble_12cnn_vessels", params=members,
        fitted=False)  # an ensemble of tracked members: a method of its own, not marked
    tables = {t.key: t for t in build_tables(f"sqlite:///{tmp_path}/mlflow.db")}
    every = tables["all_methods"]
    rows = {(r.method, r.dataset): r.runs for r in every.frame.itertuples()}
    assert rows == {(shen, "csv_manifest [aaaaaaaa]"): 3, (shen, "csv_manifest [bbbbbbbb]"): 1,
                    (shen, "csv_manifest"): 1,
                    (f"{shen} (evaluation only)", "csv_manifest [aaaaaaaa]"): 1,
                    ("maji2016_ensemble_12cnn_vessels", "csv_manifest [aaaaaaaa]"): 1}
    assert not any("other configuration" in n for n in every.notes)
    # the rows on one test split rank among themselves only
    frame = every.frame.set_index(["method", "dataset"])
    assert frame.loc[(shen, "csv_manifest [bbbbbbbb]"), "rank"] == 1
    on_a = frame.xs("csv_manifest [aaaaaaaa]", level="dataset")
    assert sorted(on_a["rank"]) == [1, 2, 3] and on_a["auc_p"].notna().sum() == 2
    assert len(tables["table05_lung_classification"].frame) == 4  # both kinds, by survey id


def test_all_configs_shows_a_row_per_configuration(store):
    default = {t.key: t for t in build_tables(store)}["table10_classification"]
    assert "gao2014_six_layer_hep2" in set(default.frame.method)
    table = {t.key: t for t in build_tables(store, all_configs=True)}["table10_classification"]
    runs = dict(zip(table.frame.method, table.frame.runs, strict=True))
    assert runs == {"shen2017_multicrop_pooling": 3,
                    "chowdhury2020_pdcovidnet_parallel_dilated": 3,
                    "gao2014_six_layer_hep2 [config c1]": 3,
                    "gao2014_six_layer_hep2 [config c2]": 1}
    assert not any("other configuration" in n for n in table.notes)
    assert table.frame.set_index("method").loc["gao2014_six_layer_hep2 [config c2]", "rank"] == 1


def test_leaderboard_command_keeps_manifests_apart_and_the_committed_tables_untouched(
        tmp_path, results_dir, capsys, monkeypatch):
    """Real runs on two CSV manifests and an evaluation of the first one's checkpoint: three
    rows, written to the user's folder unless --committed; a missing store is one line."""
    from PIL import Image

    import medbench.config

    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        rows = ["path,label"]
        for i in range(40):
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(
                folder / f"{name}{i}.png")
            rows.append(f"{name}{i}.png,{i % 2}")
        (folder / "manifest.csv").write_text("\n".join(rows))
    base = ["data=csv_manifest", "model=lenet5", "trainer.max_epochs=1",
            f"paths.results_dir={results_dir}", "trainer.enable_progress_bar=false"]
    client = MlflowClient(f"sqlite:///{results_dir}/mlflow.db")

    def train(*overrides: str) -> dict[str, str]:
        before = {r.info.run_id for r in client.search_runs(
            [e.experiment_id for e in client.search_experiments()])}
        assert main(["train", *base, *overrides]) == 0
        [new] = [r for r in client.search_runs([e.experiment_id for e in
                                                 client.search_experiments()])
                 if r.info.run_id not in before]
        return {"run_id": new.info.run_id, **new.data.tags}

    first = train(f"data.manifest={tmp_path / 'a' / 'manifest.csv'}")
    second = train(f"data.manifest={tmp_path / 'b' / 'manifest.csv'}")
    evaluated = train(f"data.manifest={tmp_path / 'a' / 'manifest.csv'}",
                      "trainer.max_epochs=0", f"model.pretrained_path=run:{first['run_id']}")
    a, b = first["data.fingerprint_test"], second["data.fingerprint_test"]
    assert a != b and evaluated["data.fingerprint_test"] == a and len(a) == 16
    capsys.readouterr()

    real = medbench.config.compose_config
    monkeypatch.setattr(medbench.config, "compose_config",
                        lambda overrides: real([f"paths.results_dir={results_dir}", *overrides]))
    assert main(["leaderboard"]) == 0
    local = results_dir / "leaderboards-local"
    assert f"wrote {local / 'all_methods.md'}" in capsys.readouterr().out
    assert (local / ".gitignore").read_text().splitlines()[-1] == "*"
    assert not (results_dir / "leaderboards").exists()
    frame = pd.read_csv(local / "all_methods.csv")
    assert set(zip(frame.method, frame.dataset, frame.runs, strict=True)) == {
        ("lenet5", f"csv_manifest [{a[:8]}]", 1), ("lenet5", f"csv_manifest [{b[:8]}]", 1),
        ("lenet5 (evaluation only)", f"csv_manifest [{a[:8]}]", 1)}
    assert main(["leaderboard", "--committed"]) == 0
    assert (results_dir / "leaderboards" / "all_methods.md").is_file()

    missing = tmp_path / "elsewhere" / "mlflow.db"
    assert main(["leaderboard", "--uri", f"sqlite:///{missing}"]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: leaderboard: no tracking store at {missing} (train a run first, "
                   f"or name an existing store with --uri)\n")
    assert not missing.parent.exists()


def test_reproduce_multirun_reproduces_once_per_combination(monkeypatch, results_dir):
    """``reproduce -m --override k=a,b``: Hydra's basic sweeper, each combination a pass."""
    import medbench.train

    seen = []

    def fake_train(cfg, tags):
        seen.append((cfg.survey.id, cfg.seed, cfg.trainer.max_epochs, cfg.data.batch_size))
        return f"run{len(seen)}", {"test/auc": 0.5}

    monkeypatch.setattr(medbench.train, "train_run", fake_train)
    assert main(["reproduce", "4.3.2", "--seeds", "0", "-m", "--no-leaderboard",
                 "--override", f"paths.results_dir={results_dir}",
                 "--override", "trainer.max_epochs=3,4", "--override", "data.batch_size=8,16"]
                ) == 0
    assert seen == [("gao2014_six_layer_hep2", 0, epochs, batch)
                    for epochs in (3, 4) for batch in (8, 16)]
