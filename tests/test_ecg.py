"""MIT-BIH beats (1D ECG): preparation on real records, AAMI mapping, both protocols' splits,
the AAMI metrics, 1D models, ranking by the data's metric, and one tracked training run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import cohen_kappa_score

from medbench.data import ecg
from medbench.data import ecg_prepare as prep
from medbench.data.base import DatasetInfo
from medbench.data.ecg import MITBIHDataModule
from medbench.errors import ConfigError, DataError
from medbench.family import get_family
from medbench.metrics.aami import JKappaIndex, cohen_kappa, extra_metrics, jkappa_index
from medbench.models import create_model

ARCHIVE = Path(os.environ["MEDBENCH_DATA_DIR"]) / ecg.ARCHIVE
RAW = prep.check_settings("MLII", 256, None, "none")
# PROVENANCE.md's AAMI counts (N, S, V, F, Q) of the records the tests read
COUNTS = {100: (2239, 33, 1, 0, 0), 101: (1860, 3, 0, 0, 2), 105: (2526, 0, 41, 0, 5),
          106: (1507, 0, 520, 0, 0), 119: (1543, 0, 444, 0, 0), 200: (1743, 30, 826, 2, 0)}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """MEDBENCH_CACHE_DIR at a folder of this module's own: the archive unpacks there once."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDBENCH_CACHE_DIR", str(folder))
        yield folder


def test_aami_mapping_is_de_chazals():
    assert prep.AAMI_CLASSES == ("N", "S", "V", "F", "Q")
    groups = {c: sorted(s for s, i in prep.AAMI_OF_SYMBOL.items() if prep.AAMI_CLASSES[i] == c)
              for c in prep.AAMI_CLASSES}
    assert groups == {"N": sorted("NLRej"), "S": sorted("AaJS"), "V": ["E", "V"], "F": ["F"],
                      "Q": sorted("/fQ")}
    assert "+" not in prep.AAMI_OF_SYMBOL and "~" not in prep.AAMI_OF_SYMBOL


def test_inter_patient_lists_are_disjoint_and_leave_out_paced_records():
    assert len(prep.DS1) == len(prep.DS2) == 22 and not set(prep.DS1) & set(prep.DS2)
    assert not (set(prep.DS1) | set(prep.DS2)) & set(prep.PACED)
    assert sorted((*prep.DS1, *prep.DS2, *prep.PACED)) == list(prep.ALL_RECORDS)
    assert len(prep.ALL_RECORDS) == 48
    module = MITBIHDataModule(train_records=[*prep.DS1, 102], test_records=[*prep.DS2, 217])
    assert module.train_records == list(prep.DS1) and module.test_records == list(prep.DS2)


def test_preparation_counts_centres_and_caches(cache):
    beats = prep.prepare(ARCHIVE, [100, 101], RAW)
    for record, arrays in beats.items():
        counts = np.bincount(arrays["labels"], minlength=5)
        # every annotated beat is kept but those within half a window of the record's ends
        assert (counts <= COUNTS[record]).all() and sum(COUNTS[record]) - counts.sum() <= 2
        assert arrays["beats"].shape == (counts.sum(), 256, 1)
        assert arrays["beats"].dtype == np.float32
    import wfdb

    record = wfdb.rdrecord(str(prep.unpack(ARCHIVE, [100]) / "100"))
    peak = int(beats[100]["samples"][5])
    expected = record.p_signal[peak - 128:peak + 128, record.sig_name.index("MLII")]
    np.testing.assert_allclose(beats[100]["beats"][5, :, 0], expected, atol=1e-6)
    folder = prep.cache_dir("mitbih", "beats", prep.settings_key(RAW))
    stamp = (folder / "100.npz").stat().st_mtime_ns
    prep.prepare(ARCHIVE, [100], RAW)  # the same settings read the cache
    assert (folder / "100.npz").stat().st_mtime_ns == stamp
    other = prep.check_settings("MLII", 128, {"low": 0.5, "high": 40}, "zscore")
    assert prep.settings_key(other) != prep.settings_key(RAW)
    filtered = prep.prepare(ARCHIVE, [100], other)[100]["beats"]
    assert filtered.shape[1] == 128 and abs(filtered.mean(1)).max() < 1e-4  # z-scored beats


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="data.normalize_beats"):
        prep.check_settings("MLII", 256, None, "l2")
    with pytest.raises(ConfigError, match="data.bandpass"):
        prep.check_settings("MLII", 256, {"low": 40, "high": 1}, "none")
    with pytest.raises(ConfigError, match="data.train_records: 99"):
        MITBIHDataModule(train_records=[99])
    with pytest.raises(ConfigError, match="data.protocol"):
        MITBIHDataModule(protocol="intra")
    with pytest.raises(ConfigError, match="data.classes"):
        MITBIHDataModule(classes=["N", "X"])


def test_a_lead_the_record_lacks_is_named(cache):
    module = MITBIHDataModule(train_records=[102], val_records=[101], test_records=[100],
                              exclude_records=[])
    with pytest.raises(DataError, match=r"record 102 has leads \['V5', 'V2'\], not 'MLII'"):
        module.setup()


def test_augmentation_steps_on_signals_are_refused(cache):
    module = MITBIHDataModule(train_records=[101], val_records=[100], test_records=[103],
                              augment={"train": [{"name": "HorizontalFlip"}]})
    with pytest.raises(ConfigError, match="augment.train/eval=.*use augment=none"):
        module.train_dataloader()


def test_classes_left_out_drop_their_beats(cache):
    module = MITBIHDataModule(train_records=[101], val_records=[105], test_records=[100],
                              classes=["N", "S", "V", "F"])
    module.setup()
    assert module.info.label_names == ["N", "S", "V", "F"] and module.info.num_classes == 4
    assert np.bincount(module.splits["val"][1], minlength=4).tolist() == [2526, 0, 41, 0]


def test_inter_patient_splits_never_share_a_record(cache):
    module = MITBIHDataModule(train_records=[101, 106], val_records=[119],
                              test_records=[100, 105], normalize={"mean": [0], "std": [1]})
    module.setup()
    groups = {split: set(module.patient_groups(split).tolist()) for split in module.splits}
    assert groups == {"train": {101, 106}, "val": {119}, "test": {100, 105}}
    assert module.input_shape == (1, 256)
    batch = next(iter(module.test_dataloader()))
    assert batch["image"].shape[1:] == (1, 256) and batch["image"].dtype == torch.float32
    bad = MITBIHDataModule(train_records=[101, 100], val_records=[119], test_records=[100])
    with pytest.raises(AssertionError, match="in both train and test"):
        bad.setup()


def test_patient_specific_first_five_minutes_train_the_rest_tests(cache):
    module = MITBIHDataModule(protocol="patient_specific", common_records=[100, 101, 106],
                              test_records=[200],
                              common_beats={"N": 75, "S": 20, "V": 75, "Q": None})
    module.setup()
    limit = 5 * 60 * 360
    for split in ("train", "val"):
        mine = module.patient_groups(split) == 200
        assert (module.beat_samples[split][mine] < limit).all() and mine.any()
    assert set(module.patient_groups("test").tolist()) == {200}
    assert (module.beat_samples["test"] >= limit).all()
    pooled = np.concatenate([module.splits[s][1][module.patient_groups(s) != 200]
                             for s in ("train", "val")])
    # common beats capped per class: 75 N, 20 of the 36 S, 75 of 521 V, every Q (F: none)
    assert np.bincount(pooled, minlength=5).tolist() == [75, 20, 75, 0, 2]
    with pytest.raises(ConfigError, match="share"):
        MITBIHDataModule(protocol="patient_specific", common_records=[200],
                         test_records=[200]).setup()


def test_aami_metrics_on_a_known_confusion_matrix():
    # rows true N, S, V, F, Q; columns predicted
    confusion = torch.tensor([[80, 5, 3, 1, 1], [4, 6, 0, 0, 0], [2, 0, 7, 1, 0],
                              [1, 0, 1, 2, 0], [0, 0, 0, 0, 1]])
    truth = np.repeat(np.repeat(np.arange(5), 5).reshape(5, 5).ravel(), confusion.ravel())
    predicted = np.repeat(np.tile(np.arange(5), 5), confusion.ravel())
    kappa = cohen_kappa_score(truth, predicted)
    assert float(cohen_kappa(confusion)) == pytest.approx(kappa)
    se_s, se_v, p_s, p_v = 6 / 10, 7 / 10, 6 / 11, 7 / 11
    expected = 0.5 * kappa + 0.125 * (se_s + se_v + p_s + p_v)
    assert float(jkappa_index(confusion, 1, 2)) == pytest.approx(expected)
    names = ["N", "S", "V", "F", "Q"]
    metrics = extra_metrics(("per_class", "jkappa"), "multiclass", 5, names)
    probs = torch.nn.functional.one_hot(torch.as_tensor(predicted), 5).float()
    for half in (slice(0, 60), slice(60, None)):  # over two batches
        metrics.update(probs[half], torch.as_tensor(truth)[half])
    values = {k: float(v) for k, v in metrics.compute().items()}
    assert values["jkappa"] == pytest.approx(expected, abs=1e-6)
    assert values["sensitivity_S"] == pytest.approx(se_s)
    assert values["ppv_V"] == pytest.approx(p_v)
    assert values["specificity_N"] == pytest.approx(18 / 25)  # of 25 non-N, 7 called N
    assert values["f1_S"] == pytest.approx(2 * se_s * p_s / (se_s + p_s))
    with pytest.raises(ConfigError, match="S and V"):
        extra_metrics(("jkappa",), "multiclass", 3, ["a", "b", "c"])
    assert JKappaIndex.higher_is_better


@pytest.mark.parametrize("name,chans", [("kiranyaz_cnn1d", 1), ("resnet1d_18", 2)])
def test_1d_models_take_channels_and_classes_from_the_data(name, chans):
    info = DatasetInfo("mitbih", "classification", 5, chans, "multiclass", list("NSVFQ"),
                       spatial_dims=1)
    example = get_family("classification").example_input(info, (chans, 256))
    assert example.shape == (1, chans, 256)
    model = create_model(name, in_chans=chans, num_classes=5, input_size=256)
    assert model(torch.randn(3, chans, 256)).shape == (3, 5)
    with pytest.raises(ConfigError, match="at least"):
        create_model("kiranyaz_cnn1d", in_chans=1, num_classes=5, input_size=128)


def test_rows_rank_by_the_datas_metric_not_accuracy():
    from medbench.leaderboard.build import families
    from medbench.leaderboard.ranks import part_of, rank_metric

    known = families()
    rows = pd.DataFrame({"family": ["classification"] * 2, "dataset": ["mitbih"] * 2,
                         "rank_metric": ["jkappa", "jkappa"]})
    part = part_of("classification", known, rows)
    assert part.metrics == ("auc", "acc", "jkappa")
    assert rank_metric(rows, part, known["classification"].leaderboard) == "jkappa"
    plain = rows.assign(rank_metric=None)
    assert rank_metric(plain, part_of("classification", known, plain),
                       known["classification"].leaderboard) == "auc"


def test_one_epoch_on_real_records_is_tracked(cache, make_cfg, only_run):
    from medbench.train import train

    metrics = train(make_cfg("data=mitbih", "model=kiranyaz_cnn1d", "trainer.max_epochs=1",
                             "data.train_records=[106]", "data.val_records=[119]",
                             "data.test_records=[100]", "monitor=val/jkappa",
                             "runner.channels_last=false"))
    run = only_run()
    assert run.info.status == "FINISHED"
    assert run.data.tags["data.rank_metric"] == "jkappa"
    assert run.data.tags["data.spatial_dims"] == "1" and run.data.tags["dataset"] == "mitbih"
    for key in ("acc", "kappa", "jkappa", "sensitivity_V", "ppv_S", "specificity_N", "f1_F"):
        assert run.data.metrics[f"test/{key}"] == pytest.approx(metrics[f"test/{key}"])
    assert "val/jkappa" in run.data.metrics and run.data.metrics["model/macs"] > 0
