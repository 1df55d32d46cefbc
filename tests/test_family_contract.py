"""The family contract as shared code sees it: declared directions, one-line refusals, and the
old spellings (runner, label type, family were all "task") still working."""

from __future__ import annotations

import pytest

from medbench.cli import main
from medbench.config import compose_config
from medbench.errors import ConfigError
from medbench.family import FAMILIES, get_family
from medbench.legacy import rewrite_override
from medbench.repeats import config_hash


@pytest.mark.parametrize("label_type", ["binary", "multiclass", "multilabel", "ordinal"])
def test_declared_directions_agree_with_torchmetrics(label_type):
    from medbench.data.base import DatasetInfo

    family = get_family("classification")
    info = DatasetInfo("x", "classification", 3, 1, label_type)
    declared = 0
    for name, metric in family.metric_collection(info).items():
        if metric.higher_is_better is not None:  # torchmetrics leaves specificity undeclared
            assert family.metric(name).higher_is_better == metric.higher_is_better, name
            declared += 1
    assert declared >= 5
    assert family.metric("val/loss").mode == "min" and family.monitor_mode("val/auc") == "max"


def test_every_family_declares_a_usable_leaderboard_schema():
    for entry in FAMILIES:
        family = get_family(entry.name)
        assert family.default_monitor.startswith("val/")
        family.monitor_mode(family.default_monitor)
        for column in family.leaderboard.columns:
            family.metric(column)  # every column is a declared metric key


def test_unknown_family_and_plugin_are_refused_in_one_line(results_dir, capsys, monkeypatch,
                                                           store_untouched):
    code = main(["train", f"paths.results_dir={results_dir}", "data.family=segmentaton"])
    err = capsys.readouterr().err
    assert code == 1 and "unknown family 'segmentaton'" in err and "known: " in err
    assert "Traceback" not in err and store_untouched()
    monkeypatch.setenv("MEDBENCH_PLUGINS", "no_such_plugin_module")
    with pytest.raises(ConfigError, match="plugin 'no_such_plugin_module'.*cannot be imported"):
        compose_config([])


@pytest.mark.parametrize(("old", "new"), [
    ("task=classification", "runner=lightning"),
    ("task=deep_features_svm", "runner=deep_features_svm"),
    ("task.optimizer.lr=0.01", "runner.optimizer.lr=0.01"),
    ("+task.optimizer.momentum=0.9", "+runner.optimizer.momentum=0.9"),
    ("task/classifier=svm", "runner/classifier=svm"),
    ("task.name=classification", "runner.name=lightning"),
    ("data.task=multilabel", "data.label_type=multilabel"),
])
def test_old_overrides_are_rewritten(old, new):
    assert rewrite_override(old) == (new, True)
    assert rewrite_override(new) == (new, False)


def test_old_presets_and_commands_compose_as_before(tmp_path, capsys):
    from medbench.config import ExperimentsConfigSource

    (tmp_path / "old_style.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /task: deep_features\n  - _self_\n"
        "task:\n  layers: [3]\nsurvey:\n  task: classification\n")
    source = ExperimentsConfigSource("test", f"medbench-experiments://{tmp_path}")
    node = source.load_config("experiment/old_style.yaml").config
    assert list(node.defaults) == [{"override /runner": "deep_features"}, "_self_"]
    assert list(node.runner.layers) == [3] and node.survey.family == "classification"
    # an old command line composes the same configuration, and hashes the same
    old = compose_config(["task=deep_features", "task.layers=[3]", "task.standardize=false"])
    assert "is now spelled 'runner.standardize=false'" in capsys.readouterr().err
    new = compose_config(["runner=deep_features", "runner.layers=[3]",
                          "runner.standardize=false"])
    assert old.runner.name == "deep_features" and list(old.runner.layers) == [3]
    assert config_hash(old) == config_hash(new)
