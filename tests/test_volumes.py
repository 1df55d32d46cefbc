"""3D volumes: MedMNIST 3D and NIfTI manifests, MONAI augmentation, 3D / 2.5D / ACS / fused
models, and one `medbench train` of a 3D model on a few real AdrenalMNIST3D volumes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from medbench.data.medmnist import MedMNISTDataModule, flags_3d
from medbench.data.medmnist3d import MedMNIST3DDataModule
from medbench.data.sources import ArraySource, ItemDataset
from medbench.data.targets import ClassLabels
from medbench.data.volume_transforms import VolumePipeline
from medbench.data.volumes import NiftiManifestDataModule, read_volume
from medbench.errors import ConfigError, DataError
from medbench.family import get_family
from medbench.models import create_model
from medbench.models.profile import count_macs
from medbench.models.registry import check_spatial_dims
from medbench.models.volumes import convert_to_3d

nib = pytest.importorskip("nibabel")
# the ResNet-50s cost 12-24 GMACs a 28^3 volume: slow on a shared 2-core CPU
MODELS_3D = ["resnet18_3d", "resnet18_2_5d", "resnet18_acs", "fused_2d_3d",
             *(pytest.param(name, marks=pytest.mark.slow)
               for name in ("resnet50_3d", "resnet50_2_5d", "resnet50_acs"))]


@pytest.fixture(scope="module")
def adrenal(data_dir) -> dict[str, np.ndarray]:
    with np.load(data_dir / "medmnist" / "adrenalmnist3d.npz") as archive:
        return {key: archive[key] for key in archive.files}


def _write_manifest(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    manifest = folder / "volumes.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return manifest


def _save(folder: Path, name: str, array: np.ndarray, zooms=(1.0, 1.0, 1.0)) -> str:
    nib.save(nib.Nifti1Image(array, np.diag([*zooms, 1.0])), str(folder / name))
    return name


# -- data ----------------------------------------------------------------------------------
def test_medmnist3d_real_adrenal(make_cfg, data_dir):
    from medbench.train import build_datamodule

    dm = build_datamodule(make_cfg("data=adrenalmnist3d"))
    dm.setup()
    assert dm.info.spatial_dims == 3 and dm.info.num_classes == 2
    assert dm.input_shape == (1, 28, 28, 28)
    assert dm.summary()["class_counts_train"] == [929, 259]
    dataset = dm._dataset("test", augmented=False)
    item = dataset[3]
    assert item["image"].shape == (1, 28, 28, 28) and item["image"].dtype == torch.float32
    raw = dm.splits["test"][0][3][..., 0]  # (D, H, W) uint8 shape mask
    assert torch.equal(item["image"][0], torch.as_tensor(raw / 255.0, dtype=torch.float32))
    assert MedMNIST3DDataModule("adrenalmnist3d", size=64, root=str(data_dir)).spatial_shape \
        == (64, 64, 64)


def test_medmnist3d_flags_and_errors(data_dir):
    assert flags_3d() == sorted(["organmnist3d", "nodulemnist3d", "adrenalmnist3d",
                                 "fracturemnist3d", "vesselmnist3d", "synapsemnist3d"])
    classes = {f: MedMNIST3DDataModule(f, root=str(data_dir)).info.num_classes
               for f in flags_3d()}
    assert classes["organmnist3d"] == 11 and classes["fracturemnist3d"] == 3
    with pytest.raises(ConfigError, match="2D dataset, read by data.source=medmnist "):
        MedMNIST3DDataModule("breastmnist")
    with pytest.raises(ConfigError, match="3D dataset, read by data.source=medmnist3d"):
        MedMNISTDataModule("adrenalmnist3d")
    with pytest.raises(ConfigError, match=r"data.size: expected one of \(28, 64\)"):
        MedMNIST3DDataModule("adrenalmnist3d", size=128)
    with pytest.raises(DataError, match="nodulemnist3d.npz not found"):
        MedMNIST3DDataModule("nodulemnist3d", root=str(data_dir), download=False).setup()


def test_nifti_manifest_reads_volumes(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        volume = rng.integers(0, 256, (6, 7, 8), dtype=np.uint8)
        # both classes in every split (a split of one class is refused: its AUC is undefined)
        rows.append((_save(tmp_path, f"v{i}.nii.gz", volume, (2.0, 1.5, 1.0)), "ab"[i // 4 % 2],
                     ("train", "train", "val", "test")[i % 4]))
    manifest = _write_manifest(tmp_path, rows)
    array, spacing = read_volume(tmp_path / "v0.nii.gz")
    assert array.shape == (6, 7, 8) and spacing == (2.0, 1.5, 1.0)
    dm = NiftiManifestDataModule(manifest=str(manifest), batch_size=4,
                                 normalize={"mean": [0.0], "std": [1.0]})
    dm.setup()
    assert dm.info.spatial_dims == 3 and dm.info.label_names == ["a", "b"]
    assert dm.input_shape == (1, 6, 7, 8) and len(dm.splits["train"][1]) == 6
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 6, 7, 8)
    item = dm._dataset("test", augmented=False)[0]
    assert torch.allclose(item["image"][0], torch.as_tensor(
        nib.load(str(tmp_path / "v3.nii.gz")).get_fdata() / 255.0, dtype=torch.float32))


def test_nifti_manifest_errors(tmp_path):
    good = [(_save(tmp_path, f"g{i}.nii", np.zeros((4, 4, 4), np.uint8)), "ab"[i % 2],
             ("train", "val", "test")[i % 3]) for i in range(6)]
    flat = _save(tmp_path, "flat.nii", np.zeros((4, 4), np.uint8))
    other = _save(tmp_path, "other.nii", np.zeros((4, 4, 5), np.uint8))
    two = _save(tmp_path, "two.nii", np.zeros((4, 4, 4, 2), np.uint8))
    cases = [
        ([("missing.nii.gz", "a", "train")], r"volumes.csv:\d+: image file not found"),
        ([(flat, "a", "train")], r"flat.nii has shape \(4, 4\): expected 3 spatial axes"),
        ([(other, "a", "train")], r"volumes differ in shape \(.*g0.nii is 4x4x4, .*other.nii"),
        ([(two, "a", "train")], r"two.nii has 2 channel\(s\).*data.in_chans=1"),
        ([(good[0][0], "", "train")], r"volumes.csv:8: no label for .*g0.nii"),
    ]
    for extra, message in cases:
        manifest = _write_manifest(tmp_path, good + extra)
        with pytest.raises(DataError, match=message):
            NiftiManifestDataModule(manifest=str(manifest)).setup()
    (tmp_path / "broken.nii.gz").write_bytes(b"not a volume")
    with pytest.raises(DataError, match="cannot read volume .*broken.nii.gz"):
        read_volume(tmp_path / "broken.nii.gz")


# -- augmentation --------------------------------------------------------------------------
def test_volume_augmentation_repeats_per_seed_epoch_index(make_cfg):
    steps = list(make_cfg("augment=volume").augment.train)
    volumes = np.random.default_rng(1).integers(0, 256, (4, 12, 12, 12), dtype=np.uint8)
    dataset = ItemDataset(ArraySource(volumes, spatial_dims=3), np.array([0, 1, 0, 1]),
                          ClassLabels("binary", 2),
                          VolumePipeline(steps, {"mean": [0.5], "std": [0.5]}, max_pixel_value=255),
                          seed=7)
    first = [dataset[k]["image"] for k in range(8)]  # two epochs of 4 items
    again = [dataset[k]["image"] for k in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(first[i], first[i + 4]) for i in range(4))  # epochs differ
    assert first[0].shape == (1, 12, 12, 12)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_volume_flips_act_on_each_axis(axis):
    volume = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5, 1)
    flip = VolumePipeline([{"name": "RandFlip", "prob": 1.0, "spatial_axis": axis}],
                          {"mean": [0.0], "std": [1.0]})
    flip.set_random_state(np.random.default_rng(0))
    out = flip(volume)["image"]
    assert torch.equal(out[0], torch.as_tensor(np.flip(volume[..., 0], axis).copy()))


def test_volume_pipeline_refuses_bad_steps():
    with pytest.raises(ConfigError, match="'RandFlipd' is a MONAI dictionary transform"):
        VolumePipeline([{"name": "RandFlipd", "keys": ["image"]}], {"mean": [0], "std": [1]})
    with pytest.raises(ConfigError, match="unknown MONAI array transform 'RandFlipp'"):
        VolumePipeline(["RandFlipp"], {"mean": [0], "std": [1]})
    with pytest.raises(ConfigError, match="augment.views"):
        VolumePipeline([], {"mean": [0], "std": [1]}, views=[[], []])


# -- models --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS_3D)
def test_3d_model_forward_at_28(name):
    torch.manual_seed(0)
    model = create_model(name, in_chans=1, num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 28, 28, 28)).shape == (1, 3)


def test_3d_models_at_64_and_their_cost():
    family = get_family("classification")
    model = create_model("fused_2d_3d", in_chans=1, num_classes=2).eval()
    example = family.example_input(None, (1, 64, 64, 64))
    assert example.shape == (1, 1, 64, 64, 64)
    with torch.no_grad():
        assert model(example).shape == (1, 2)
    small = count_macs(model, family.example_input(None, (1, 28, 28, 28)))
    assert count_macs(model, example) > 10 * small > 0  # (64/28)^3 = 11.9 times the voxels


def test_acs_and_2_5d_conversion():
    model = create_model("resnet18_2_5d", in_chans=2, num_classes=4).eval()
    assert model.conv1.kernel_size == (1, 3, 3)  # a 2D kernel on every slice along D
    with torch.no_grad():  # non-cubic volumes and several channels
        assert model(torch.rand(2, 2, 4, 6, 8)).shape == (2, 4)
    acs = create_model("resnet18_acs", in_chans=2, num_classes=4).eval()
    with torch.no_grad():
        assert acs(torch.rand(2, 2, 4, 6, 8)).shape == (2, 4)
    net2d = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.BatchNorm2d(6),
                                torch.nn.AdaptiveAvgPool2d(1))
    weight = net2d[0].weight.detach().clone()
    net3d = convert_to_3d(net2d, "acs")
    assert type(net3d[0]).__name__ == "ACSConv" and isinstance(net3d[1], torch.nn.BatchNorm3d)
    assert torch.equal(net3d[0].weight, weight)  # 2D kernels kept: 2D weights load into ACS
    assert net3d(torch.rand(1, 1, 5, 6, 7)).shape == (1, 6, 1, 1, 1)
    with pytest.raises(ConfigError, match="no 3D counterpart for Dropout2d"):
        convert_to_3d(torch.nn.Sequential(torch.nn.Dropout2d()), "acs")


def test_model_and_data_spatial_dims_must_agree():
    check_spatial_dims("resnet18_3d", 3)
    check_spatial_dims("basic_unet", 3)  # built for any spatial dims
    with pytest.raises(ConfigError, match="model 'resnet18' takes 2D inputs but data 'x' is 3D"):
        check_spatial_dims("resnet18", 3, "data 'x'")
    with pytest.raises(ConfigError, match="takes 3D inputs but .* is 2D"):
        check_spatial_dims("resnet18_acs", 2)


# -- end to end ----------------------------------------------------------------------------
def test_train_3d_model_on_real_volumes(tmp_path, adrenal, results_dir, only_run):
    """`medbench train` of the fused 2D+3D CNN on 32 real AdrenalMNIST3D volumes (NIfTI)."""
    from medbench.cli import main

    rows = []
    for split, per_class in (("train", 8), ("val", 4), ("test", 4)):
        labels = adrenal[f"{split}_labels"][:, 0]
        for label in (0, 1):
            for index in np.flatnonzero(labels == label)[:per_class]:
                name = _save(tmp_path, f"{split}_{index}.nii.gz", adrenal[f"{split}_images"][index])
                rows.append((name, ("normal", "hyperplasia")[label], split))
    manifest = _write_manifest(tmp_path, rows)
    code = main(["train", f"paths.results_dir={results_dir}", "data=nifti_manifest",
                 f"data.manifest={manifest}", "model=fused_2d_3d", "model.kwargs.width=4",
                 "augment=volume", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"])
    assert code == 0
    run = only_run()
    metrics, tags = run.data.metrics, run.data.tags
    assert run.info.status == "FINISHED" and tags["model"] == "fused_2d_3d"
    assert tags["data.spatial_dims"] == "3" and tags["data.shape"] == "[1, 28, 28, 28]"
    assert 0 <= metrics["test/auc"] <= 1 and 0 <= metrics["test/acc"] <= 1
    assert metrics["model/macs"] > 0 and tags["data.n_test"] == "8"
