"""Bad class labels at the data boundary (issue 23): CSV manifests, image folders and npz labels
either fail in one line naming the file and line, or are corrected with a LabelWarning that
names the correction (docs/bad_inputs.md lists each case)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medbench.cli import main
from medbench.data.files import CSVManifestDataModule, ImageFolderDataModule
from medbench.data.label_checks import LabelWarning
from medbench.data.medmnist import MedMNISTDataModule
from medbench.errors import ConfigError, DataError


def _png(path, value, size=8, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size), value).save(path)


def _manifest(tmp_path, rows, header="path,label", name="m.csv"):
    """Writes ``rows`` (tuples of cells after the path) for images 0.png.. and the manifest."""
    lines = [header]
    for i, cells in enumerate(rows):
        _png(tmp_path / f"{i}.png", i % 250)
        lines.append(",".join([f"{i}.png", *cells]))
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    return tmp_path / name


def _fixed(labels_by_split):
    return [(label, split) for split, labels in labels_by_split.items() for label in labels]


def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_numbers_spelled_two_ways_are_one_class_with_a_warning(tmp_path):
    labels = ["1", "1.0", "0", "00"] * 10
    with pytest.warns(LabelWarning, match=r"labels '1' \(.*m.csv:2\) and '1.0' \(.*m.csv:3\) "
                                          r"spell one number: both read as class 1"):
        dm = CSVManifestDataModule(str(_manifest(tmp_path, [(x,) for x in labels])))
    assert dm.info.label_names == ["0", "1"] and dm.info.label_type == "binary"
    ordered = CSVManifestDataModule(str(_manifest(tmp_path, [(x,) for x in ["-1", "2", "10"] * 9])))
    assert ordered.info.label_names == ["-1", "2", "10"]  # integers numerically, signed too
    codes = CSVManifestDataModule(str(_manifest(tmp_path, [(x,) for x in ["007", "3"] * 9])))
    assert codes.info.label_names == ["3", "007"]  # one spelling each: kept as written


def test_spaces_around_labels_are_stripped_with_a_warning(tmp_path):
    with pytest.warns(LabelWarning, match=r"1 label\(s\) had spaces around them, stripped "
                                          r"\(first: ' tumour' at .*m.csv:2\)"):
        dm = CSVManifestDataModule(str(_manifest(
            tmp_path, [(" tumour",)] + [("tumour",), ("normal",)] * 12)))
    assert dm.info.label_names == ["normal", "tumour"]


def test_labels_differing_only_in_case_are_refused(tmp_path):
    manifest = _manifest(tmp_path, [("Tumour",), ("tumour",), ("normal",)] * 10)
    with pytest.raises(DataError) as err:
        CSVManifestDataModule(str(manifest))
    assert "labels 'Tumour' (" in _one_line(err) and "differ only in case" in str(err.value)
    both = CSVManifestDataModule(str(manifest), classes=["normal", "Tumour", "tumour"])
    assert both.info.num_classes == 3  # declared: two classes on purpose


@pytest.mark.parametrize("cell, said", [("", "no label"), ("NaN", "label 'NaN' is a missing"),
                                        (" n/a ", "label 'n/a' is a missing")])
def test_empty_or_nan_label_is_refused(tmp_path, cell, said):
    manifest = _manifest(tmp_path, [("a",), ("b",), (cell,)] * 10)
    with pytest.raises(DataError) as err:
        CSVManifestDataModule(str(manifest))
    assert f"m.csv:4: {said}" in _one_line(err) and "2.png" in str(err.value)


def test_fractional_label_is_refused(tmp_path):
    manifest = _manifest(tmp_path, [("0",), ("1",), ("0.5",)] * 10)
    with pytest.raises(DataError, match=r"m.csv:4: label '0.5' of .*2.png is fractional"):
        CSVManifestDataModule(str(manifest))


def test_several_classes_in_a_single_label_column(tmp_path):
    manifest = _manifest(tmp_path, [("a",), ("a|b",), ("b",)] * 10)
    with pytest.raises(ConfigError, match=r"m.csv:3: label 'a\|b' names several classes .* "
                                          r"set data.label_type=multilabel"):
        CSVManifestDataModule(str(manifest))


def test_label_type_against_the_labels(tmp_path):
    three = _manifest(tmp_path, [("a",), ("b",), ("c",)] * 10)
    with pytest.raises(ConfigError, match=r"data.label_type=binary but m has 3 classes"):
        CSVManifestDataModule(str(three), label_type="binary")
    with pytest.raises(ConfigError, match=r"data.label_type=ordinal: m's labels \['a', 'b', "
                                          r"'c'\] are names"):
        CSVManifestDataModule(str(three), label_type="ordinal")
    assert CSVManifestDataModule(str(three), label_type="ordinal",
                                 classes=["c", "a", "b"]).info.label_names == ["c", "a", "b"]
    one = _manifest(tmp_path, [("a",)] * 10, name="one.csv")
    with pytest.raises(DataError, match="one: every label is 'a': a classifier needs at least 2"):
        CSVManifestDataModule(str(one))


def test_one_empty_split_cell_is_an_error_not_a_random_split(tmp_path):
    rows = _fixed({"train": "abab", "val": "ab", "test": "ab"})
    rows[4] = (rows[4][0], "")
    manifest = _manifest(tmp_path, rows, header="path,label,split")
    with pytest.raises(DataError) as err:
        CSVManifestDataModule(str(manifest)).setup()
    assert "m.csv:6: empty split cell for" in _one_line(err)


def test_split_cells_are_read_without_case_and_unknown_ones_named(tmp_path):
    rows = _fixed({"train": "abab", "val": "ab", "test": "ab"})
    rows[0] = (rows[0][0], " Train")
    manifest = _manifest(tmp_path, rows, header="path,label,split")
    dm = CSVManifestDataModule(str(manifest))
    with pytest.warns(LabelWarning, match=r"1 split cell\(s\) read in lower case"):
        dm.setup()
    assert len(dm.splits["train"][1]) == 4
    rows[0] = (rows[0][0], "validation")
    manifest = _manifest(tmp_path, rows, header="path,label,split")
    with pytest.raises(DataError, match="m.csv:2: split 'validation' is not one of train"):
        CSVManifestDataModule(str(manifest)).setup()


def test_one_empty_patient_id_is_an_error(tmp_path):
    rows = [("ab"[i % 2], f"p{i // 2}") for i in range(30)]
    rows[7] = (rows[7][0], " ")
    manifest = _manifest(tmp_path, rows, header="path,label,patient_id")
    with pytest.raises(DataError, match=r"m.csv:9: empty patient_id for .*7.png"):
        CSVManifestDataModule(str(manifest)).setup()


def test_same_file_in_two_splits_is_leakage(tmp_path):
    manifest = _manifest(tmp_path, _fixed({"train": "abab", "val": "ab", "test": "ab"}),
                         header="path,label,split")
    with manifest.open("a") as handle:
        handle.write("./1.png,b,test\n")  # another spelling of train's 1.png
    with pytest.raises(DataError) as err:
        CSVManifestDataModule(str(manifest)).setup()
    message = _one_line(err)
    assert "1.png is in two splits, train (" in message and "m.csv:3) and test (" in message
    assert "m.csv:10)" in message and "leaks" in message


def test_file_listed_twice_in_one_split(tmp_path):
    manifest = _manifest(tmp_path, [("ab"[i % 2],) for i in range(30)])
    with manifest.open("a") as handle:
        handle.write("4.png,b\n")
    with pytest.raises(DataError, match=r"4.png is listed twice \(.*m.csv:6 and .*m.csv:32\) "
                                        r"with labels 'a' and 'b': list each file once"):
        CSVManifestDataModule(str(manifest)).setup()


def test_patient_in_two_fixed_splits(tmp_path):
    rows = [(label, split, f"p{i}") for i, (label, split) in
            enumerate(_fixed({"train": "abab", "val": "ab", "test": "ab"}))]
    rows[-1] = (rows[-1][0], rows[-1][1], "p0")
    manifest = _manifest(tmp_path, rows, header="path,label,split,patient_id")
    with pytest.raises(DataError, match=r"patient 'p0' is in two splits, train \(.*m.csv:2\) "
                                        r"and test \(.*m.csv:9\)"):
        CSVManifestDataModule(str(manifest)).setup()


def test_a_split_with_a_single_class(tmp_path):
    manifest = _manifest(tmp_path, _fixed({"train": "abab", "val": "ab", "test": "aa"}),
                         header="path,label,split")
    with pytest.raises(DataError) as err:
        CSVManifestDataModule(str(manifest)).setup()
    assert ("m: the test split has no image of class 'b' (train 2, val 1, test 0): its AUC "
            "there is undefined; move some of its images to test") in _one_line(err)


def test_a_class_too_small_to_reach_the_training_split(tmp_path):
    fixed = _manifest(tmp_path, _fixed({"train": "abab", "val": "abc", "test": "abc"}),
                      header="path,label,split")
    with pytest.raises(DataError, match=r"m: class 'c' has no training image \(train 0, val 1, "
                                        r"test 1\): the model could never predict it"):
        CSVManifestDataModule(str(fixed)).setup()
    drawn = _manifest(tmp_path, [("ab"[i % 2],) for i in range(40)] + [("rare",)],
                      name="drawn.csv")
    with pytest.raises(DataError, match=r"class 'rare' .* too few images to reach every split"):
        CSVManifestDataModule(str(drawn)).setup()


@pytest.mark.parametrize("val, test, said", [
    (0.5, 0.6, r"data.val_fraction \+ data.test_fraction = 1.1: expected below 1"),
    (0.0, 0.2, r"data.val_fraction: expected a fraction between 0 and 1 .*got 0.0"),
    (0.1, -0.2, r"data.test_fraction: expected a fraction between 0 and 1 .*got -0.2")])
def test_split_fractions_out_of_range(tmp_path, val, test, said):
    manifest = _manifest(tmp_path, [("ab"[i % 2],) for i in range(30)])
    with pytest.raises(ConfigError, match=said):
        CSVManifestDataModule(str(manifest), val_fraction=val, test_fraction=test).setup()


def test_split_fractions_too_small_or_above_one_half(tmp_path):
    manifest = _manifest(tmp_path, [("ab"[i % 2],) for i in range(40)])
    with pytest.raises(DataError, match=r"data.test_fraction=0.01: cannot hold out that share "
                                        r"of 40 images"):
        CSVManifestDataModule(str(manifest), test_fraction=0.01).setup()
    dm = CSVManifestDataModule(str(manifest), val_fraction=0.1, test_fraction=0.7)
    dm.setup()  # 0.7 holds out about 0.7 (it used to be 0.5)
    assert 26 <= len(dm.splits["test"][1]) <= 30


def test_sixteen_bit_png_keeps_its_range(tmp_path):
    rows = []
    for i in range(30):
        pixels = (np.arange(64).reshape(8, 8) * 900 + i * 10).astype(np.uint16)
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")  # mode I;16
        rows.append(f"{i}.png,{'ab'[i % 2]}")
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows))
    dm = CSVManifestDataModule(str(tmp_path / "m.csv"))
    dm.setup()
    raw = dm.splits["train"][0][0]
    assert raw.dtype == np.uint16 and raw.max() > 50000 and dm.max_pixel_value() == 65535.0
    image = dm.eval_dataloader("train").dataset[0]["image"]
    assert len(np.unique(image.numpy())) == 64  # not saturated to {0, 255}
    assert -1.0 <= image.min() and image.max() <= 1.0 and image.max() > 0.5
    _png(tmp_path / "30.png", 255)  # one 8-bit image among 16-bit ones: scaled to 16 bits
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n30.png,a")
    mixed = CSVManifestDataModule(str(tmp_path / "m.csv"))
    with pytest.warns(LabelWarning, match="images of 8 and 16 bits .* scaled by 257"):
        mixed.setup()
    pools = [mixed.splits[s][0] for s in ("train", "val", "test")]
    assert {pool[i].dtype for pool in pools for i in range(len(pool))} == {np.dtype(np.uint16)}


def test_floating_point_image_is_refused(tmp_path):
    for i in range(20):
        Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / f"{i}.tif")
    rows = [f"{i}.tif,{'ab'[i % 2]}" for i in range(20)]
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows))
    dm = CSVManifestDataModule(str(tmp_path / "m.csv"), val_fraction=0.2)
    with pytest.raises(DataError, match=r"holds floating-point pixels \(mode F\)"):
        dm.setup()


def test_latin1_manifest_is_one_line(tmp_path):
    manifest = _manifest(tmp_path, [("ab"[i % 2],) for i in range(10)])
    manifest.write_bytes(manifest.read_bytes() + "3.png,tumeur bénigne\n".encode("latin-1"))
    with pytest.raises(DataError) as err:
        CSVManifestDataModule(str(manifest))
    assert "m.csv:12: not UTF-8 text (byte 0xe9" in _one_line(err)
    assert "save the manifest as UTF-8" in str(err.value)


def test_bom_and_header_spelling(tmp_path):
    manifest = _manifest(tmp_path, [("ab"[i % 2],) for i in range(30)], header="Path, Label")
    manifest.write_bytes(b"\xef\xbb\xbf" + manifest.read_bytes())  # as Excel saves UTF-8
    with pytest.warns(LabelWarning, match=r"header name\(s\) \['Path', ' Label'\] read as"):
        assert CSVManifestDataModule(str(manifest)).info.label_names == ["a", "b"]


@pytest.mark.parametrize("extra, said", [
    ("5.png\n", r"m.csv:12: 1 cell\(s\) but the header has 2 \(path,label\)"),
    ("img,5.png,a\n", r"m.csv:12: 3 cell\(s\) .* \(a comma inside an unquoted cell\?\)")])
def test_short_or_long_row_is_one_line(tmp_path, extra, said):
    manifest = _manifest(tmp_path, [("ab"[i % 2],) for i in range(10)])
    with manifest.open("a") as handle:
        handle.write(extra)
    with pytest.raises(DataError, match=said):
        CSVManifestDataModule(str(manifest))


def test_header_problems_are_named(tmp_path):
    semicolons = _manifest(tmp_path, [("a",)], header="path;label")
    with pytest.raises(DataError, match=r"missing column\(s\) \['label', 'path'\]; expected "
                                        r"path,label.*looks ';'-separated"):
        CSVManifestDataModule(str(semicolons))
    twice = _manifest(tmp_path, [("a", "b")], header="path,label,label")
    with pytest.raises(DataError, match=r"column\(s\) \['label'\] appear more than once"):
        CSVManifestDataModule(str(twice))


def test_rows_of_empty_cells_are_skipped_with_a_warning(tmp_path):
    manifest = _manifest(tmp_path, [("ab"[i % 2],) for i in range(30)])
    with manifest.open("a") as handle:
        handle.write(",\n,\n")
    with pytest.warns(LabelWarning, match=r"2 row\(s\) of empty cells skipped"):
        assert len(CSVManifestDataModule(str(manifest)).records) == 30


def _npz(path, labels):
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = np.zeros((len(labels), 28, 28), np.uint8)
        arrays[f"{split}_labels"] = np.asarray(labels)
    np.savez(path, **arrays)


@pytest.mark.parametrize("labels, said", [
    (np.array([[0.0], [np.nan], [1.0]]), r"train labels include \[nan\] at item 1 \(1 item"),
    (np.array([[0, 1], [1, 0], [0, 1]]), r"train labels have shape \(3, 2\): expected one "
                                         r"class index per item"),
    (np.array([[0.0], [0.7], [1.0]]), r"train labels include the fraction 0.7 at item 1"),
    (np.array([["a"], ["b"], ["a"]]), r"train labels are <U1 values: expected class indices")])
def test_npz_labels_nan_two_columns_fractions_strings(tmp_path, labels, said):
    _npz(tmp_path / "breastmnist.npz", labels)
    with pytest.raises(DataError) as err:
        MedMNISTDataModule("breastmnist", root=str(tmp_path), download=False).setup()
    assert "breastmnist.npz train labels" in _one_line(err)
    assert err.match(said)


def test_image_folder_layout_problems(tmp_path):
    for split in ("train", "test"):
        _png(tmp_path / "half" / split / "a" / "x.png", 1)
    with pytest.raises(DataError, match=r"split folder\(s\) \['train', 'test'\] without "
                                        r"\['val'\]"):
        ImageFolderDataModule(str(tmp_path / "half"))
    for i in range(20):
        _png(tmp_path / "flat" / ("1" if i % 2 else "01") / f"{i}.png", i)
        _png(tmp_path / "flat" / "2" / f"{i}.png", i)
    _png(tmp_path / "flat" / ".ipynb_checkpoints" / "x.png", 1)
    _png(tmp_path / "flat" / "loose.png", 1)
    with pytest.warns(LabelWarning) as caught:
        dm = ImageFolderDataModule(str(tmp_path / "flat"))
    messages = " ".join(str(w.message) for w in caught)
    assert "skipped hidden folder(s)" in messages and "1 image(s) outside class folders" in messages
    assert "spell one number: both read as class 1" in messages
    assert dm.info.label_names == ["1", "2"]


def _failed_training(manifest, results_dir, capsys, mlflow_client) -> str:
    """A real `medbench train` on ``manifest``: exit 1, one error line (returned), run FAILED."""
    code = main(["train", "data=csv_manifest", f"data.manifest={manifest}", "model=lenet5",
                 f"paths.results_dir={results_dir}", "trainer.enable_progress_bar=false",
                 "trainer.max_epochs=1", "data.resize=32"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in err, err
    runs = mlflow_client.search_runs([e.experiment_id for e in mlflow_client.search_experiments()])
    assert [r.info.status for r in runs] == ["FAILED"]
    return errors[0]


def test_leakage_fails_a_real_run_in_one_line(tmp_path, results_dir, capsys, mlflow_client):
    rows = _fixed({"train": "ab" * 6, "val": "ab" * 2, "test": "ab" * 2})
    manifest = _manifest(tmp_path, rows, header="path,label,split")
    with manifest.open("a") as handle:
        handle.write("0.png,a,test\n")
    line = _failed_training(manifest, results_dir, capsys, mlflow_client)
    assert "0.png is in two splits, train (" in line and "m.csv:22)" in line


def test_more_folds_than_images_is_one_line(tmp_path):
    manifest = _manifest(tmp_path, [("ab"[i % 2],) for i in range(30)])
    dm = CSVManifestDataModule(str(manifest), cv={"folds": 40, "fold": 0})
    with pytest.raises(DataError, match=r"cv.folds=40: cannot make that many folds of 24 images"):
        dm.setup()
