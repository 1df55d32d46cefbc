"""Runs tracked before the task-family contract (a store written by the previous main, kept as
SQL in ``tests/fixtures/store_v1``) keep their leaderboard rows, and their configurations keep their
config hashes, so new runs of the same configuration join the old rows."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medbench.config import compose_config
from medbench.leaderboard.build import build_tables
from medbench.provenance import cpu_model
from medbench.repeats import config_hash

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
# the overrides every fixture run was trained with (besides its own)
BASE = ["trainer.enable_progress_bar=false", "tracking.log_checkpoint=false",
        "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1"]


@pytest.fixture(scope="module")
def old_store(tmp_path_factory) -> str:
    """The fixture copied, its artifact URIs pointed at the copy."""
    folder = tmp_path_factory.mktemp("store_v1")
    shutil.copytree(FIXTURE / "mlartifacts", folder / "mlartifacts")
    old, new = Path(EXPECTED["results_dir"]).as_uri(), folder.as_uri()
    with sqlite3.connect(folder / "mlflow.db") as db:  # kept as SQL text, not a binary file
        db.executescript((FIXTURE / "mlflow.sql").read_text(encoding="utf-8"))
        db.execute("UPDATE runs SET artifact_uri = replace(artifact_uri, ?, ?)", (old, new))
        db.execute("UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)",
                   (old, new))
    return f"sqlite:///{folder}/mlflow.db"


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
def test_leaderboard_rows_of_old_runs_are_unchanged(old_store, quick):
    tables = build_tables(old_store, quick=quick)
    assert sum(len(t.frame) for t in tables) > 0
    for table in tables:
        stem = ("quick_" if quick else "") + table.key
        before = pd.read_csv(FIXTURE / "leaderboard" / f"{stem}.csv")
        if before.empty:  # the tables without rows no longer have classification columns
            assert table.frame.empty, table.key
            continue
        now = table.frame[list(before.columns)].reset_index(drop=True)
        assert len(now) == len(before), table.key
        for column in before.columns:
            a, b = now[column].to_numpy(), before[column].to_numpy()
            if before[column].dtype.kind == "f":
                np.testing.assert_allclose(a.astype(float), b, rtol=1e-9, err_msg=column)
            else:
                assert [str(x) if pd.notna(x) else "" for x in a] == [
                    str(x) if pd.notna(x) else "" for x in b], f"{table.key}.{column}"
        notes = json.loads((FIXTURE / "leaderboard" / f"{stem}.notes.json").read_text())
        # the same notes, for the same entries (their reasons were reworded, and entries of
        # families built since then are runnable now)
        assert [n.split("): ")[0] for n in table.notes] == [
            n.split("): ")[0] for n in notes], table.key
        assert set(table.frame["family"].dropna()) <= {"classification"}


def test_classification_tables_show_classification_columns_only(old_store):
    tables = {t.key: t for t in build_tables(old_store)}
    assert tables["table10_classification"].metrics == ["auc", "acc"]
    for key in ("table11_brain_segmentation", "table12_segmentation"):  # the family's own
        assert tables[key].metrics == ["dice", "auc", "acc", "sensitivity", "specificity"]
    assert tables["table13_detection"].metrics == ["map50", "map", "f1", "froc"]  # its own
    # the localization family's own (its schema came after the fixture)
    assert tables["table14_localization"].metrics == ["iou", "acc50", "centre_error",
                                                      "sensitivity", "specificity"]
    assert not any("auc" in c for c in tables["table14_localization"].frame)
    overall = tables["table15_overall"]
    # registered families in registration order (the survey's), then its unregistered ones
    assert [p.family for p in overall.parts] == ["classification", "segmentation", "detection",
                                                 "localization"]


# presets changed on purpose since the fixture was written (so their hash did too)
CHANGED = {"survey/dasgupta2017_multilabel_fcn_vessels",  # made runnable: segmentation
           "survey/maji2016_ensemble_12cnn_vessels",
           # Tables 11 and 12's designs, made runnable on DRIVE as proxies
           *(f"survey/{entry}" for entry in (
               "pereira2015_small_kernel_glioma", "havaei2017_two_pathway_cascaded",
               "zhao2016_multiscale_patch_cnn", "moeskops2016_multiscale_mr_brain",
               "kamnitsas2016_deepmedic_multipath_multiscale",
               "brosch2016_conv_encoder_ms_lesion", "shakeri2016_fcnn_mrf_subcortical",
               "su2015_fast_scanning_fcnn", "gordienko2017_unet_bone_shadow")),
           # made runnable with the 1D signal and 3D volume sources
           "survey/kiranyaz2016_1d_cnn_ecg", "survey/gao2016_fused_2d_3d_brain_ct",
           # made runnable on BCCD's white blood cell (localization proxy)
           "survey/emad2015_pyramid_of_scales_lv",
           # Table 13's patch-heatmap designs, made runnable on BCCD (detection proxies)
           "survey/shkolyar2015_lenet_mitosis", "survey/wang2016_googlenet_camelyon_metastasis",
           "survey/vangrinsven2016_selective_sampling_hemorrhage",
           # made runnable on proxies (issue 21): attenuation windows, Gaussian init
           "survey/gao2018_whole_image_attenuation", "survey/pratt2016_gaussian_init_dr",
           # and cuda-convnet, VGG-19 with extensive augmentation, semi-supervised
           "survey/bayramoglu2015_cuda_convnet_hep2",
           "survey/sajjad2019_input_cascaded_augmentation",
           "survey/sun2017_semisupervised_graph_cnn",
           "survey/sirinukunwattana2016_locality_nep"}


@pytest.mark.parametrize("name", sorted(set(EXPECTED["presets"]) - CHANGED))
def test_presets_keep_their_config_hash(name):
    overrides = name.split() if "=" in name else [f"experiment={name}"]
    assert config_hash(compose_config(overrides)) == EXPECTED["presets"][name]


def test_tracked_runs_keep_their_config_hash():
    for run in EXPECTED["trained"]:
        overrides = [*BASE, *run["overrides"], "seeds=null", f"seed={run['seed']}"]
        if "data=csv_manifest" in run["overrides"]:  # file loaders' batch sizes until issue 22
            overrides += ["data.batch_size=64", "data.eval_batch_size=128"]  # made them 128/256
        if run["fold"] is not None:
            overrides.append(f"cv.fold={run['fold']}")
        assert config_hash(compose_config(overrides)) == run["config_hash"], run["overrides"]


def test_same_seed_same_metrics_as_before(data_dir, results_dir):
    """LeNet-5, seed 0, as the fixture trained it: the same metrics (bit-identical on the CPU
    the fixture was written on, within float noise on another)."""
    from medbench.train import train

    [before] = [r for r in EXPECTED["trained"] if r["overrides"] == ["model=lenet5", "seeds=[0,1]"]
                and r["seed"] == 0]
    metrics = train(compose_config([*BASE, "model=lenet5", "seed=0",
                                    f"paths.results_dir={results_dir}"]))
    same_cpu = cpu_model() == EXPECTED.get("cpu", cpu_model())
    for key, value in before["metrics"].items():
        assert metrics[key] == (value if same_cpu else pytest.approx(value, abs=1e-3)), key
