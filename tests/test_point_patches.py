"""Survey 4.7.1 (Sirinukunwattana 2016) on BCCD: cells as points (box centres) classified on
patches around them by a softmax CNN inside a neighbouring ensemble predictor; real data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from medbench.catalog import SURVEY_DIR, CatalogEntry
from medbench.config import compose_config
from medbench.errors import ConfigError
from medbench.models import create_model
from medbench.train import build_datamodule, train_run

ENTRY = "sirinukunwattana2016_locality_nep"
FEW = "data.max_images={train: 4, val: 2, test: 2}"


def test_each_box_centre_is_a_labelled_patch_of_the_scaled_image(data_dir):
    datamodule = build_datamodule(compose_config(["data=bccd_cell_points", FEW]))
    datamodule.setup()
    source, labels = datamodule.splits["train"]
    record = datamodule.records["train"][0]
    assert len(source) == len(labels) == sum(len(r.boxes) for r in datamodule.records["train"])
    assert list(labels[:len(record.boxes)]) == list(record.labels)
    box = record.boxes[0]
    x, y = int((box[0] + box[2]) / 2 * 0.25), int((box[1] + box[3]) / 2 * 0.25)
    with Image.open(data_dir / "bccd" / "BCCD" / record.image.relative_to(datamodule.root)) as im:
        scaled = np.asarray(im.convert("RGB").resize((160, 120), Image.Resampling.BILINEAR))
    padded = np.pad(scaled, ((17, 17), (17, 17), (0, 0)), mode="reflect")
    assert source[0].shape == (35, 35, 3)
    np.testing.assert_array_equal(source[0], padded[y:y + 35, x:x + 35])  # centred on (x, y)
    assert source.sample_ids()[0].endswith(f"@{x},{y}")
    assert datamodule.info.label_names == ["RBC", "WBC", "Platelets"]


def test_the_ensemble_averages_the_neighbours_softmax():
    torch.manual_seed(0)
    net = create_model("nep_softmax_cnn", 3, 3).eval()
    x = torch.rand(2, 3, 39, 39)  # larger than 35: the crops stay centred
    crops = [x[..., 6 + dy:6 + dy + 27, 6 + dx:6 + dx + 27] for dy, dx in net.offsets]
    assert len(net.offsets) == 13 and (0, 0) in net.offsets and (-4, 0) in net.offsets
    expected = torch.stack([net.net(c).softmax(1) for c in crops]).mean(0)
    assert torch.allclose(net(x).softmax(1), expected, atol=1e-6)
    net.train()
    assert net(x).shape == (2, 3)
    with pytest.raises(ConfigError, match="data.patch"):
        build_datamodule(compose_config(["data=bccd_cell_points", "data.patch=34"]))


def test_the_entry_trains_on_bccd_points_and_is_tracked(results_dir):
    assert CatalogEntry.read(SURVEY_DIR / f"{ENTRY}.yaml").runnable
    cfg = compose_config([f"experiment=survey/{ENTRY}", f"paths.results_dir={results_dir}",
                          FEW, "trainer.max_epochs=1", "trainer.enable_progress_bar=false"])
    run_id, metrics = train_run(cfg)
    assert run_id and 0 <= metrics["test/auc"] <= 1 and "test/f1" in metrics
