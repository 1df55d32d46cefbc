"""Hydra composition and the CLI surface."""

import subprocess
import sys

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from medbench.cli import main
from medbench.config import compose_config


def test_experiment_preset_from_top_level_folder_and_overrides():
    cfg = compose_config(["experiment=breastmnist_resnet18", "trainer.max_epochs=5", "seed=1"])
    assert cfg.data.flag == "breastmnist" and cfg.model.name == "resnet18_28"
    assert cfg.trainer.max_epochs == 5 and cfg.seed == 1
    assert cfg.runner.scheduler.max_epochs == 5  # milestones follow the epoch budget
    assert cfg.reference["test/auc"] == 0.901
    assert cfg.choices.experiment == "breastmnist_resnet18"


def test_wrong_key_fails_naming_it():
    with pytest.raises((HydraException, OmegaConfBaseException), match="trainer.max_epoch"):
        compose_config(["trainer.max_epoch=5"])


def test_wrong_group_option_lists_available():
    with pytest.raises(HydraException, match="resnt18") as err:
        compose_config(["model=resnt18"])
    assert "resnet18" in str(err.value)


def test_cli_group_option_error_exits_nonzero(capsys):
    assert main(["train", "model=resnt18"]) == 2
    assert "resnt18" in capsys.readouterr().err


def test_console_script_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "medbench.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("train", "tune", "reproduce", "leaderboard", "models", "datasets"):
        assert command in out


def test_models_command_lists_registry(capsys):
    assert main(["models", "resnet18_28", "densenet121"]) == 0  # named: with their cost
    out = capsys.readouterr().out
    assert "resnet18_28" in out and "densenet121" in out
    assert "11.17 M" in out and "455.8 M" in out  # resnet18_28: params, MACs at 28 px


def test_every_experiment_preset_composes():
    from medbench.config import REPO_ROOT

    presets = sorted((REPO_ROOT / "experiments").rglob("*.yaml"))
    assert len(presets) >= 12
    for path in presets:
        name = path.relative_to(REPO_ROOT / "experiments").with_suffix("").as_posix()
        cfg = compose_config([f"experiment={name}"])
        if name.startswith("survey/"):
            survey = cfg.survey
            assert survey.id == path.stem, name
            assert survey.reference and survey.section, name
            if survey.get("runnable", True):
                assert survey.data_here.startswith(("proxy", "paper's own")), name
            else:
                assert survey.not_runnable, f"{name}: runnable: false needs a not_runnable reason"
                assert survey.data_here.startswith(("proxy", "paper's own", "none")), name
