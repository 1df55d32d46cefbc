"""Box data: Pascal VOC (real BCCD files, its two zero-area boxes) and COCO JSON into one box
format, defective boxes dropped with a warning or rejected, boxes following augmentation."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medbench.data.box_checks import BoxWarning
from medbench.data.boxes import BoxDataModule
from medbench.errors import ConfigError, DataError

CLASSES = ["RBC", "WBC", "Platelets"]
NORMALIZE = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


@pytest.fixture
def bccd(data_dir: Path) -> Path:
    return data_dir / "bccd" / "BCCD"


def _ids(tmp_path: Path, ids: list[str]) -> dict[str, str]:
    """Split files (absolute paths, outside the read-only mirror) listing ``ids``."""
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(ids) + "\n")
    return {split: str(path) for split in ("train", "val", "test")}


def _bccd(root: Path, splits: dict[str, str], **options) -> BoxDataModule:
    return BoxDataModule(root=str(root), splits=splits, classes=CLASSES,
                         normalize=NORMALIZE, **options)


def _objects(xml: Path) -> int:
    return xml.read_text().count("<object>")


def test_bccd_zero_area_boxes_are_warned_and_dropped(bccd, tmp_path):
    ids = ["BloodImage_00338", "BloodImage_00343", "BloodImage_00001"]
    data = _bccd(bccd, _ids(tmp_path, ids))
    with pytest.warns(BoxWarning) as caught:
        data.setup()
    messages = sorted({str(w.message) for w in caught if issubclass(w.category, BoxWarning)})
    assert messages == [
        "BloodImage_00338.xml: box 12 (RBC) [504, 337, 504, 337] has zero area: dropped",
        "BloodImage_00343.xml: box 3 (RBC) [181, 329, 181, 329] has zero area: dropped"]
    targets = data.splits["train"][1]
    raw = [_objects(bccd / "Annotations" / f"{i}.xml") for i in ids]
    assert [len(t["boxes"]) for t in targets] == [raw[0] - 1, raw[1] - 1, raw[2]]
    boxes = np.concatenate([t["boxes"] for t in targets])
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()
    assert boxes.dtype == np.float32 and targets[0]["labels"].dtype == np.int64
    # the WBC of 00338 is kept as annotated, reaching the bottom edge (ymax = height = 480)
    assert [244, 327, 509, 480] in targets[0]["boxes"].tolist()


def test_strict_mode_rejects_a_zero_area_box_in_one_line(bccd, tmp_path):
    data = _bccd(bccd, _ids(tmp_path, ["BloodImage_00343"]), strict=True)
    with pytest.raises(DataError, match=r"^BloodImage_00343.xml: box 3 \(RBC\) \[181, 329, 181, "
                                        r"329\] has zero area \(data.strict=true rejects it"):
        data.setup()


def test_bccd_config_reads_the_shipped_split(make_cfg, data_dir):
    from medbench.train import build_datamodule

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BoxWarning)
        data = build_datamodule(make_cfg("data=bccd"))
        summary = data.summary()
    # PROVENANCE.md's table, less the two zero-area RBC boxes (one in train, one in val)
    assert (summary["n_train"], summary["n_val"], summary["n_test"]) == (205, 87, 72)
    assert summary["class_counts_train"] == [2381, 214, 209]
    assert summary["class_counts_val"] == [967, 87, 83]
    assert summary["class_counts_test"] == [805, 71, 69]
    assert data.info.family == "detection" and data.info.label_names == CLASSES
    assert summary["shape"] == [3, 480, 640]


def _tiny_image(folder: Path, name: str, size=(40, 30)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _voc(folder: Path, name: str, objects: list[tuple[str, list[int]]], size=(40, 30)) -> None:
    body = "".join(f"<object><name>{c}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                   for c, b in objects)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.xml").write_text(
        f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height>"
        f"<depth>3</depth></size>{body}</annotation>")


def test_out_of_image_box_is_dropped_and_unknown_class_is_an_error(tmp_path):
    _tiny_image(tmp_path / "JPEGImages", "a.jpg")
    _voc(tmp_path / "Annotations", "a", [("RBC", [1, 2, 10, 12]), ("WBC", [30, 20, 45, 29])])
    data = _bccd(tmp_path, _ids(tmp_path, ["a"]))
    with pytest.warns(BoxWarning, match=r"a.xml: box 1 \(WBC\) \[30, 20, 45, 29\] reaches "
                                        r"outside the 40x30 image: dropped"):
        data.setup()
    assert data.splits["test"][1][0]["boxes"].tolist() == [[1, 2, 10, 12]]
    _voc(tmp_path / "Annotations", "a", [("Neutrophil", [1, 2, 10, 12])])
    with pytest.raises(DataError, match=r"a.xml object 0: object class 'Neutrophil' is not in "
                                        r"data.classes \['RBC', 'WBC', 'Platelets'\]"):
        _bccd(tmp_path, _ids(tmp_path, ["a"])).setup()
    dropped = _bccd(tmp_path, _ids(tmp_path, ["a"]), unknown_classes="drop")
    dropped.setup()
    assert len(dropped.splits["train"][1][0]["boxes"]) == 0  # kept, without boxes


def test_coco_json_reads_into_the_same_boxes(tmp_path):
    _tiny_image(tmp_path / "images", "one.png")
    _tiny_image(tmp_path / "images", "two.png")
    coco = {"images": [{"id": 7, "file_name": "one.png", "width": 40, "height": 30},
                       {"id": 9, "file_name": "two.png", "width": 40, "height": 30}],
            "categories": [{"id": 1, "name": "WBC"}, {"id": 3, "name": "RBC"}],
            "annotations": [
                {"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 2, 9, 10]},
                {"id": 2, "image_id": 7, "category_id": 1, "bbox": [5, 5, 0, 4]},  # zero width
                {"id": 3, "image_id": 9, "category_id": 1, "bbox": [0, 0, 40, 30]},
                {"id": 4, "image_id": 9, "category_id": 1, "bbox": [1, 1, 3, 3],
                 "iscrowd": 1}]}
    (tmp_path / "train.json").write_text(json.dumps(coco))
    data = BoxDataModule(root=str(tmp_path), format="coco", images="images/{file_name}",
                         splits={s: "train.json" for s in ("train", "val", "test")},
                         classes=CLASSES, normalize=NORMALIZE)
    with pytest.warns(BoxWarning, match=r"train.json image 7 \(one.png\): box 1 \(WBC\) "
                                        r"\[5, 5, 5, 9\] has zero area: dropped"):
        data.setup()
    first, second = data.splits["val"][1]
    assert first["boxes"].tolist() == [[1, 2, 10, 12]] and first["labels"].tolist() == [0]
    assert second["boxes"].tolist() == [[0, 0, 40, 30]] and second["labels"].tolist() == [1]
    assert data.records["val"][1].image == tmp_path / "images" / "two.png"


def test_bad_box_settings_fail_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="data.format: expected one of voc, coco, got 'yolo'"):
        BoxDataModule(root=str(tmp_path), format="yolo", splits={}, classes=CLASSES)
    with pytest.raises(ConfigError, match=r"data.splits: expected a file for each of train, "
                                          r"val and test; missing \['val'\]"):
        BoxDataModule(root=str(tmp_path), splits={"train": "a", "test": "b"}, classes=CLASSES)
    data = BoxDataModule(root=str(tmp_path), splits={s: "none.txt" for s in ("train", "val",
                                                                             "test")},
                         classes=CLASSES)
    with pytest.raises(DataError, match="data.splits.train: file not found"):
        data.setup()


@pytest.mark.parametrize("flip", ["HorizontalFlip", "VerticalFlip"])
def test_boxes_follow_a_flip_of_a_real_image(bccd, tmp_path, flip):
    """The pixels inside each flipped box are the flipped pixels of the original box."""
    plain = _bccd(bccd, _ids(tmp_path, ["BloodImage_00001"]))
    flipped = _bccd(bccd, _ids(tmp_path, ["BloodImage_00001"]),
                    augment={"train": [{"name": flip, "p": 1.0}]})
    before, after = plain._dataset("train", False)[0], flipped._dataset("train", True)[0]
    height, width = before["image"].shape[1:]
    axis = 2 if flip == "HorizontalFlip" else 1
    assert torch.equal(after["image"], before["image"].flip(axis))
    assert torch.equal(after["target"]["labels"], before["target"]["labels"])
    for box, moved in zip(before["target"]["boxes"], after["target"]["boxes"], strict=True):
        x0, y0, x1, y1 = box.tolist()
        expected = ([width - x1, y0, width - x0, y1] if axis == 2
                    else [x0, height - y1, x1, height - y0])
        assert moved.tolist() == pytest.approx(expected, abs=1e-3)
        a = before["image"][:, int(y0):int(y1), int(x0):int(x1)].flip(axis)
        u0, v0, u1, v1 = (int(round(v)) for v in moved.tolist())
        assert torch.equal(after["image"][:, v0:v1, u0:u1], a)
