"""Leakage and undefined scores at the data boundary (issue "Bad input and faults, round two"):
one image under two file names (identical bytes) in two splits, multi-label classes on every
image of a split, and cross-validation folds lacking a class (docs/bad_inputs.md lists each)."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest
from test_bad_input_labels import _failed_training, _fixed, _one_line, _png  # shared

from medbench.data import duplicates
from medbench.data.files import CSVManifestDataModule, ImageFolderDataModule
from medbench.data.label_checks import LabelWarning
from medbench.errors import ConfigError, DataError


def _manifest(tmp_path, rows, header="path,label,split", copies=(), name="m.csv"):
    """Images 0.png.. (each its own grey level) for ``rows`` (cells after the path), then
    ``copies``: (source index, cells) rows naming ``<i>_copy.png``, a byte copy of ``<i>.png``."""
    lines = [header]
    for i, cells in enumerate(rows):
        _png(tmp_path / f"{i}.png", i)
        lines.append(",".join([f"{i}.png", *cells]))
    for k, (source, cells) in enumerate(copies):
        shutil.copyfile(tmp_path / f"{source}.png", tmp_path / f"{source}_copy{k}.png")
        lines.append(",".join([f"{source}_copy{k}.png", *cells]))
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    return tmp_path / name


def _messages(caught) -> str:
    return " | ".join(str(w.message) for w in caught if issubclass(w.category, LabelWarning))


SPLIT = {"train": "abababab", "val": "abab", "test": "abab"}  # rows 2-9, 10-13, 14-17


def test_a_copy_under_another_name_in_two_splits_is_leakage(tmp_path):
    manifest = _manifest(tmp_path, _fixed(SPLIT), copies=[(1, ("b", "test"))])
    with pytest.raises(DataError) as err:
        CSVManifestDataModule(str(manifest)).setup()
    message = _one_line(err)
    assert "1.png and " in message and "1_copy0.png are one image (identical bytes)" in message
    assert "in two splits, train (" in message and "m.csv:3) and test (" in message
    assert "m.csv:18)" in message and "leaks into the scores" in message
    assert "1 such image(s) in all; data.duplicates=warn accepts them" in message
    accepted = CSVManifestDataModule(str(manifest), duplicates="warn")
    with pytest.warns(LabelWarning, match=r"1_copy0.png are one image .* in two splits"):
        accepted.setup()
    assert len(accepted.splits["test"][1]) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error", LabelWarning)  # off: not looked for, nothing said
        CSVManifestDataModule(str(manifest), duplicates="off").setup()
    with pytest.raises(ConfigError, match="data.duplicates: expected one of error, warn, off, "
                                          "got 'ignore'"):
        CSVManifestDataModule(str(manifest), duplicates="ignore")


def test_copies_within_one_split_are_a_warning(tmp_path):
    manifest = _manifest(tmp_path, _fixed(SPLIT),
                         copies=[(0, ("a", "train")), (0, ("a", "train")), (3, ("b", "train"))])
    dm = CSVManifestDataModule(str(manifest))
    with pytest.warns(LabelWarning) as caught:
        dm.setup()
    said = _messages(caught)
    assert "m: 3 file(s) are copies of another file of their split (identical bytes; first: " \
           in said and "0.png and " in said and "0_copy0.png, train)" in said
    assert "weighs its image twice" in said
    assert len(dm.splits["train"][1]) == 11  # kept: not leakage


def test_copies_drawn_into_two_splits_are_leakage(tmp_path):
    """Without a split column the check runs on the drawn splits: ten copies of one image
    cannot all land in one split of 50 images, so a copy trains and another is scored."""
    rows = [("ab"[i % 2],) for i in range(40)]
    manifest = _manifest(tmp_path, rows, header="path,label", copies=[(0, ("a",))] * 10)
    with pytest.raises(DataError) as err:
        CSVManifestDataModule(str(manifest)).setup()
    message = _one_line(err)
    assert "are one image (identical bytes), in two splits, " in message
    assert "(drawn at random: data.split_seed)" in message


def test_image_folder_copy_or_hard_link_across_split_folders(tmp_path):
    root = tmp_path / "folder"
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        for i in range(n):
            _png(root / split / "ab"[i % 2] / f"{split}{i}.png", 10 * i + len(split))
    os.link(root / "train" / "a" / "train0.png", root / "test" / "a" / "linked.png")
    with pytest.raises(DataError) as err:
        ImageFolderDataModule(str(root)).setup()
    message = _one_line(err)
    assert "train0.png and " in message and "linked.png are one image" in message
    assert "in two splits, train and test:" in message  # the folder names the split
    (root / "test" / "a" / "linked.png").unlink()
    shutil.copyfile(root / "val" / "b" / "val1.png", root / "val" / "b" / "val1 (1).png")
    with pytest.warns(LabelWarning, match=r"folder: 1 file\(s\) are copies .*val1 \(1\).png "
                                          r"and .*val1.png, val\)"):
        ImageFolderDataModule(str(root)).setup()


def test_nifti_copy_in_two_splits(tmp_path):
    nib = pytest.importorskip("nibabel")
    lines = ["path,label,split"]
    for i, (label, split) in enumerate(_fixed(SPLIT)):
        volume = np.full((4, 4, 4), i, np.uint8)
        nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / f"{i}.nii.gz")
        lines.append(f"{i}.nii.gz,{label},{split}")
    shutil.copyfile(tmp_path / "2.nii.gz", tmp_path / "2_again.nii.gz")
    lines.append("2_again.nii.gz,a,val")
    (tmp_path / "v.csv").write_text("\n".join(lines) + "\n")
    from medbench.data.volumes import NiftiManifestDataModule

    with pytest.raises(DataError, match=r"2.nii.gz and .*2_again.nii.gz are one image .* "
                                        r"train \(.*v.csv:4\) and val \(.*v.csv:18\)"):
        NiftiManifestDataModule(str(tmp_path / "v.csv")).setup()


def test_only_files_whose_size_and_sample_collide_are_read_whole(tmp_path, monkeypatch):
    """The cost on large folders: distinct sizes are never opened; a 4 KiB sample from the
    middle tells most equal-sized files apart; only the rest are hashed whole."""
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, 3 * duplicates.SAMPLE, dtype=np.uint8).tobytes()
    files = {"a": big, "a_copy": big, "same_size": big[:-1] + b"x",  # differs at its end only
             "other_middle": bytes(len(big)), "small": b"12", "small_copy": b"12",
             "small_other": b"13", "longer": big + b"!"}
    paths = []
    for stem, data in files.items():
        (tmp_path / stem).write_bytes(data)
        paths.append(tmp_path / stem)
    read: dict[str, list[str]] = {"sample": [], "whole": []}
    sample, digest = duplicates._sample, duplicates._digest
    monkeypatch.setattr(duplicates, "_sample",
                        lambda p, n: read["sample"].append(p.name) or sample(p, n))
    monkeypatch.setattr(duplicates, "_digest", lambda p: read["whole"].append(p.name) or digest(p))
    groups = duplicates.same_content(paths)
    assert [[paths[i].name for i in g] for g in groups] == [["a", "a_copy"],
                                                           ["small", "small_copy"]]
    assert "longer" not in read["sample"]  # a size of its own: never opened
    assert sorted(read["whole"]) == ["a", "a_copy", "same_size"]  # same middle sample


def test_multilabel_class_on_every_image_of_a_split(tmp_path):
    """AUC needs positives and negatives: a class on every val or test image, or on none, is
    named with its counts per split; a class on every training image too."""
    labels = {"train": ["a|b", "a", "a|c", "a|b|c", "a|b", "a|c"], "val": ["a|b", "b|c"],
              "test": ["a|c", "a|b"]}
    manifest = _manifest(tmp_path, _fixed(labels))
    dm = CSVManifestDataModule(str(manifest), label_type="multilabel")
    with pytest.warns(LabelWarning) as caught:
        dm.setup()
    said = _messages(caught)
    assert ("m: every train image has class 'a' (images with it: train 6/6, val 1/2, test "
            "2/2): the model learns nothing of it; add train images without it") in said
    assert ("m: every test image has class 'a' (images with it: train 6/6, val 1/2, test 2/2):"
            " its AUC there is undefined; add test images without it") in said
    assert "m: the test split has no image of class 'b'" not in said
    labels["test"] = ["a|c", "a|c"]
    manifest = _manifest(tmp_path, _fixed(labels), name="n.csv")
    with pytest.warns(LabelWarning, match=r"n: the test split has no image of class 'b' "
                                          r"\(train 3, val 2, test 0\): its AUC there is "
                                          r"undefined"):
        CSVManifestDataModule(str(manifest), label_type="multilabel").setup()


def _fold_errors(manifest, folds, **options) -> dict[int, str]:
    errors = {}
    for fold in range(folds):
        try:
            CSVManifestDataModule(str(manifest), cv={"folds": folds, "fold": fold},
                                  **options).setup()
        except DataError as err:
            errors[fold] = str(err)
    return errors


def test_a_fold_whose_val_part_lacks_a_class(tmp_path):
    """Stratified folds put a class in every fold only when it has as many train+val images
    as there are folds: class 'c' has 3, so 2 of 5 folds validate without it."""
    split = {"train": "ab" * 8 + "cc", "val": "ababc", "test": "ababc"}
    manifest = _manifest(tmp_path, _fixed(split))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # scikit-learn's "least populated class"
        errors = _fold_errors(manifest, 5)
        assert _fold_errors(manifest, 3) == {}  # 3 images of 'c' reach 3 folds
    assert len(errors) == 2
    fold, message = next(iter(errors.items()))
    assert "\n" not in message
    assert (f"m (fold {fold} of cv.folds=5): the val split has no image of class 'c' (train 3, "
            "val 0): its AUC there is undefined; its 3 train+val image(s) cannot reach both "
            "parts of every fold: use fewer folds (cv.folds), or add images of it") == message


def test_grouped_folds_with_a_class_of_few_patients(tmp_path):
    """Folds grouped by patient cannot spread 3 images of 'c' over 3 folds when they are of
    2 patients (ungrouped, they reach every fold)."""
    split = {"train": "ab" * 8 + "cc", "val": "ababc", "test": "ababc"}
    rows = [(label, s, f"p{i}") for i, (label, s) in enumerate(_fixed(split))]
    rows[16], rows[17], rows[22] = ("c", "train", "pc1"), ("c", "train", "pc1"), (
        "c", "val", "pc2")
    manifest = _manifest(tmp_path, rows, header="path,label,split,patient_id")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        errors = _fold_errors(manifest, 3)
    assert errors and all("the val split has no image of class 'c' (train 3, val 0)" in m
                          and "its 3 train+val image(s) of 2 patient(s) cannot reach" in m
                          for m in errors.values()), errors


def test_a_fold_without_a_training_image_of_a_class(tmp_path):
    """Multi-label: the one training positive of 'c' (none in val, a warning) is held out by
    one fold, which then trains without 'c'."""
    labels = {"train": ["a", "b", "a|b", "a|c"] * 1 + ["a", "b"] * 4, "val": ["a", "b"] * 2,
              "test": ["a|c", "b"]}
    manifest = _manifest(tmp_path, _fixed(labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        errors = _fold_errors(manifest, 4, label_type="multilabel")
    assert len(errors) == 1, errors
    fold, message = next(iter(errors.items()))
    assert message.startswith(f"m (fold {fold} of cv.folds=4): class 'c' has no training image"
                              " (train 0, val 1): the model could never predict it; its 1 "
                              "train+val image(s) cannot reach both parts of every fold")


def test_a_copy_in_the_test_split_fails_a_real_run_in_one_line(tmp_path, results_dir, capsys,
                                                               mlflow_client):
    manifest = _manifest(tmp_path, _fixed({"train": "ab" * 6, "val": "ab" * 2,
                                           "test": "ab" * 2}), copies=[(0, ("a", "test"))])
    line = _failed_training(manifest, results_dir, capsys, mlflow_client)
    assert "0.png and " in line and "0_copy0.png are one image" in line
    assert "train (" in line and "m.csv:22)" in line
