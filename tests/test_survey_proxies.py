"""Survey methods on labelled proxies (issue 21): Gao 2018's attenuation windows (4.1.3) on
PneumoniaMNIST and Pratt 2016's Gaussian-initialised, class-weighted CNN (4.6.1) on
BreastMNIST, each trained one tiny epoch end to end on the real data and tracked."""

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
from medbench.train import train_run

GAO = "gao2018_whole_image_attenuation"
PRATT = "pratt2016_gaussian_init_dr"
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


def _datamodule(cfg):
    from medbench.train import build_datamodule
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    return datamodule
