"""`medbench models` and `medbench datasets`: what they list, read from cached snapshots, and
the presence of each dataset under a data root (speed: benchmark/listings.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medbench.cli import main
from medbench.config import REPO_ROOT, config_dir
from medbench.listings import datasets, snapshot
from medbench.listings import models as model_listing

PLUGIN_DIR = Path(__file__).parent / "plugins"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder of the test's own (snapshots built afresh)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("MEDBENCH_CACHE_DIR", str(folder))
    return folder


def test_models_lists_every_registered_model_without_building_one(cache, capsys, monkeypatch):
    from medbench.models import MODELS

    monkeypatch.setattr(model_listing, "_measure", lambda *a: pytest.fail("built a network"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in MODELS.names():
        assert f"│ {name} " in out, name
    assert "params" not in out.splitlines()[2] and "--cost" in out  # the header; the hint
    rows = {row["name"]: row for row in snapshot.model_rows()}
    assert list(rows) == MODELS.names()
    assert rows["resnet18_3d"]["spatial_dims"] == "3" and rows["cnn_lstm"]["spatial_dims"] == "1"
    assert rows["ensemble"]["spatial_dims"] == "any" and rows["ensemble"]["composite"]
    assert rows["faster_rcnn"]["family"] == "detection"
    assert rows["inception_v3"]["min_input_size"] == MODELS.get("inception_v3").meta[
        "min_input_size"]
    assert list(cache.glob("listings/models-*.json"))


def test_cost_gives_the_params_of_a_known_model_and_caches_them(cache, capsys, monkeypatch):
    from medbench.models import create_model
    from medbench.models.profile import count_parameters

    params = count_parameters(create_model("lenet5", 1, 2))
    assert main(["models", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert f"{params / 1e6:.2f} M" in out and "MACs" in out
    assert "resnet18 " not in out  # only the model asked for
    [stored] = cache.glob("listings/cost-*.json")
    monkeypatch.setattr(model_listing, "_measure", lambda *a: pytest.fail("measured again"))
    rows = model_listing.select(snapshot.model_rows(), ["lenet5", "ensemble"])
    found = model_listing.costs(rows, 1, 2, 28)
    assert found["lenet5"][0] == params and found["lenet5"][2] == 28
    assert found["ensemble"] is None  # a composite: its members' cost
    assert stored.is_file()


def test_size_options_imply_cost_and_unknown_names_are_one_line_errors(cache, capsys):
    options = model_listing.parse(["--size", "64"])
    assert options.cost and options.size == 64 and options.in_chans == 1
    assert not model_listing.parse([]).cost
    assert main(["models", "lenet"]) == 1
    assert "did you mean 'lenet5'" in capsys.readouterr().err


def _root_with_breastmnist_only(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "medmnist").mkdir(parents=True)
    (root / "medmnist" / "breastmnist.npz").write_bytes(b"")
    (root / "medmnist" / "breastmnist_64.npz").write_bytes(b"")
    (root / "drive" / "DRIVE" / "training" / "images").mkdir(parents=True)
    (root / "drive" / "DRIVE" / "training" / "images" / "21_training.tif").write_bytes(b"")
    return root


def test_presence_is_right_for_a_root_with_one_dataset_present(tmp_path):
    root = _root_with_breastmnist_only(tmp_path)
    rows, templates = datasets.dataset_rows(root, [config_dir() / "data"])
    by_name = {row.name: row for row in rows}
    assert by_name["breastmnist"].present == "yes"
    assert by_name["breastmnist"].detail == "sizes here: 28, 64 px"
    assert by_name["pneumoniamnist"].present == "no"
    assert by_name["pneumoniamnist"].looked_for == "medmnist/pneumoniamnist.npz"
    assert by_name["drive"].present == "partial"  # training images, no test images
    for name in ("bccd", "bccd_wbc", "mitbih", "adrenalmnist3d"):
        assert by_name[name].present == "no", name
    archive = root / datasets.MITBIH_ARCHIVE
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"")
    rows, _ = datasets.dataset_rows(root, [config_dir() / "data"])
    assert {r.name: r.present for r in rows}["mitbih_binary_proxy"] == "yes"
    every = {p.stem for p in (config_dir() / "data").glob("*.yaml")}
    assert {r.name for r in rows} | set(templates) == every
    assert {"image_folder", "csv_manifest", "medmnist"} <= set(templates)


def test_datasets_says_what_is_there_and_how_to_get_the_rest(tmp_path, cache, capsys):
    root = _root_with_breastmnist_only(tmp_path)
    assert main(["datasets", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    [breast] = [line for line in out.splitlines() if line.startswith("│ breastmnist ")]
    [pneumonia] = [line for line in out.splitlines() if line.startswith("│ pneumoniamnist ")]
    assert "│ yes " in breast and "│ no " in pneumonia
    assert f"datasets under {root}" in out
    assert "download=True" in out and f"root='{root}/medmnist'" in out  # MedMNIST
    assert "drive.grand-challenge.org" in out  # DRIVE
    assert "github.com/Shenggan/BCCD_Dataset" in out  # BCCD
    assert "physionet.org/content/mitdb" in out  # MIT-BIH
    from medbench.data import DATAMODULES
    from medbench.family import family_names

    assert f"task families: {', '.join(family_names())}" in out
    assert f"data sources: {', '.join(DATAMODULES.names())}" in out


def test_datasets_lists_a_plugins_family_source_and_data_config(cache, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.setenv("MEDBENCH_PLUGINS", "medbench_counting")
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "│ synthetic_counts " in out
    index = snapshot.data_index()
    assert "synthetic_counts" in index["sources"] and index["families"][-1] not in (
        "classification", "segmentation", "detection", "localization")


def test_a_cached_listing_imports_no_torch(cache, capsys):
    assert main(["models"]) == 0 and main(["datasets"]) == 0  # fills the snapshots
    capsys.readouterr()
    code = ("import sys\nfrom medbench.cli import main\nmain(['models']); main(['datasets'])\n"
            "print('loaded:', [m for m in ('torch', 'lightning', 'medbench.models',"
            " 'medbench.data') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=REPO_ROOT, env={**os.environ})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "loaded: []" in out.stdout


def test_the_snapshot_key_follows_sources_and_plugins(monkeypatch):
    key = snapshot.source_key(snapshot.MODEL_SOURCES)
    assert key == snapshot.source_key(snapshot.MODEL_SOURCES)
    assert key != snapshot.source_key(snapshot.MODEL_SOURCES, ["timm==0"])
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    monkeypatch.setenv("MEDBENCH_PLUGINS", "medbench_counting")
    assert snapshot.source_key(snapshot.MODEL_SOURCES) not in (None, key)
    monkeypatch.setenv("MEDBENCH_PLUGINS", "no_such_plugin_module")
    assert snapshot.source_key(snapshot.MODEL_SOURCES) is None  # not cached: built live


def test_the_rules_repeated_to_stay_torch_free_match_the_loaders(cache):
    from medbench.data.cache import cache_dir
    from medbench.data.ecg import ARCHIVE
    from medbench.data.medmnist import npz_name

    assert snapshot.cache_root() == cache_dir()
    assert datasets.MITBIH_ARCHIVE == ARCHIVE
    assert all(datasets.npz_name("pathmnist", s) == npz_name("pathmnist", s)
               for s in (28, 64, 128, 224))
