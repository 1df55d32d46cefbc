"""The hybrid CNN-LSTM (Lilhore et al. 2023): frames, shapes, configs, its search space, the
binary MIT-BIH proxy with its FPR metric, and one short training on real records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medbench.config import compose_config
from medbench.data.ecg_binary import MITBIHBinaryDataModule
from medbench.errors import ConfigError
from medbench.metrics.aami import FalsePositiveRate, extra_metrics
from medbench.models import MODELS, create_model
from medbench.tuning import SearchSpace

EXPERIMENT = "experiment=lilhore2023_cnn_lstm"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """MEDBENCH_CACHE_DIR at a folder of this module's own (the archive unpacks there)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.mark.parametrize("frames, options, bins", [
    ("stft", {}, 33), ("mel", {"n_fft": 128, "n_mels": 20, "fmax": 90.0}, 20)])
def test_frames_and_forward_shapes(frames, options, bins):
    net = create_model("cnn_lstm", in_chans=2, num_classes=3, frames=frames, **options)
    x = torch.randn(4, 2, 720)
    spec = net.frames(x)
    assert spec.shape == (4, 2, bins, 1 + 720 // 16)
    out = net(x)
    assert out.shape == (4, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_mel_frames_use_librosas_filter_bank():
    import librosa.filters

    net = create_model("cnn_lstm", 1, 2, frames="mel", n_fft=128, n_mels=16, fmax=100.0)
    bank = librosa.filters.mel(sr=360.0, n_fft=128, n_mels=16, fmin=0.0, fmax=100.0)
    assert torch.allclose(net.frames.mel, torch.from_numpy(bank).float())
    assert "frames.mel" not in net.state_dict()  # a fixed buffer, rebuilt from the config


def test_bidirectional_stacked_lstm_reads_both_directions():
    net = create_model("cnn_lstm", 1, 2, bidirectional=True, layers=2, hidden=24, dropout=0.2)
    assert net.lstm.bidirectional and net.lstm.num_layers == 2 and net.lstm.dropout == 0.2
    assert net.head.in_features == 48
    net.eval()
    x = torch.randn(3, 1, 400)
    assert net(x).shape == (3, 2)
    # the CNN maps each window of frames (frequency x 8 frames) to one vector
    assert net.cnn(torch.randn(5, 1, 33, 8)).shape == (5, 32)


def test_bad_options_are_one_line_errors():
    with pytest.raises(ConfigError, match="frames"):
        create_model("cnn_lstm", 1, 2, frames="wav")
    with pytest.raises(ConfigError, match="dropout"):
        create_model("cnn_lstm", 1, 2, dropout=1.0)
    net = create_model("cnn_lstm", 1, 2)
    assert net.min_length() == MODELS.get("cnn_lstm").meta["min_input_size"] == 112
    with pytest.raises(ValueError, match="window_frames"):
        net(torch.randn(2, 1, 100))


def test_experiment_composes_model_data_and_search_space():
    cfg = compose_config([EXPERIMENT])
    assert cfg.model.name == "cnn_lstm" and cfg.data.source == "mitbih_binary"
    assert cfg.data.name.endswith("proxy") and cfg.runner.channels_last is False
    assert MODELS.get("cnn_lstm").meta["spatial_dims"] == 1
    net = create_model(cfg.model.name, 1, 2, **cfg.model.kwargs)
    assert net(torch.randn(2, 1, cfg.data.window)).shape == (2, 2)
    tune_cfg = compose_config([EXPERIMENT, "search=cnn_lstm"], config_name="tune")
    space = SearchSpace(tune_cfg.search.params)
    values = {"conv1": 8, "conv2": 64, "lstm_hidden": 32, "lstm_layers": 2,
              "bidirectional": True, "dropout": 0.25, "lr": 3e-4}
    trial = compose_config([EXPERIMENT, *space.overrides(values)])
    assert list(trial.model.kwargs.widths) == [8, 64] and trial.model.kwargs.layers == 2
    assert trial.model.kwargs.bidirectional is True and trial.runner.optimizer.lr == 3e-4


def test_false_positive_rate_metric():
    fpr = FalsePositiveRate()
    fpr.update(torch.tensor([0.9, 0.2, 0.7, 0.1, 0.6]), torch.tensor([0, 0, 0, 1, 1]))
    assert fpr.compute().item() == pytest.approx(2 / 3)  # 2 of 3 negatives predicted positive
    assert set(extra_metrics(("fpr",), "binary", 2, ["a", "b"])) == {"fpr"}
    with pytest.raises(ConfigError, match="binary"):
        extra_metrics(("fpr",), "multiclass", 3, ["a", "b", "c"])
    with pytest.raises(ConfigError, match="multi-class"):
        extra_metrics(("jkappa",), "binary", 2, ["a", "b"])


def test_binary_beats_keep_records_apart_and_subsample(cache):
    data = MITBIHBinaryDataModule(train_records=[106, 119], val_records=[119],
                                  test_records=[100], max_beats_per_record=300, window=720)
    data.setup()
    assert data.info.label_type == "binary" and data.info.label_names == ["normal", "abnormal"]
    train, test = data.splits["train"][1], data.splits["test"][1]
    assert len(train) == 300 and len(test) == 300 and set(data.groups["test"]) == {100}
    # 106 has 520 V of 2,027 beats: about a quarter of those kept are abnormal
    assert 0.15 < train.mean() < 0.35 and set(np.unique(train)) == {0, 1}
    assert data.splits["train"][0][0].shape == (720, 1)
    with pytest.raises(ConfigError, match="data.classes"):
        MITBIHBinaryDataModule(classes=["N", "V"])
    with pytest.raises(ConfigError, match="disjoint"):
        MITBIHBinaryDataModule(negative=["N"], positive=["N", "V"])


def test_one_epoch_on_real_records_logs_acc_tpr_fpr(cache, make_cfg, only_run):
    from medbench.train import train

    metrics = train(make_cfg(
        EXPERIMENT, "data.train_records=[106,119,208]", "data.val_records=[119]",
        "data.test_records=[200,233]", "data.max_beats_per_record=500", "trainer.max_epochs=2",
        "model.kwargs.widths=[8,16]", "model.kwargs.hidden=16"))
    run = only_run()
    assert run.info.status == "FINISHED" and run.data.tags["data.label_type"] == "binary"
    acc, tpr, fpr = (run.data.metrics[f"test/{k}"] for k in ("acc", "sensitivity", "fpr"))
    assert acc == pytest.approx(metrics["test/acc"])
    negatives, positives = json.loads(run.data.tags["data.class_counts_test"])
    share = positives / (negatives + positives)
    # three metrics computed apart agree: acc = share * TPR + (1 - share) * (1 - FPR)
    assert acc == pytest.approx(share * tpr + (1 - share) * (1 - fpr), abs=1e-4)
    # 200 and 233 hold 827 and 842 V beats: two epochs on V-rich records already separate them
    assert run.data.metrics["test/auc"] > 0.7
