"""Survey methods on labelled proxies (issue 21): Gao 2018's attenuation windows (4.1.3) on
PneumoniaMNIST, Pratt 2016's Gaussian-initialised, class-weighted CNN (4.6.1), and the two-stage
(pretrain, then fine-tune) Bayramoglu 2015 cuda-convnet with equalised inputs (4.3.1) and
Sajjad 2019 VGG-19 with an augmentation cascade (4.8.2) on BreastMNIST, each trained one tiny
epoch end to end on the real data and tracked."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from medbench.catalog import SURVEY_DIR, CatalogEntry
from medbench.config import compose_config
from medbench.data.transforms import build_pipeline
from medbench.errors import ConfigError
from medbench.models import create_model
from medbench.models.survey.cuda_convnet import WithinMapNorm
from medbench.reproduce import reproduce
from medbench.train import train_run

GAO = "gao2018_whole_image_attenuation"
PRATT = "pratt2016_gaussian_init_dr"
BAYRAMOGLU = "bayramoglu2015_cuda_convnet_hep2"
SAJJAD = "sajjad2019_input_cascaded_augmentation"
TINY = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1", "trainer.enable_progress_bar=false",
        "data.batch_size=32", "data.eval_batch_size=64"]


def test_windows_stack_the_configured_ranges_as_channels() -> None:
    cfg = compose_config([f"experiment=survey/{GAO}"])
    windows = [view[0] for view in cfg.augment.views]
    datamodule = _datamodule(cfg)
    assert datamodule.model_in_chans == len(windows) == 3
    image = datamodule.splits["train"][0][0]  # a real chest X-ray, (28, 28, 1) uint8
    pipeline = build_pipeline([], {"mean": [0.0], "std": [1.0]},
                              views=[list(v) for v in cfg.augment.views])
    out = pipeline(image=image)["image"]
    assert out.shape == (3, 28, 28) and 0.0 <= out.min() and out.max() <= 1.0
    grey = torch.as_tensor(image[..., 0].astype(np.float32))
    for channel, window in zip(out, windows, strict=True):
        inside = (grey >= window.low) & (grey <= window.high)
        expected = (grey - window.low) / (window.high - window.low)
        assert torch.allclose(channel[inside], expected[inside], atol=1 / 255)
        assert (channel[grey < window.low] == 0).all() and (channel[grey > window.high] == 1).all()


def test_gaussian_init_has_the_configured_std() -> None:
    net = create_model("small_kernel_cnn", 1, 2, init="gaussian", init_std=0.05)
    weights = torch.cat([m.weight.flatten() for m in net.modules()
                         if isinstance(m, (nn.Conv2d, nn.Linear))])
    assert abs(float(weights.std()) - 0.05) < 0.002 and abs(float(weights.mean())) < 0.002
    biases = [m.bias for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert all((b == 0).all() for b in biases)
    with pytest.raises(ConfigError, match="init_std"):
        create_model("small_kernel_cnn", 1, 2, init="library", init_std=0.05)


@pytest.mark.parametrize("entry", [GAO, PRATT])
def test_entry_trains_on_its_proxy_and_is_tracked(entry, tmp_path, mlflow_template) -> None:
    assert CatalogEntry.read(SURVEY_DIR / f"{entry}.yaml").runnable
    assert CatalogEntry.read(SURVEY_DIR / f"{entry}.yaml").proxy
    results = tmp_path / "results"
    results.mkdir()
    shutil.copyfile(mlflow_template, results / "mlflow.db")
    cfg = compose_config([f"experiment=survey/{entry}", f"paths.results_dir={results}", *TINY])
    run_id, metrics = train_run(cfg)
    assert run_id and {"test/acc", "test/sensitivity", "test/specificity"} <= set(metrics)
    run = MlflowClient(f"sqlite:///{results / 'mlflow.db'}").get_run(run_id)
    assert run.info.status == "FINISHED"
    if entry == PRATT:
        assert run.data.params.get("model.init") in (None, "gaussian")
    print(entry, {k: round(v, 3) for k, v in metrics.items() if k.startswith("test/")})


def test_cuda_convnet_normalises_within_each_map_and_takes_any_size() -> None:
    x = torch.rand(1, 2, 5, 5) * 50
    out = WithinMapNorm(3, alpha=5e-5, beta=0.75)(x)
    neighbourhood = torch.nn.functional.pad(x[0, 1] ** 2, (1, 1, 1, 1))[1:4, 2:5]  # pixel (1, 2)
    assert torch.isclose(out[0, 1, 1, 2], x[0, 1, 1, 2]
                         / (1 + 5e-5 * neighbourhood.mean()) ** 0.75)
    net = create_model("cuda_convnet", 1, 2)
    assert {net(torch.rand(2, 1, s, s)).shape for s in (8, 28, 32, 64)} == {torch.Size([2, 2])}


@pytest.mark.parametrize("entry", [BAYRAMOGLU, SAJJAD])
def test_two_stage_entry_pretrains_then_fine_tunes_on_its_proxy(entry, tmp_path, mlflow_template):
    """`pretrain` trains the source run (PneumoniaMNIST), the entry fine-tunes it (BreastMNIST)."""
    catalog = CatalogEntry.read(SURVEY_DIR / f"{entry}.yaml")
    assert catalog.runnable and catalog.proxy
    results = tmp_path / "results"
    results.mkdir()
    shutil.copyfile(mlflow_template, results / "mlflow.db")
    extra = [f"paths.results_dir={results}", *TINY]
    [run_id] = reproduce([catalog], [0], extra, train_run, log=print)
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    run = client.get_run(run_id)
    source = client.get_run(run.data.params["model.pretrained_path"].removeprefix("run:"))
    assert (run.info.status, source.info.status) == ("FINISHED", "FINISHED")
    assert source.data.tags["medbench.kind"] == "pretrain"
    assert (source.data.params["data.flag"], run.data.params["data.flag"]) == (
        "pneumoniamnist", "breastmnist")
    assert {"test/auc", "test/sensitivity", "test/specificity"} <= set(run.data.metrics)


def _datamodule(cfg):
    from medbench.train import build_datamodule
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    return datamodule
