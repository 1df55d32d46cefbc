"""The ``patch_heatmap`` runner (survey Table 13: 6.1.1, 6.2.1, 6.3.1): the dense heatmap, Otsu's
background mask and peaks on a synthetic image, and `medbench train` of two catalog entries end
to end on a few real BCCD images."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from medbench.tasks.detection.patch_heatmap import crops, detect, heatmap, otsu_foreground

RUN = {"stride": 2, "scale": 0.5, "peak_distance": 0.5, "min_score": 0.5,
       "detections_per_image": 100}


class CentreDarkness(nn.Module):
    """(background, object) logits from the darkness of a window's centre pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre = x[:, :, x.shape[2] // 2, x.shape[3] // 2].mean(1)
        return torch.stack([torch.zeros_like(centre), 12 * (0.5 - centre)], 1)


def _blobs() -> torch.Tensor:
    """A 3x40x60 bright image with discs (radius 5) darkest at their centres (x, y) (16, 12) and
    (44, 26)."""
    yy, xx = np.mgrid[:40, :60]
    image = np.ones((40, 60))
    for x, y in ((16, 12), (44, 26)):
        r = np.hypot(xx - x, yy - y)
        image[r <= 5] = r[r <= 5] / 6
    return torch.as_tensor(image, dtype=torch.float32).expand(3, -1, -1).contiguous()


def test_heatmap_peaks_are_boxes_of_the_class_size_on_the_objects():
    small = _blobs()
    heat = heatmap(CentreDarkness(), small, patch=8, stride=2)
    assert heat.shape == (2, 20, 30)  # windows every 2 px from (0, 0): ceil(side / stride)
    assert torch.allclose(heat.sum(0), torch.ones(20, 30))
    found = detect(heat, np.array([[20.0, 16.0]]), RUN, None, (80, 120))
    assert len(found["boxes"]) == 2 and (found["labels"] == 0).all()
    centres = ((found["boxes"][:, :2] + found["boxes"][:, 2:]) / 2).numpy()
    # the discs' centre pixels at full size: (x + 0.5) / scale
    assert np.abs(np.sort(centres, 0) - [[33.0, 25.0], [89.0, 53.0]]).max() <= 1e-4
    sizes = (found["boxes"][:, 2:] - found["boxes"][:, :2]).numpy()
    assert np.allclose(sizes, [20.0, 16.0])
    assert (found["scores"] > 0.9).all()
    patches = crops(small, np.array([[16.0, 12.0], [0.0, 0.0]]), 8)
    assert patches.shape == (2, 3, 8, 8) and float(patches[0, :, 4, 4].max()) == 0.0


def test_otsu_mask_keeps_cells_with_pale_centres_and_removes_background():
    yy, xx = np.mgrid[:40, :60]
    grey = np.ones((40, 60))
    ring = (np.hypot(xx - 20, yy - 20) <= 8) & (np.hypot(xx - 20, yy - 20) >= 4)
    grey[ring] = 0.2  # a red cell: a dark rim round a pale centre
    small = torch.as_tensor(grey, dtype=torch.float32).expand(3, -1, -1).contiguous()
    mask = otsu_foreground(small, (20, 30), 2)
    assert mask.shape == (20, 30)
    assert mask[10, 10] and mask[10, 14]  # the pale centre (holes filled) and the rim
    assert not mask[2, 25] and mask.mean() < 0.2
    heat = torch.zeros(2, 20, 30)
    heat[1, 10, 10], heat[1, 3, 25] = 0.9, 0.95  # a peak on the cell and one on background
    found = detect(heat, np.array([[10.0, 10.0]]), {**RUN, "scale": 1.0}, mask, (40, 60))
    assert len(found["boxes"]) == 1 and float(found["scores"][0]) == pytest.approx(0.9)


@pytest.mark.parametrize("entry, model, extra", [
    ("shkolyar2015_lenet_mitosis", "lenet5", []),
    ("vangrinsven2016_selective_sampling_hemorrhage", "six_layer_cnn", []),
    ("wang2016_googlenet_camelyon_metastasis", "googlenet", ["runner.stride=16"])])
def test_survey_entries_train_on_real_bccd_images(entry, model, extra, results_dir, only_run,
                                                  data_dir, check_bccd_detection_run):
    """`medbench train experiment=survey/<entry>` on 4 / 2 / 3 real BCCD images, 2 epochs
    (GoogLeNet's heatmap windows every 16 px, to stay quick on a CPU)."""
    from medbench.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["train", f"experiment=survey/{entry}", f"paths.results_dir={results_dir}",
                     "trainer.enable_progress_bar=false",
                     "data.max_images={train: 4, val: 2, test: 3}", "runner.train.epochs=2",
                     "runner.train.negative_pool=40", *extra])
    assert code == 0
    run = only_run()
    tags = run.data.tags
    assert run.info.status == "FINISHED" and tags["runner"] == "patch_heatmap"
    assert tags["family"] == "detection" and tags["model"] == model
    assert tags["data.class_counts_test"] == "[48, 3, 2]"
    check_bccd_detection_run(run)


def test_a_patch_smaller_than_the_model_takes_is_one_line(results_dir, capsys):
    from medbench.cli import main

    code = main(["train", "experiment=survey/vangrinsven2016_selective_sampling_hemorrhage",
                 f"paths.results_dir={results_dir}", "trainer.enable_progress_bar=false",
                 "data.max_images={train: 1, val: 1, test: 1}", "runner.patch=16"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "error: runner.patch=16 is below the 26 px model 'six_layer_cnn' needs" in err
