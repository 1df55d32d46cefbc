"""Every `medbench` command the README shows does what it says (issue 22, point 11).

Each line of the README's bash blocks that calls `.venv/bin/medbench` is checked the way its
command reads it: `train` and `tune` overrides compose (a tuning space is checked as a study
checks it before its first trial; `-m` expands to its jobs), `reproduce` selectors name survey
entries, and the quick commands (`--help`, `models`, `datasets`, `debug=fast_dev_run`) run.
"""

from __future__ import annotations

import re
import shlex

import pytest
from omegaconf import OmegaConf

from medbench.catalog import catalog, select
from medbench.cli import main, reproduce_parser
from medbench.config import REPO_ROOT, compose_config
from medbench.hydra_habits import split_flags, sweep
from medbench.tuning import SearchSpace
from medbench.tuning.driver import TUNE_OVERRIDE, _check_space

QUICK_RUNS = {("--help",), ("models",), ("models", "--cost"), ("datasets",), ("train", "--help")}


def readme_commands() -> list[list[str]]:
    """The arguments of each `.venv/bin/medbench` line in the README's bash blocks; `...`
    stands for the line above's arguments, as the README writes it."""
    commands, in_bash = [], False
    for line in (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_bash = line.strip() == "```bash"
        elif in_bash and line.startswith(".venv/bin/medbench"):
            args = shlex.split(line, comments=True)[1:]
            if "..." in args:
                at = args.index("...")
                args = args[:at] + commands[-1][at:] + args[at + 1:]
            commands.append(args)
    return commands


COMMANDS = readme_commands()


def test_the_readme_shows_each_command():
    assert {args[0] for args in COMMANDS} >= {"train", "tune", "reproduce", "leaderboard",
                                             "models", "datasets", "--help"}
    assert len(COMMANDS) >= 30


@pytest.mark.parametrize("args", [a for a in COMMANDS if a[0] == "train"],
                         ids=lambda a: " ".join(a)[:60])
def test_train_examples_compose(args):
    overrides, multirun, _, _ = split_flags(args[1:])
    for job in sweep(overrides) if multirun else [overrides]:
        cfg = compose_config(job)
        for override in job:  # each plain key=value landed where it says
            key, _, value = override.partition("=")
            if re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)+", key) and not value.startswith(("[", "{")):
                assert str(OmegaConf.select(cfg, key)) == value, override


@pytest.mark.parametrize("args", [a for a in COMMANDS if a[0] == "tune"],
                         ids=lambda a: " ".join(a)[:60])
def test_tune_examples_pass_the_check_a_study_makes_first(args):
    overrides = args[1:]
    cfg = compose_config(overrides, config_name="tune")
    space = SearchSpace(OmegaConf.to_container(cfg.search.params, resolve=True))
    _check_space([o for o in overrides if not TUNE_OVERRIDE.match(o)], space)


@pytest.mark.parametrize("args", [a for a in COMMANDS if a[0] == "reproduce"],
                         ids=lambda a: " ".join(a)[:60])
def test_reproduce_examples_name_survey_entries(args):
    options = reproduce_parser().parse_args(args[1:])
    entries = catalog()
    ids = {entry.id for entry in entries}
    for selector in options.selectors:
        assert select(selector, entries), selector
        if selector in ids:  # an entry named by its id composes as reproduce composes it
            compose_config([f"experiment=survey/{selector}", f"seed={options.seeds[0]}",
                            *options.override])


@pytest.mark.parametrize("args", sorted(QUICK_RUNS), ids=" ".join)
def test_quick_commands_run(args, capsys):
    assert list(args) in COMMANDS
    try:
        code = main(list(args))
    except SystemExit as stop:  # argparse's own --help
        code = stop.code
    assert code == 0
    assert capsys.readouterr().out.strip()


def test_the_fast_dev_run_example_runs_end_to_end(results_dir, mlflow_client):
    [args] = [a for a in COMMANDS if "debug=fast_dev_run" in a]
    assert main([*args, f"paths.results_dir={results_dir}",
                 "trainer.enable_progress_bar=false"]) == 0
    [run] = mlflow_client.search_runs(
        [mlflow_client.get_experiment_by_name("debug").experiment_id])
    assert run.info.status == "FINISHED" and "test/auc" in run.data.metrics
