"""3D segmentation from NIfTI image/label volumes: pairing and checks from config alone, 3D
patches, spacing-aware surface distances (3D training waits for mask-aware volume
augmentation)."""

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


def _options(root: Path, **extra) -> list[str]:
    return ["data=image_masks", f"data.root={root}", "data.spatial_dims=3",
            "data.classes=[background,ball]", "data.patch_size=[16,16,16]",
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
