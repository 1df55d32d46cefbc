"""Data sources on the real mirror and on tiny synthetic files."""

import numpy as np
import pytest
import torch
from PIL import Image

from medbench.data.files import CSVManifestDataModule, ImageFolderDataModule
from medbench.data.medmnist import MedMNISTDataModule, flags_2d
from medbench.data.transforms import build_pipeline
from medbench.errors import ConfigError, DataError


def test_breastmnist_real_splits_and_metadata(data_dir):
    dm = MedMNISTDataModule("breastmnist", root=str(data_dir))
    dm.setup()
    assert dm.info.label_type == "binary" and dm.info.num_classes == 2 and dm.info.in_chans == 1
    assert dm.summary()["class_counts_train"] == [147, 399]
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [546, 78, 156]
    batch = next(iter(dm.test_dataloader()))  # items are dicts: image, target, index
    images, index = batch["image"], batch["index"]
    assert set(batch) == {"image", "target", "index"} and batch["target"].dtype == torch.int64
    assert images.shape == (128, 1, 28, 28)
    assert images.dtype == torch.float32 and -1.0 <= images.min() and images.max() <= 1.0
    assert index[:3].tolist() == [0, 1, 2]


def test_every_2d_flag_and_size_is_configurable():
    assert len(flags_2d()) == 12
    for flag in flags_2d():
        for size in (28, 64, 128, 224):
            dm = MedMNISTDataModule(flag, size=size, root="/nonexistent", download=False)
            assert dm.image_size == size
    with pytest.raises(ConfigError, match="did you mean 'breastmnist'"):
        MedMNISTDataModule("breastmnst")
    with pytest.raises(ConfigError, match="data.size"):
        MedMNISTDataModule("breastmnist", size=32)


def test_missing_file_one_line_names_file_folder_and_remedy(tmp_path):
    dm = MedMNISTDataModule("pathmnist", size=64, root=str(tmp_path), download=False)
    with pytest.raises(DataError) as err:
        dm.setup()
    message = str(err.value)
    assert "\n" not in message
    assert "pathmnist_64.npz not found" in message and str(tmp_path) in message
    assert "MEDBENCH_DATA_DIR" in message


def test_corrupt_npz(tmp_path):
    (tmp_path / "breastmnist.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        MedMNISTDataModule("breastmnist", root=str(tmp_path), download=False).setup()


def _fake_npz(path, labels):
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = np.zeros((len(labels), 28, 28), np.uint8)
        arrays[f"{split}_labels"] = np.array(labels).reshape(-1, 1)
    np.savez(path, **arrays)


def test_labels_out_of_range(tmp_path):
    _fake_npz(tmp_path / "breastmnist.npz", [0, 1, 5])
    with pytest.raises(DataError, match=r"labels span \[0, 5\] .* 2 classes"):
        MedMNISTDataModule("breastmnist", root=str(tmp_path), download=False).setup()


def test_weighted_sampler_balances_classes(data_dir):
    dm = MedMNISTDataModule("breastmnist", root=str(data_dir), sampler="weighted", seed=0)
    labels = torch.cat([batch["target"] for batch in dm.train_dataloader()])
    share = labels.float().mean().item()  # class 1 is 73% of the training set
    assert 0.4 < share < 0.6
    weights = dm.class_weights()
    assert weights[0] > weights[1] and torch.isclose((weights * torch.tensor([147., 399.])).sum(),
                                                     torch.tensor(546.))


@pytest.mark.parametrize("chans", [1, 3])
def test_survey_augmentations_run(chans):
    from medbench.config import compose_config

    steps = compose_config(["augment=survey"]).augment.train
    pipeline = build_pipeline(list(steps), {"mean": [0.5] * chans, "std": [0.5] * chans})
    image = np.random.default_rng(0).integers(0, 255, (28, 28, chans), dtype=np.uint8)
    out = pipeline(image=image)["image"]
    assert out.shape == (chans, 28, 28)


def test_unknown_transform_suggests():
    with pytest.raises(ConfigError, match="did you mean HorizontalFlip"):
        build_pipeline([{"name": "HorizontalFlp"}], {"mean": [0.5], "std": [0.5]})


def _png(path, value, size=16, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size), value).save(path)


def test_csv_manifest_groups_patients_and_rejects_escapes(tmp_path):
    rows = ["path,label,patient_id"]
    for i in range(60):
        _png(tmp_path / f"img/{i}.png", i)
        rows.append(f"img/{i}.png,{'tumour' if i % 3 == 0 else 'normal'},p{i // 2}")
    manifest = tmp_path / "data.csv"
    manifest.write_text("\n".join(rows))
    dm = CSVManifestDataModule(str(manifest), seed=0)
    dm.setup()
    assert dm.info.label_type == "binary" and dm.info.label_names == ["normal", "tumour"]
    patients = {s: {p.name for p in dm.splits[s][0].paths} for s in ("train", "val", "test")}
    by_patient = {s: {int(n.split(".")[0]) // 2 for n in names} for s, names in patients.items()}
    assert not (by_patient["train"] & by_patient["test"]) and not (by_patient["train"]
                                                                   & by_patient["val"])
    manifest.write_text("path,label\n../outside.png,a\nimg/0.png,b\n")
    with pytest.raises(DataError, match="escapes the data root"):
        CSVManifestDataModule(str(manifest))


def test_csv_manifest_multilabel_and_fixed_splits(tmp_path):
    rows = ["path,label,split"]
    for i, split in enumerate(["train"] * 4 + ["val", "test"]):
        _png(tmp_path / f"{i}.png", 10 * i, mode="RGB")
        rows.append(f"{i}.png,{'a|b' if i % 2 else 'b'},{split}")
    (tmp_path / "m.csv").write_text("\n".join(rows))
    dm = CSVManifestDataModule(str(tmp_path / "m.csv"), label_type="multilabel", in_chans=3)
    dm.setup()
    assert dm.splits["train"][1].tolist() == [[0, 1], [1, 1], [0, 1], [1, 1]]
    item = dm.eval_dataloader("val").dataset[0]
    image, label = item["image"], item["target"]
    assert image.shape == (3, 16, 16) and label.tolist() == [0.0, 1.0]


def test_image_folder_and_channel_mismatch(tmp_path):
    for split in ("train", "val", "test"):
        for cls in ("a", "b", "c"):
            _png(tmp_path / split / cls / "x.png", 100 + 10 * len(split) + ord(cls))  # distinct
    dm = ImageFolderDataModule(str(tmp_path), in_chans=1)
    dm.setup()
    assert dm.info.label_type == "multiclass" and dm.info.num_classes == 3
    assert dm.splits["train"][1].tolist() == [0, 1, 2]
    with pytest.raises(DataError, match="folder not found"):
        ImageFolderDataModule(str(tmp_path / "nope"))
    _png(tmp_path / "test" / "c" / "big.png", 100, size=20)
    with pytest.raises(DataError, match=r"images differ in size .* set data.resize="):
        ImageFolderDataModule(str(tmp_path)).setup()
    resized = ImageFolderDataModule(str(tmp_path), resize=24)
    assert resized.eval_dataloader("test").dataset[1]["image"].shape == (1, 24, 24)


def test_label_indices_follow_data_classes_else_numbers_then_names(tmp_path):
    """One dataset keeps its label indices whichever loader reads it: data.classes sets the
    order; without it numeric labels sort as numbers (2 before 10), names alphabetically."""
    rows = ["path,label"]
    for i in range(30):
        _png(tmp_path / f"{i}.png", i)
        rows.append(f"{i}.png,{['2', '10', '1'][i % 3]}")
    (tmp_path / "numbers.csv").write_text("\n".join(rows))
    assert CSVManifestDataModule(str(tmp_path / "numbers.csv")).info.label_names == [
        "1", "2", "10"]
    (tmp_path / "names.csv").write_text("\n".join(
        ["path,label", *(f"{i}.png,{'normal' if i % 2 else 'malignant'}" for i in range(30))]))
    ordered = CSVManifestDataModule(str(tmp_path / "names.csv"), classes=["normal", "malignant"])
    assert ordered.info.label_names == ["normal", "malignant"]
    ordered.setup()
    source, labels = ordered.splits["train"]  # sample ids: paths relative to the manifest
    assert [0 if int(name[:-4]) % 2 else 1 for name in source.sample_ids()] == labels.tolist()
    with pytest.raises(DataError, match=r"labels \['malignant'\] are not in data.classes"):
        CSVManifestDataModule(str(tmp_path / "names.csv"), classes=["normal", "benign"])


@pytest.mark.parametrize("wanted, index", [(None, 1), ("malignant", 0), (0, 0), ("1", 1)])
def test_positive_class_by_name_or_index(wanted, index, data_dir):
    dm = MedMNISTDataModule("breastmnist", root=str(data_dir), download=False,
                            positive_class=wanted)
    dm.setup()
    assert dm.info.positive_class == index and dm.summary()["positive_class"] == index


def test_positive_class_is_checked(data_dir):
    with pytest.raises(ConfigError, match=r"'tumour' is neither a label of breastmnist "
                                          r"\('malignant', 'normal, benign'\)"):
        MedMNISTDataModule("breastmnist", root=str(data_dir), download=False,
                           positive_class="tumour").setup()

def test_positive_class_applies_to_binary_labels_only(tmp_path):
    rows = ["path,label"]
    for i in range(30):
        _png(tmp_path / f"{i}.png", i)
        rows.append(f"{i}.png,{'abc'[i % 3]}")
    (tmp_path / "three.csv").write_text("\n".join(rows))
    with pytest.raises(ConfigError, match="three has multiclass labels; a positive class"):
        CSVManifestDataModule(str(tmp_path / "three.csv"), positive_class="a").setup()

