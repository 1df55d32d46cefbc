"""The image/mask source: real DRIVE, a layout nobody has seen from config alone, pair checks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medbench.config import compose_config
from medbench.data.image_masks import ImageMaskDataModule
from medbench.errors import ConfigError, DataError

DRIVE_SPLITS = {
    "train": {"images": "training/images/*_training.tif",
              "masks": "training/1st_manual/{id}_manual1.gif",
              "fov": "training/mask/{id}_training_mask.gif"},
    "test": {"images": "test/images/*_test.tif", "masks": "test/1st_manual/{id}_manual1.gif",
             "fov": "test/mask/{id}_test_mask.gif"},
}


def drive(data_dir: Path, **options) -> ImageMaskDataModule:
    defaults = dict(root=str(data_dir / "drive" / "DRIVE"), name="drive", splits=DRIVE_SPLITS,
                    id_pattern=r"(?P<id>\d+)_", classes=["background", "vessel"],
                    mask_values={0: 0, 255: 1}, in_chans=3, val_fraction=0.2, batch_size=32,
                    eval_batch_size=1, normalize={"mean": [0.5] * 3, "std": [0.5] * 3})
    return ImageMaskDataModule(**{**defaults, **options})


@pytest.fixture(scope="module")
def drive_dm(data_dir) -> ImageMaskDataModule:
    dm = drive(data_dir)
    dm.setup()
    return dm


def test_drive_splits_images_masks_and_fov(drive_dm):
    assert [len(drive_dm.splits[s][1]) for s in ("train", "val", "test")] == [16, 4, 20]
    names = {s: {p.name.split("_")[0] for p in drive_dm.files[s]} for s in drive_dm.files}
    assert not names["train"] & names["val"]
    assert names["train"] | names["val"] == {str(n) for n in range(21, 41)}
    assert names["test"] == {f"{n:02d}" for n in range(1, 21)}
    for split in ("train", "val", "test"):
        source, targets = drive_dm.splits[split]
        for index in range(len(targets)):
            assert source[index].shape == (584, 565, 3) and source[index].dtype == np.uint8
            mask, fov = targets[index]["mask"], targets[index]["fov"]
            assert mask.dtype == np.int64 and mask.shape == (584, 565)
            assert set(np.unique(mask)) <= {0, 1} and set(np.unique(fov)) == {0, 1}
            assert 0.6 < fov.mean() < 0.8  # about 70% of the frame is inside the FOV
    info = drive_dm.info
    assert (info.family, info.num_classes, info.in_chans, info.label_type) == (
        "segmentation", 2, 3, None)
    assert info.label_names == ["background", "vessel"]
    assert drive_dm.target_kind.name == "masks"
    assert drive_dm.spatial_shape == (64, 64) and drive_dm.image_size == 64
    summary = drive_dm.summary()
    assert summary["n_train"] == 16 and summary["shape"] == [3, 64, 64]
    background, vessel = summary["pixel_counts_test"]
    assert 0.08 < vessel / (background + vessel) < 0.16  # vessels inside the FOV


def test_drive_patches_are_seeded_by_seed_epoch_and_item(drive_dm):
    dataset = drive_dm._dataset("train", augmented=True)
    assert len(dataset) == 16 * 32
    item = dataset[37]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert item["target"]["mask"].shape == (64, 64) and item["target"]["mask"].dtype == torch.long
    assert item["target"]["fov"].shape == (64, 64) and item["target"]["fov"].dtype == torch.bool
    assert item["index"] == 37 // 32
    again = dataset[37]
    assert torch.equal(item["image"], again["image"])
    assert torch.equal(item["target"]["mask"], again["target"]["mask"])
    next_epoch = dataset[37 + len(dataset)]  # same item, epoch 1
    assert next_epoch["index"] == item["index"]
    assert dataset.centre(37) != dataset.centre(37 + len(dataset))
    assert not torch.equal(item["image"], next_epoch["image"])
    assert dataset.centre(37) == drive_dm._dataset("train", augmented=True).centre(37)


def test_foreground_fraction_one_centres_every_patch_on_a_vessel(data_dir):
    dm = drive(data_dir, foreground_fraction=1.0, max_images={"train": 3, "val": 1, "test": 1})
    dataset = dm._dataset("train", augmented=True)
    assert len(dataset) == 3 * 32
    for key in [*range(len(dataset)), *range(5 * len(dataset), 5 * len(dataset) + 20)]:
        target = dataset[key]["target"]
        assert target["mask"][32, 32] == 1 and target["fov"][32, 32]
    inside = drive(data_dir, foreground_fraction=0.0, max_images={"train": 2, "val": 1,
                                                                 "test": 1})
    dataset = inside._dataset("train", augmented=True)
    centres = [dataset[key]["target"] for key in range(len(dataset))]
    assert all(t["fov"][32, 32] for t in centres)
    assert sum(int(t["mask"][32, 32]) for t in centres) < len(centres) / 2  # mostly background


def test_augmented_patches_repeat_exactly(data_dir):
    augment = {"train": [{"name": "HorizontalFlip", "p": 0.5},
                         {"name": "Affine", "rotate": [-20, 20], "p": 1.0}]}
    one, two = (drive(data_dir, augment=augment, max_images={"train": 2, "val": 1, "test": 1})
                ._dataset("train", augmented=True) for _ in range(2))
    for key in (0, 5, 63, 64 + 5):
        a, b = one[key], two[key]
        assert torch.equal(a["image"], b["image"])
        assert torch.equal(a["target"]["mask"], b["target"]["mask"])
        assert torch.equal(a["target"]["fov"], b["target"]["fov"])
    assert not torch.equal(one[5]["image"], one[64 + 5]["image"])


def test_drive_loaders(drive_dm):
    batch = next(iter(drive_dm.train_dataloader()))
    assert batch["image"].shape == (32, 3, 64, 64)
    assert batch["target"]["mask"].shape == (32, 64, 64)
    assert batch["target"]["fov"].dtype == torch.bool
    batch = next(iter(drive_dm.test_dataloader()))
    assert set(batch) == {"image", "target", "index"}
    assert batch["image"].shape == (1, 3, 584, 565)
    assert batch["target"]["mask"].shape == (1, 584, 565)
    assert batch["target"]["mask"].dtype == torch.long
    assert batch["target"]["fov"].shape == (1, 584, 565) and batch["index"].tolist() == [0]
    assert torch.equal(batch["target"]["mask"][0],
                       torch.as_tensor(drive_dm.splits["test"][1][0]["mask"]))


def test_drive_config_builds_the_datamodule():
    from medbench.train import build_datamodule

    cfg = compose_config(["data=drive", "data.max_images={train:3,val:2,test:2}"])
    assert cfg.data.family == "segmentation" and cfg.data.source == "image_masks"
    dm = build_datamodule(cfg)
    assert isinstance(dm, ImageMaskDataModule)
    dm.setup()
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [3, 2, 2]
    assert dm.info.name == "drive" and dm.info.num_classes == 2 and dm.input_shape == (3, 64, 64)
    assert (dm.batch_size, dm.eval_batch_size, dm.patches_per_image) == (32, 1, 32)
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (1, 3, 584, 565)


def _new_layout(root: Path) -> dict[str, np.ndarray]:
    """train_scans/ and test_scans/case_<n>.png (grey, sizes differ), labels/case_<n>_seg.png
    holding class indices 0..2."""
    rng = np.random.default_rng(0)
    labels = {}
    for n in range(1, 10):
        folder = root / ("train_scans" if n <= 6 else "test_scans")
        folder.mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(exist_ok=True)
        shape = (16 + n, 20 + 2 * n)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"case_{n}.png")
        labels[f"case_{n}"] = rng.integers(0, 3, shape, dtype=np.uint8)
        Image.fromarray(labels[f"case_{n}"]).save(root / "labels" / f"case_{n}_seg.png")
    return labels


def test_an_unseen_layout_from_config_alone(tmp_path):
    from medbench.train import build_datamodule

    labels = _new_layout(tmp_path)
    split = "{{images:'{}_scans/*.png',masks:'labels/case_{{id}}_seg.png',fov:null}}"
    cfg = compose_config([
        "data=image_masks", f"data.root={tmp_path}", "data.name=cases",
        f"data.splits={{train:{split.format('train')},test:{split.format('test')}}}",
        r"data.id_pattern='case_(?P<id>\d+)\.png'", "data.classes=[background,liver,tumour]",
        "data.mask_values=null", "data.in_chans=1", "data.patch_size=[8,8]",
        "data.patches_per_image=4", "data.batch_size=4",
    ])
    dm = build_datamodule(cfg)
    dm.setup()
    assert dm.info.num_classes == 3 and dm.info.label_names == ["background", "liver", "tumour"]
    assert dm.info.name == "cases" and dm.input_shape == (1, 8, 8)
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [5, 1, 3]
    for split in ("train", "val", "test"):
        source, targets = dm.splits[split]
        for path, image, target in zip(dm.files[split], source.images, targets, strict=True):
            assert image.shape == (*labels[path.stem].shape, 1)
            assert np.array_equal(target["mask"], labels[path.stem])
            assert target["fov"].all()  # no fov template: the whole image
    assert dm.summary()["pixel_counts_train"] == np.bincount(
        np.concatenate([labels[p.stem].ravel() for p in dm.files["train"]])).tolist()
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 8, 8) and int(batch["target"]["mask"].max()) <= 2
    for index, batch in enumerate(dm.test_dataloader()):  # whole images of different sizes
        assert batch["target"]["mask"].shape[1:] == labels[f"case_{index + 7}"].shape


# -- pair checks ----------------------------------------------------------------------------
def _plain(root: Path, n: int = 3, fov: bool = True) -> dict:
    """img/<n>.png, lab/<n>.png (0/255), fov/<n>.png for train and test; the options to load."""
    for split in ("train", "test"):
        for folder in ("img", "lab", "fov"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            Image.fromarray(np.full((10, 12), 100, np.uint8)).save(root / split / f"img/{k}.png")
            mask = np.zeros((10, 12), np.uint8)
            mask[2:5, 3:7] = 255
            Image.fromarray(mask).save(root / split / f"lab/{k}.png")
            Image.fromarray(np.full((10, 12), 255, np.uint8)).save(root / split / f"fov/{k}.png")
    splits = {s: {"images": f"{s}/img/*.png", "masks": f"{s}/lab/{{id}}.png",
                  "fov": f"{s}/fov/{{id}}.png" if fov else None} for s in ("train", "test")}
    return dict(root=str(root), splits=splits, classes=["background", "lesion"],
                mask_values={0: 0, 255: 1}, patch_size=[4, 4])


def _data_error(**options) -> str:
    with pytest.raises(DataError) as err:
        ImageMaskDataModule(**options).setup()
    message = str(err.value)
    assert "\n" not in message
    return message


def test_the_plain_layout_loads(tmp_path):
    dm = ImageMaskDataModule(**_plain(tmp_path))
    dm.setup()
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [2, 1, 3]
    assert dm.summary()["pixel_counts_test"] == [3 * (120 - 12), 3 * 12]


def test_no_image_matches_the_glob(tmp_path):
    options = _plain(tmp_path)
    options["splits"]["test"]["images"] = "test/scans/*.png"
    message = _data_error(**options)
    assert "test/scans/*.png" in message and str(tmp_path) in message


def test_image_name_the_id_pattern_does_not_match(tmp_path):
    options = _plain(tmp_path)
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "train/img/extra.png")
    message = _data_error(**options, id_pattern=r"(?P<id>\d+)\.png")
    assert str(tmp_path / "train/img/extra.png") in message and "id_pattern" in message


def test_image_without_its_mask_or_fov(tmp_path):
    options = _plain(tmp_path)
    (tmp_path / "train/lab/1.png").unlink()
    message = _data_error(**options)
    assert str(tmp_path / "train/img/1.png") in message
    assert str(tmp_path / "train/lab/1.png") in message and "no mask" in message
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "train/lab/1.png")
    (tmp_path / "test/fov/2.png").unlink()
    message = _data_error(**options)
    assert str(tmp_path / "test/img/2.png") in message
    assert str(tmp_path / "test/fov/2.png") in message and "field-of-view" in message


@pytest.mark.parametrize("folder", ["lab", "fov"])
def test_mask_or_fov_of_another_size(tmp_path, folder):
    options = _plain(tmp_path)
    Image.fromarray(np.zeros((9, 14), np.uint8)).save(tmp_path / f"test/{folder}/1.png")
    message = _data_error(**options)
    assert str(tmp_path / f"test/{folder}/1.png") in message
    assert str(tmp_path / "test/img/1.png") in message
    assert "14x9" in message and "12x10" in message


def test_mask_values_outside_the_mapping_or_the_classes(tmp_path):
    options = _plain(tmp_path)
    Image.fromarray(np.full((10, 12), 7, np.uint8)).save(tmp_path / "test/lab/0.png")
    message = _data_error(**options)
    assert str(tmp_path / "test/lab/0.png") in message
    assert "[7]" in message and "[0, 255]" in message
    message = _data_error(**{**options, "mask_values": None})
    assert re.search(r"mask \S+/train/lab/\d\.png has", message)  # 0/255: not classes
    assert "[0, 255]" in message and "[0, 1]" in message


@pytest.mark.parametrize("folder, what", [("img", "image"), ("lab", "mask"),
                                          ("fov", "field-of-view")])
def test_unreadable_file(tmp_path, folder, what):
    options = _plain(tmp_path)
    (tmp_path / f"train/{folder}/2.png").write_bytes(b"not a png at all")
    message = _data_error(**options)
    assert f"cannot read {what}" in message and str(tmp_path / f"train/{folder}/2.png") in message


def test_no_fov_template_means_the_whole_image(tmp_path):
    dm = ImageMaskDataModule(**_plain(tmp_path, fov=False), foreground_fraction=1.0)
    dm.setup()
    assert all(t["fov"].all() for t in dm.splits["test"][1])
    dataset = dm._dataset("train", augmented=True)
    assert all(dataset[key]["target"]["mask"][2, 2] == 1 for key in range(len(dataset)))


def test_config_errors(tmp_path):
    options = _plain(tmp_path)
    with pytest.raises(ConfigError, match="missing \\['test'\\]"):
        ImageMaskDataModule(**{**options, "splits": {"train": options["splits"]["train"]}})
    with pytest.raises(ConfigError, match="data.sampler"):
        ImageMaskDataModule(**options, sampler="weighted")
    with pytest.raises(ConfigError, match="data.mask_values"):
        ImageMaskDataModule(**{**options, "mask_values": {0: 0, 255: 2}})
    with pytest.raises(ConfigError, match="\\(\\?P<id>"):
        ImageMaskDataModule(**options, id_pattern=r"\d+")
