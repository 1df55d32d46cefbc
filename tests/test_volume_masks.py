"""3D segmentation from NIfTI image/label volumes: pairing and checks from config alone, 3D
patches, one augmentation draw for a volume and its labels, spacing-aware surface distances,
and `medbench train` of a 3D U-Net from config alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medbench.errors import DataError

SPACING = (2.0, 1.0, 0.5)
SHAPE = (20, 24, 28)


def _write(path: Path, array: np.ndarray, spacing=SPACING) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(array, np.diag([*spacing, 1.0]))
    nib.save(image, str(path))


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> Path:
    """Six volumes with a bright ball each (label 1), the ball's centre and radius random."""
    root = tmp_path_factory.mktemp("nifti")
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1)
    for split, count in (("train", 4), ("test", 2)):
        (root / split).mkdir()
        for k in range(count):
            centre = rng.uniform(6, np.array(SHAPE) - 6)
            ball = np.linalg.norm(grid - centre, axis=-1) < rng.uniform(3, 5)
            image = (ball * 0.6 + rng.normal(0.2, 0.1, SHAPE)).astype(np.float32)
            _write(root / split / f"case{k}_img.nii.gz", image)
            _write(root / split / f"case{k}_seg.nii.gz", ball.astype(np.uint8))
    return root


def _options(root: Path, patch: int = 16, **extra) -> list[str]:
    return ["data=image_masks", f"data.root={root}", "data.spatial_dims=3",
            "data.classes=[background,ball]", f"data.patch_size=[{patch},{patch},{patch}]",
            "data.splits={train: {images: 'train/*_img.nii.gz', masks: 'train/{id}_seg.nii.gz'},"
            " test: {images: 'test/*_img.nii.gz', masks: 'test/{id}_seg.nii.gz'}}",
            "data.id_pattern='(?P<id>case\\d+)_'", "data.normalize={mean: [0.2], std: [0.3]}",
            *[f"{k}={v}" for k, v in extra.items()]]


def test_volumes_pair_with_their_spacing(make_cfg, volumes):
    from medbench.train import build_datamodule

    dm = build_datamodule(make_cfg(*_options(volumes)))
    dm.setup()
    assert dm.info.spatial_dims == 3 and dm.spatial_shape == (16, 16, 16)
    source, targets = dm.splits["test"]
    assert source[0].shape == (*SHAPE, 1) and targets[0]["mask"].shape == SHAPE
    np.testing.assert_allclose(targets[0]["spacing"], SPACING)


def test_3d_patches_follow_the_sampled_centre():
    from medbench.data.patches import crop

    volume = np.arange(5 * 6 * 7).reshape(5, 6, 7)
    patch = crop(volume, (-1, 2, 3), (3, 3, 3))
    assert patch.shape == (3, 3, 3) and (patch[0] == 0).all()
    np.testing.assert_array_equal(patch[1:], volume[0:2, 2:5, 3:6])


def test_a_label_volume_of_another_size_is_named(make_cfg, volumes, tmp_path):
    from medbench.train import build_datamodule

    for name in ("train", "test"):
        (tmp_path / name).mkdir()
        for path in (volumes / name).iterdir():
            (tmp_path / name / path.name).symlink_to(path)
    bad = tmp_path / "test" / "case1_seg.nii.gz"
    bad.unlink()
    _write(bad, np.zeros((20, 24, 27), np.uint8))
    dm = build_datamodule(make_cfg(*_options(tmp_path)))
    with pytest.raises(DataError, match=r"case1_seg.nii.gz is 20x24x27 \(voxels\) but its image"):
        dm.setup()


def test_surface_distances_are_in_the_spacing_units():
    from medbench.tasks.segmentation.module import surface_distances

    reference = torch.zeros(2, *SHAPE, dtype=torch.long)
    reference[:, 6:12, 8:16, 8:16] = 1
    predicted = torch.zeros(2, *SHAPE, dtype=torch.long)
    predicted[0, 7:13, 8:16, 8:16] = 1  # one voxel along the first axis: 2.0 mm
    predicted[1, 6:12, 9:17, 8:16] = 1  # one voxel along the second axis: 1.0 mm
    probs = torch.stack([1 - predicted, predicted], 1).double()
    fov = torch.ones_like(reference, dtype=torch.bool)
    out = surface_distances(probs, reference, fov, torch.tensor([0.5]),
                            torch.tensor([SPACING, SPACING]))
    assert out["hd95"].tolist() == pytest.approx([2.0, 1.0])
    in_voxels = surface_distances(probs, reference, fov, torch.tensor([0.5]))
    assert in_voxels["hd95"].tolist() == pytest.approx([1.0, 1.0])
    assert (out["asd"] <= out["hd95"]).all() and (out["asd"] > 0).all()


def test_labels_follow_the_volume_through_one_draw():
    """Spatial steps move image, mask and FOV together (labels resampled nearest); intensity
    steps leave the labels alone."""
    from medbench.data.volume_transforms import VolumePipeline

    rng = np.random.default_rng(3)
    labels = (rng.random((10, 12, 14)) > 0.7).astype(np.int64)
    steps = [{"name": "RandFlip", "prob": 0.5, "spatial_axis": 0},
             {"name": "RandRotate90", "prob": 1.0, "spatial_axes": [1, 2]},
             {"name": "RandScaleIntensity", "factors": 0.5, "prob": 1.0}]
    pipeline = VolumePipeline(steps, {"mean": [0.0], "std": [1.0]})
    for seed in range(4):
        pipeline.set_random_state(np.random.default_rng(seed))
        out = pipeline(labels[..., None].astype(np.float32), mask=labels, fov=np.ones_like(labels))
        image, mask = out["image"][0].numpy(), out["mask"]
        assert image.shape == mask.shape and mask.dtype == np.int64
        assert (out["fov"] == 1).all()  # a turn and a flip keep every voxel in view
        scale = image.max()  # the intensity step scaled the volume only
        np.testing.assert_allclose(image, mask * scale, atol=1e-6)
    rotate = VolumePipeline([{"name": "RandRotate", "range_x": 0.6, "prob": 1.0}],
                            {"mean": [0.0], "std": [1.0]})
    rotate.set_random_state(np.random.default_rng(0))
    out = rotate(labels[..., None].astype(np.float32), mask=labels * 2)
    assert set(np.unique(out["mask"])) <= {0, 2}  # nearest: no blended label values


def test_train_3d_unet_on_volumes(volumes, results_dir, only_run):
    """`medbench train` of MONAI's BasicUNet in 3D on NIfTI volumes, from config alone (its
    32-voxel minimum patch is larger than the volumes: patches and windows are zero-padded)."""
    from medbench.cli import main

    code = main(["train", f"paths.results_dir={results_dir}", *_options(volumes, patch=32),
                 "model=basic_unet", "+model.kwargs.spatial_dims=3",
                 "+model.kwargs.features=[4,4,8,8,16,4]", "augment=volume",
                 "data.patches_per_image=2", "trainer.max_epochs=1",
                 "trainer.enable_progress_bar=false"])
    assert code == 0
    run = only_run()
    metrics, tags = run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED" and tags["data.spatial_dims"] == "3"
    assert 0 <= metrics["test/dice"] <= 1 and 0 <= metrics["test/auc"] <= 1
    assert np.isfinite(metrics["test/hd95"])  # in millimetres (the volumes' spacing)
